"""The report stage: every model of a run measured on the test set, in one table and plot.

Rows are built here and only here: the Keras models (teacher, scratch and
distilled students; timed on their float32 `.tflite`), every exported mode of
the distilled student, the scratch student's quantized files, and the
compression stages' int8 files. Each `.tflite` row is evaluated on LiteRT over
the whole test set, timed, and measured for gzip bytes and weight sparsity read
from the file. Every row's one pass over the test set gives its accuracy and,
from the same predictions, per-class precision, recall, F1 and the confusion
matrix (`tflite.metrics`). The edge section (TFLite Micro arena, parity, flash,
device fit) follows for the deployable student, and, with `report.stream_seconds` > 0, a
streaming section: test images at `report.stream_fps` through the edge student
and the float teacher (`tflite.stream`). With `report.robust` (default: when the
student was distilled adversarially) every row also gets its accuracy under a PGD
attack (`robust_section`). A multi-task student (stage 'multitask') gets its own section,
both tasks' accuracies on Keras, LiteRT and TFLite Micro (`multitask_stages.report_section`).
Written as `report.{md,json,png}` and
`report_confusion.png` (and `report_stream.png`).

Example:
  stage_report(run)   # or: python -m tfkd.train ... --config.stages='("report",)'
"""

import os
from typing import Dict, List, Optional

import numpy as np
from absl import logging

from tfkd import (adversarial, compress, compression_stages, data, from_config, hub_stage,
                  keras3_files, keras3_teacher, model_files, multitask_stages, report, selfsup_stages,
                  teacher_checks, teacher_compression, training)
from tfkd.run_context import Run
from tflite import benchmark, files, interpreter, metrics, sparsity, stream

KERAS_LABELS = {"teacher": "teacher", "scratch": "student from scratch",
                "distill": "distilled student", "selfsup": "self-supervised student"}
STREAM_FRAMES = 500  # test images the streaming section cycles through
LATENCY_ROUNDS = 10  # interleaved rounds in which the report's `.tflite` files are timed


class RobustEvaluation:
  """The PGD attack of `config.report` on `report.robust_examples` test images spread over the
  test set: crafted on each stage's Keras model once, then scored on it and on its `.tflite` files."""

  def __init__(self, run: Run):
    cfg, (x, y) = run.config.report, run.splits.test
    count = cfg.robust_examples or len(y)
    self.x, self.y = data.evenly_spaced(x, count), data.evenly_spaced(y, count)
    self.config, self.seed = cfg, run.config.seed
    self.crafted: Dict[str, np.ndarray] = {}   # stage → its adversarial images

  def craft(self, stage: str, model) -> np.ndarray:
    """The adversarial images of `stage`, crafted on its Keras `model` (a softmax output is
    turned back into logits first, `teacher_checks.as_logits`)."""
    if stage not in self.crafted:
      logits_model, _ = teacher_checks.as_logits(model, self.x[:64])
      c = self.config
      self.crafted[stage] = adversarial.pgd_examples(logits_model, self.x, self.y, c.pgd_epsilon,
                                                     c.pgd_step_size, c.pgd_steps, c.batch_size,
                                                     seed=self.seed)
    return self.crafted[stage]

  def score(self, row: report.Row, predict, adversarial_images: np.ndarray) -> None:
    """Sets the row's clean and PGD accuracy on the attacked images; `predict(x)` → scores."""
    accuracy = lambda x: float(np.mean(np.argmax(predict(x), axis=-1) == self.y))
    row.pgd_clean_accuracy, row.pgd_accuracy = accuracy(self.x), accuracy(adversarial_images)
    logging.info("[report] %s: %.4f on %d test images, %.4f under PGD", row.label,
                 row.pgd_clean_accuracy, len(self.y), row.pgd_accuracy)

  def markdown(self) -> str:
    c = self.config
    return (f"PGD (L∞, ε = {c.pgd_epsilon:g} of the 0–255 pixel range = {c.pgd_epsilon / 255:.4f}, "
            f"{c.pgd_steps} steps of {c.pgd_step_size:g} pixels, uniform random start, "
            f"cross-entropy on the labels) on {len(self.y)} test images spread evenly over the "
            "test set; the columns 'clean (PGD images)' and 'PGD accuracy' are accuracy on "
            "those images before and after the attack. Keras rows: white-box, crafted on the "
            "model itself in inference mode. TFLite rows: crafted on the Keras model the file "
            "was converted from (float; QAT's fake-quant model for qat rows) and fed to the "
            "`.tflite`, quantized with its input scale: a transfer attack, so an upper bound on "
            "what an attacker with the file's own gradients could leave.")


def keras_row(run: Run, name: str, latencies: Dict[str, dict],
              robust: Optional[RobustEvaluation] = None) -> Optional[report.Row]:
  """The row of a stage's Keras model, or None when the stage has not saved one; its latency is
  its float32 `.tflite` file's in `latencies` (none without that file)."""
  path = run.saved_model(name)
  if not os.path.exists(path):
    return None
  cfg, (test_x, test_y) = run.config.report, run.splits.test
  try:
    model = model_files.load_model(path)
  except keras3_files.NotRebuildable as e:  # a teacher that labelled the cached views in Keras 3
    model, robust = keras3_teacher.Keras3Teacher(e.model, path), None
  scores = model.predict(data.eval_dataset(test_x, test_y, cfg.batch_size), verbose=0)
  measured = metrics.score_metrics(test_y, scores)
  latency = latencies.get(run.tflite_path(name, "float32"))
  row = report.Row(f"{KERAS_LABELS[name]} (Keras float)", model.name, model.count_params(),
                   os.path.getsize(path), measured["accuracy"],
                   latency and interpreter.idle_ms(latency), latency and latency["p90"],
                   macro_f1=measured["macro"]["f1"], metrics=measured)
  logging.info("[report] %s: test accuracy %.4f, macro F1 %.4f", row.label, row.accuracy,
               row.macro_f1)
  if robust:
    robust.score(row, lambda x: model.predict(x, batch_size=cfg.batch_size, verbose=0),
                 robust.craft(name, model))
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


def crafted_for_tflite(run: Run, robust: RobustEvaluation, stage: str) -> np.ndarray:
  """The adversarial images of a `.tflite` file's stage, crafted on its Keras model."""
  if stage not in robust.crafted:
    compressed = stage in compression_stages.report_labels(run.config.compress)
    path = compression_stages.compressed_model_path(run, stage) if compressed else run.saved_model(stage)
    robust.craft(stage, compress.load_model(path))
  return robust.crafted[stage]


def tflite_row(run: Run, label: str, path: str, parameters: Optional[int], latency: dict,
               robust: Optional[RobustEvaluation] = None, stage: str = "") -> report.Row:
  """The row of one `.tflite` file: LiteRT accuracy and per-class metrics, `latency` (from
  `report_latencies`), sizes, sparsity; with `robust`, its accuracy on the PGD images crafted
  on `stage`'s Keras model."""
  cfg, (test_x, test_y) = run.config.report, run.splits.test
  measured = metrics.score_metrics(test_y, interpreter.predict(path, test_x, cfg.batch_size))
  with open(path, "rb") as f:
    content = f.read()
  row = report.Row(label, os.path.basename(path), parameters, len(content), measured["accuracy"],
                   interpreter.idle_ms(latency), latency["p90"],
                   gzip_bytes=sparsity.gzip_bytes(content),
                   sparsity=sparsity.tflite_sparsity(content)["sparsity"],
                   macro_f1=measured["macro"]["f1"], metrics=measured)
  logging.info("[report] %s: test accuracy %.4f, macro F1 %.4f, LiteRT %.3f ms, sparsity %.3f",
               label, row.accuracy, row.macro_f1, row.latency_ms, row.sparsity)
  if robust:
    robust.score(row, lambda x: interpreter.predict(path, x, cfg.batch_size),
                 crafted_for_tflite(run, robust, stage))
  return row


def tflite_files(run: Run) -> List[tuple]:
  """(stage, label, path) of every `.tflite` file the report lists, in display order.

  Every exported mode of the distilled student, then the scratch and self-supervised
  students' quantized files (a float32 file scores like its Keras row) to show the gain
  survives quantization, then the compression stages' int8 files.
  """
  modes = run.config.export.modes
  wanted = [("distill", mode) for mode in modes]
  wanted += [(name, mode) for name in ("scratch", "selfsup") for mode in modes if mode != "float32"]
  found = [(name, f"{KERAS_LABELS[name]}, {mode} TFLite", run.tflite_path(name, mode))
           for name, mode in wanted]
  found += [(stage, label, run.tflite_path(stage, "int8"))
            for stage, label in compression_stages.report_labels(run.config.compress).items()]
  return [entry for entry in found if os.path.exists(entry[2])]


def report_latencies(report_config, paths: List[str], sample: np.ndarray) -> Dict[str, dict]:
  """Single-stream LiteRT latency of each `.tflite` file on `sample` (one input row), by path.

  The files are timed in turn, in `LATENCY_ROUNDS` interleaved rounds that share the
  `report.latency_runs` invokes, so a burst of load on a shared machine falls on all of them
  rather than one row; timed one after another, two files of the same int8 model have come
  out 0.18 and 0.30 ms. A slow spell does not slow every file by the same factor, though, so
  the rounds are spread over `report.latency_spread_s` and each row gives its quietest
  round, which falls outside the spells (BENCHMARKS §19).
  """
  rounds = latency_rounds(report_config)
  return interpreter.interleaved_latency_ms(
      {p: p for p in paths}, sample, rounds, max(1, report_config.latency_runs // rounds),
      report_config.warmup_runs, report_config.threads, report_config.latency_spread_s)


def latency_rounds(report_config) -> int:
  """How many interleaved rounds share `report.latency_runs` (at most `LATENCY_ROUNDS`)."""
  return max(1, min(LATENCY_ROUNDS, report_config.latency_runs))


def _teacher_facts(run: Run, teacher, path: str, logits: np.ndarray, reference: np.ndarray,
                   latency: dict) -> dict:
  """Size, sparsity, test accuracy and batch time of one teacher, and its top-1 agreement
  with `reference` (the float teacher's logits)."""
  test_y = run.splits.test[1]
  if path.endswith(".tflite"):
    runtime, measured = "LiteRT int8", sparsity.tflite_sparsity(path)["sparsity"]
  else:
    runtime = f"Keras {teacher_compression.compute_dtype(teacher)}"
    measured = teacher_compression.kernel_sparsity(teacher)
  with open(path, "rb") as f:
    gzip_bytes = sparsity.gzip_bytes(f.read())  # where pruning's zeros save storage
  return {"file": path, "runtime": runtime, "file_bytes": os.path.getsize(path),
          "gzip_bytes": gzip_bytes, "sparsity": measured, "accuracy": float(np.mean(np.argmax(logits, -1) == test_y)),
          "agreement": float(np.mean(np.argmax(logits, -1) == np.argmax(reference, -1))),
          "batch_latency_ms": latency}


def teacher_compression_section(run: Run, rows: List[report.Row]) -> Optional[tuple]:
  """(row of the compressed teacher, facts, markdown): the teacher before and after
  `teacher.compress` on the test set, each labelling batches the way it teaches; None without it."""
  after_path, cfg = run.compressed_teacher_file(), run.config.report
  if not after_path or not os.path.exists(after_path) or not os.path.exists(run.teacher_file()):
    return None
  test_x, test_y = run.splits.test
  before, _ = teacher_checks.as_logits(model_files.load_model(run.teacher_file()), test_x[:64])
  teachers = {"before": (before, run.teacher_file()),
              "after": (teacher_compression.load_teacher(after_path), after_path)}
  logits = {name: teacher_compression.predict_logits(t, test_x, cfg.batch_size)
            for name, (t, _) in teachers.items()}
  batch = test_x[:cfg.batch_size]
  latency = teacher_compression.batch_latency_ms({n: t for n, (t, _) in teachers.items()}, batch,
                                                  cfg.teacher_batch_runs)
  facts = {name: _teacher_facts(run, t, path, logits[name], logits["before"], latency[name])
           for name, (t, path) in teachers.items()}
  how = run.config.teacher.compress
  label = {"prune": f"pruned {run.config.teacher.prune_sparsity:.0%}", "int8": "int8 TFLite"}.get(
      how, f"{how} compute")
  lines = [f"| teacher | runs on | file bytes | gzip bytes | weight sparsity | ms per batch of "
           f"{len(batch)} (p50) | test accuracy | top-1 as the float teacher |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  for name, title in (("before", "float32 (before)"), ("after", f"{label} (after)")):
    f = facts[name]
    lines.append(f"| {title} | {f['runtime']} | {f['file_bytes']:,} | {f['gzip_bytes']:,} | "
                 f"{f['sparsity']:.1%} | "
                 f"{f['batch_latency_ms']['p50']:.1f} | {f['accuracy'] * 100:.2f}% | "
                 f"{f['agreement'] * 100:.2f}% |")
  students = [f"{r.label}: {r.accuracy * 100:.2f}%" for r in rows
              if r.label.startswith(KERAS_LABELS["distill"])]
  text = "\n".join(lines) + (
      f"\n\nThe {label} teacher taught the distilled student of this run "
      f"({'; '.join(students) or 'not trained yet'}). Batch time: the same test images, the two "
      f"teachers timed alternately {cfg.teacher_batch_runs} times each, the way each teaches "
      f"(Keras, or LiteRT on {os.cpu_count()} threads). The float teacher's students: the same "
      "run with teacher.compress='none' (bench/compressed_teacher.py compares them).")
  measured = metrics.score_metrics(test_y, logits["after"])
  row = report.Row(f"teacher, {label} (teaches the students)", os.path.basename(after_path),
                   before.count_params(), facts["after"]["file_bytes"], facts["after"]["accuracy"],
                   gzip_bytes=facts["after"]["gzip_bytes"], sparsity=facts["after"]["sparsity"],
                   macro_f1=measured["macro"]["f1"], metrics=measured)
  return row, {"compress": how, **facts}, text


def distillation_summary(run: Run) -> str:
  """One line on how the distilled student was trained, epochs read from its history."""
  d = run.config.distill
  extra = f" + {len(d.extra_teachers)} more" if d.extra_teachers else ""
  teacher = (f"`{run.config.teacher.path}` (teacher.path)" if run.config.teacher.path
             else "keras-hub `" + (run.config.teacher.hub.preset or "all-MiniLM-L6-v2") + "` "
             "fine-tuned, its logits cached" if run.hub_teacher
             else f"`{run.config.teacher.model}`")
  if run.config.teacher.compress != "none":
    teacher += f" compressed to `{run.config.teacher.compress}` (`{run.compressed_teacher_file()}`)"
  epochs = training.trained_epochs(run.path("distill")) or run.config.train.epochs
  line = (f"method `{d.method}`{adversarial_summary(d.adversarial)}, temperature {d.temperature}, "
          f"student loss weight α = {d.student_loss_weight}, teacher {teacher}{extra}, student "
          f"`{run.config.student.model}`, {epochs} epochs.")
  if run.hub_teacher and os.path.exists(hub_stage.result_path(run)):
    result = files.read_json(hub_stage.result_path(run))
    line += (f" The teacher: test accuracy {result['dev_accuracy']:.4f}, validation "
             f"{result['val_accuracy']:.4f}; fine-tuned in {result['fine_tune_seconds'] / 60:.1f} "
             "min, its logits computed once (teacher/logits/).")
  return line


def adversarial_summary(adversarial_config) -> str:
  """', adversarial ard (pgd, ε = 8 pixels, ...)' for `distill.adversarial`, '' without it."""
  built = from_config.adversarial_distillation(adversarial_config)
  if built is None:
    return ""
  attack = (f"{built.steps} steps of {built.step_size:g} px" if built.attack == "pgd" else "one step")
  return (f" on adversarial inputs: {built.method.upper()}, {built.attack.upper()} ε = "
          f"{built.epsilon:g} px ({attack}), adversarial share β = {built.adversarial_weight:.3g}")


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
  robust = RobustEvaluation(run) if from_config.robust_evaluation(run.config) else None
  listed = tflite_files(run)
  float_files = [run.tflite_path(name, "float32") for name in KERAS_LABELS]
  latencies = report_latencies(cfg, list(dict.fromkeys(
      [path for _, _, path in listed] + [p for p in float_files if os.path.exists(p)])), test_x[0])
  for name in KERAS_LABELS:
    row = (hub_teacher_row(run) if name == "teacher" and run.hub_teacher
           else keras_row(run, name, latencies, robust))
    if row:
      rows.append(row)
      parameters[name] = row.parameters
  for stage, label, path in listed:
    # Compressed models are copies of the distilled student: same parameter count.
    rows.append(tflite_row(run, label, path, parameters.get(stage, parameters.get("distill")),
                           latencies[path], robust, stage))
  compressed = teacher_compression_section(run, rows)
  if compressed:
    rows.insert(1 if rows and rows[0].label.startswith("teacher") else 0, compressed[0])
  meta = {"config": run.config.to_dict(), "test_examples": int(len(test_y)),
          "latency": {"runs": cfg.latency_runs, "warmup": cfg.warmup_runs, "threads": cfg.threads,
                      "rounds": latency_rounds(cfg), "spread_s": cfg.latency_spread_s,
                      "cpu": interpreter.cpu_name()}}
  sections = [("Distillation", distillation_summary(run)), ("Input", input_summary(run))]
  if selfsup_stages.summary(run):
    sections.insert(1, ("Label budget and self-supervised route", selfsup_stages.summary(run)))
  if compressed:
    meta["teacher_compression"] = compressed[1]
    sections.insert(1, ("Teacher compression", compressed[2]))
  if robust:
    sections.append(("Robustness", robust.markdown()))
  edge_model = run.tflite_path("distill", cfg.edge_mode)
  if cfg.edge and os.path.exists(edge_model):
    # Device view of the deployable student: TFLM ops, arena, parity, flash, cost, board fit.
    # Its latency is its row's, so the report gives the file one time.
    edge, markdown = benchmark.edge_report(
        edge_model, test_x[:cfg.parity_samples], cfg.latency_runs, cfg.warmup_runs,
        cfg.threads, c_out=run.path("export", "firmware"), latency=latencies.get(edge_model))
    meta["edge"] = edge
    sections.append((f"Edge deployment: {os.path.basename(edge_model)}", markdown))
  multi = multitask_stages.report_section(run)
  if multi:
    meta["multitask"], text = multi
    sections.append(("Multi-task student", text))
  streamed = stream_section(run) if cfg.stream_seconds > 0 else None
  if streamed:
    meta["stream"], text = streamed
    sections.append(("Streaming", text))
  table = report.write(run.workdir, rows, meta, sections, run.splits.class_names)
  print(table)
  for title, markdown in sections:
    print(f"\n{title}\n{markdown}")
