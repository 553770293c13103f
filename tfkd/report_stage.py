"""The report stage: every model of a run measured on the test set, in one table and plot.

Rows are built here and only here: the Keras models (teacher, scratch and
distilled students; timed on their float32 `.tflite`), every exported mode of
the distilled student, the scratch student's quantized files, and the
compression stages' int8 files. Each `.tflite` row is evaluated on LiteRT over
the whole test set, timed, and measured for gzip bytes and weight sparsity read
from the file. The edge section (TFLite Micro arena, parity, flash, device fit)
follows for the deployable student, and, with `report.stream_seconds` > 0, a
streaming section: test images at `report.stream_fps` through the edge student
and the float teacher (`tflite.stream`). Written as `report.{md,json,png}`
(and `report_stream.png`).

Example:
  stage_report(run)   # or: python -m tfkd.train ... --config.stages='("report",)'
"""

import os
from typing import Dict, List, Optional

from absl import logging

from tfkd import compression_stages, data, hub_stage, model_files, report, training
from tfkd.run_context import Run
from tflite import benchmark, files, interpreter, sparsity, stream

KERAS_LABELS = {"teacher": "teacher", "scratch": "student from scratch",
                "distill": "distilled student"}
STREAM_FRAMES = 500  # test images the streaming section cycles through


def keras_row(run: Run, name: str) -> Optional[report.Row]:
  """The row of a stage's Keras model, or None when the stage has not saved one."""
  path = run.saved_model(name)
  if not os.path.exists(path):
    return None
  cfg, (test_x, test_y) = run.config.report, run.splits.test
  model = model_files.load_model(path)
  model.compile(metrics=["accuracy"])
  _, accuracy = model.evaluate(data.eval_dataset(test_x, test_y, cfg.batch_size), verbose=0)
  float_tflite = run.tflite_path(name, "float32")
  latency = (interpreter.latency_ms(float_tflite, test_x[0], cfg.latency_runs, cfg.warmup_runs,
                                    cfg.threads) if os.path.exists(float_tflite) else None)
  row = report.Row(f"{KERAS_LABELS[name]} (Keras float)", model.name, model.count_params(),
                   os.path.getsize(path), accuracy, latency and latency["p50"],
                   latency and latency["p90"])
  logging.info("[report] %s: test accuracy %.4f", row.label, accuracy)
  return row


def hub_teacher_row(run: Run) -> Optional[report.Row]:
  """The keras-hub teacher's row: its dev accuracy as its stage measured it (`tfkd.hub_stage`)."""
  path = hub_stage.result_path(run)
  if not os.path.exists(path):
    return None
  result = files.read_json(path)
  weights = run.path("teacher", hub_stage.WEIGHTS)
  name = run.config.teacher.hub.preset or "all-MiniLM-L6-v2"
  return report.Row(f"teacher {os.path.basename(name.rstrip('/'))}, fine-tuned (Keras 3)",
                    hub_stage.WEIGHTS, result["parameters"],
                    os.path.getsize(weights) if os.path.exists(weights) else 0,
                    result["dev_accuracy"])


def tflite_row(run: Run, label: str, path: str, parameters: Optional[int]) -> report.Row:
  """The row of one `.tflite` file: LiteRT accuracy, latency, sizes and sparsity."""
  cfg, (test_x, test_y) = run.config.report, run.splits.test
  accuracy = interpreter.evaluate_accuracy(path, test_x, test_y, cfg.batch_size)
  latency = interpreter.latency_ms(path, test_x[0], cfg.latency_runs, cfg.warmup_runs, cfg.threads)
  with open(path, "rb") as f:
    content = f.read()
  row = report.Row(label, os.path.basename(path), parameters, len(content), accuracy,
                   latency["p50"], latency["p90"], gzip_bytes=sparsity.gzip_bytes(content),
                   sparsity=sparsity.tflite_sparsity(content)["sparsity"])
  logging.info("[report] %s: test accuracy %.4f, p50 %.3f ms, sparsity %.3f", label, accuracy,
               row.latency_p50_ms, row.sparsity)
  return row


def tflite_files(run: Run) -> List[tuple]:
  """(stage, label, path) of every `.tflite` file the report lists, in display order.

  Every exported mode of the distilled student, then the scratch student's
  quantized files (its float32 file scores like its Keras row) to show the gain
  survives quantization, then the compression stages' int8 files.
  """
  modes = run.config.export.modes
  wanted = [("distill", mode) for mode in modes]
  wanted += [("scratch", mode) for mode in modes if mode != "float32"]
  found = [(name, f"{KERAS_LABELS[name]}, {mode} TFLite", run.tflite_path(name, mode))
           for name, mode in wanted]
  found += [(stage, label, run.tflite_path(stage, "int8"))
            for stage, label in compression_stages.report_labels(run.config.compress).items()]
  return [entry for entry in found if os.path.exists(entry[2])]


def distillation_summary(run: Run) -> str:
  """One line on how the distilled student was trained, epochs read from its history."""
  d = run.config.distill
  extra = f" + {len(d.extra_teachers)} more" if d.extra_teachers else ""
  teacher = (f"`{run.config.teacher.path}` (teacher.path)" if run.config.teacher.path
             else "keras-hub `" + (run.config.teacher.hub.preset or "all-MiniLM-L6-v2") + "` "
             "fine-tuned, its logits cached" if run.hub_teacher
             else f"`{run.config.teacher.model}`")
  epochs = training.trained_epochs(run.path("distill")) or run.config.train.epochs
  line = (f"method `{d.method}`, temperature {d.temperature}, student loss weight "
          f"α = {d.student_loss_weight}, teacher {teacher}{extra}, student "
          f"`{run.config.student.model}`, {epochs} epochs.")
  if run.hub_teacher and os.path.exists(hub_stage.result_path(run)):
    result = files.read_json(hub_stage.result_path(run))
    line += (f" The teacher: test accuracy {result['dev_accuracy']:.4f}, validation "
             f"{result['val_accuracy']:.4f}; fine-tuned in {result['fine_tune_seconds'] / 60:.1f} "
             "min, its logits computed once (teacher/logits/).")
  return line


def stream_section(run: Run) -> Optional[tuple]:
  """(stream reports without timelines, markdown) of the edge student and the float teacher
  streamed at `report.stream_fps`, with the plot in report_stream.png; None without their files."""
  cfg, (test_x, _) = run.config.report, run.splits.test
  paths = [p for p in (run.tflite_path("distill", cfg.edge_mode), run.tflite_path("teacher", "float32"))
           if os.path.exists(p)]
  if not paths:
    return None
  reports = [stream.stream_report(path, test_x[:STREAM_FRAMES], cfg.stream_fps, cfg.threads,
                                  cfg.stream_seconds, cfg.warmup_runs) for path in paths]
  setting = f"{stream.fps_text(cfg.stream_fps)}, {cfg.threads} thread(s)"
  stream.plot_latency({setting: reports}, run.path("report_stream.png"))
  text = (f"Test images streamed at {setting} for {cfg.stream_seconds:g} s, batch 1, on LiteRT "
          f"({stream.POLICY}). Latency runs from a frame's due time to its result.\n\n"
          f"{stream.markdown(reports)}\n\n![latency over time](report_stream.png)")
  return [stream.without_timeline(r) for r in reports], text


def input_summary(run: Run) -> str:
  """What the models take, how to resize images for them (`Run.input_card`) and what the run
  adapted to the data (`Run.adaptations`), in markdown."""
  card = run.input_card()
  lines = [f"- shape {'x'.join(map(str, card['input_shape']))}: {card['input']}"]
  if "resize" in card:
    lines.append(f"- resize: {card['resize']}")
  if card.get("training_images"):
    seen = card["training_images"]
    sizes = ", ".join("x".join(map(str, size)) for size in seen["stored_sizes"])
    lines.append(f"- training images stored as {sizes}, "
                 f"{'resized' if seen['resized'] else 'not resized'}"
                 f"{', greyscale' if seen['greyscale'] else ''}")
  lines.append("- the same facts beside each `.tflite` file, as `export/<model>.json`")
  if run.adaptations:
    lines.append(f"- adapted to this data: {'; '.join(run.adaptations)}")
  return "\n".join(lines)


def stage_report(run: Run) -> None:
  """Evaluates every model on the whole test set and writes report.{md,json,png}."""
  cfg, (test_x, test_y) = run.config.report, run.splits.test
  rows: List[report.Row] = []
  parameters: Dict[str, int] = {}
  for name in KERAS_LABELS:
    row = hub_teacher_row(run) if name == "teacher" and run.hub_teacher else keras_row(run, name)
    if row:
      rows.append(row)
      parameters[name] = row.parameters
  for stage, label, path in tflite_files(run):
    # Compressed models are copies of the distilled student: same parameter count.
    rows.append(tflite_row(run, label, path, parameters.get(stage, parameters.get("distill"))))
  meta = {"config": run.config.to_dict(), "test_examples": int(len(test_y)),
          "latency": {"runs": cfg.latency_runs, "warmup": cfg.warmup_runs, "threads": cfg.threads}}
  sections = [("Distillation", distillation_summary(run)), ("Input", input_summary(run))]
  edge_model = run.tflite_path("distill", cfg.edge_mode)
  if cfg.edge and os.path.exists(edge_model):
    # Device view of the deployable student: TFLM ops, arena, parity, flash, cost, board fit.
    edge, markdown = benchmark.edge_report(
        edge_model, test_x[:cfg.parity_samples], cfg.latency_runs, cfg.warmup_runs,
        cfg.threads, c_out=run.path("export", "firmware"))
    meta["edge"] = edge
    sections.append((f"Edge deployment: {os.path.basename(edge_model)}", markdown))
  streamed = stream_section(run) if cfg.stream_seconds > 0 else None
  if streamed:
    meta["stream"], text = streamed
    sections.append(("Streaming", text))
  table = report.write(run.workdir, rows, meta, sections)
  print(table)
  for title, markdown in sections:
    print(f"\n{title}\n{markdown}")
