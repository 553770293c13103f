"""The stages of a tfkd run: teacher → scratch → distill → export → report (and compression).

Each stage reads and writes `workdir/<stage>/`. A stage whose final artifact
exists is skipped, and an interrupted training stage resumes from its last
epoch (see `training.fit_resumable`), so rerunning the same command continues
where it stopped. Artifacts are written atomically. The prune, qat and
prune_qat stages live in `tfkd.compression_stages`; `Run` in `tfkd.run_context`.

Example:
  run_pipeline(config, "runs/cifar10")   # or: python -m tfkd.train --config=... --workdir=...
"""

import os
import time

import tf_keras
from absl import logging

from tfkd import compression_stages, data, report, training
from tfkd.distiller import distiller_from_config
from tfkd.errors import ConfigError
from tfkd.run_context import Run
from tflite import benchmark, convert, interpreter

STAGES = ("teacher", "scratch", "distill", "export", "report")


def train_supervised(run: Run, stage: str, model_config, epochs: int) -> None:
  """Trains a model on labels alone (the teacher, or the student from scratch)."""
  if run.done(stage, run.model_path(stage), epochs):
    return
  train_config = run.config.train.copy_and_resolve_references()
  train_config.epochs = epochs
  with run.strategy.scope():
    model = run.build(model_config, stage)
    model.compile(
        optimizer=training.make_optimizer(train_config, run.steps_per_epoch(train_config.batch_size)),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
  logging.info("[%s] %s, %d parameters, %d epochs.", stage, model_config.model,
               model.count_params(), epochs)
  training.fit_resumable(model, *run.datasets(train_config.batch_size), epochs, run.path(stage))
  training.save_model_atomic(model, run.model_path(stage))


def stage_teacher(run: Run) -> None:
  train_supervised(run, "teacher", run.config.teacher,
                   run.config.teacher.get("epochs") or run.config.train.epochs)


def stage_scratch(run: Run) -> None:
  train_supervised(run, "scratch", run.config.student, run.config.train.epochs)


def stage_distill(run: Run) -> None:
  """Trains a fresh student against the trained teacher(s); saves the student alone.

  `distill.extra_teachers` (paths of `.keras` models) join the trained teacher;
  their logits are averaged with `distill.teacher_weights`. With
  `distill.cached_teacher` the teachers' logits on the training split are
  computed once (kept in `distill/teacher_logits.npy`), and with
  `distill.teacher_logits_path` they are read from a file; the training epochs
  then run the student alone. See docs/distillation.md.
  """
  from tfkd import teacher_cache  # pylint: disable=import-outside-toplevel
  cfg, train_config = run.config.distill, run.config.train
  if run.done("distill", run.model_path("distill"), train_config.epochs):
    return
  logits_path = cfg.get("teacher_logits_path", "")
  cached = bool(cfg.get("cached_teacher", False) or logits_path)
  teacher_paths = run.teacher_paths()
  if logits_path and not os.path.exists(teacher_paths[0]):
    teacher_paths = teacher_paths[1:]  # an offline teacher: its logits are all there is
  for path in teacher_paths:
    if not os.path.exists(path):
      raise ConfigError(f"The distill stage needs a trained teacher at {path}: run the 'teacher' "
                        "stage first (it is in the default config.stages) or fix "
                        "distill.extra_teachers.")
  if cached and (run.config.data.get("transfer_set") or {}).get("copies"):
    raise ConfigError("Cached teacher logits cover the training split only, but "
                      "data.transfer_set adds inputs the teacher must label live: turn off "
                      "distill.cached_teacher or the transfer set.")
  with run.strategy.scope():
    teachers = [tf_keras.models.load_model(path) for path in teacher_paths]
    student = run.build(run.config.student, "student")
    distiller = distiller_from_config(cfg, teachers or None, student)
    if cached:
      teacher_cache.check_cacheable(distiller.distillation_losses, augment=run.config.data.augment)
    distiller.compile(
        optimizer=training.make_optimizer(train_config, run.steps_per_epoch(train_config.batch_size)),
        metrics=["accuracy"])
  logging.info("[distill] %s → %s, method=%s, %d teacher(s)%s, α=%.2f, %d epochs.",
               [os.path.basename(os.path.dirname(p)) for p in teacher_paths],
               run.config.student.model, cfg.get("method", "soft"), len(teacher_paths),
               ", cached logits" if cached else "", cfg.student_loss_weight, train_config.epochs)
  train, val = run.datasets(train_config.batch_size, distillation=True)
  if cached:
    train_x, train_y = run.splits.train
    if logits_path:
      logits = teacher_cache.load_teacher_logits(logits_path, len(train_y), run.splits.num_classes)
    else:
      cache_file = run.path("distill", "teacher_logits.npy")
      if not os.path.exists(cache_file):
        teacher_cache.save_teacher_logits(cache_file, teacher_cache.compute_teacher_logits(
            teachers, train_x, distiller.teacher_weights))
      logits = teacher_cache.load_teacher_logits(cache_file, len(train_y), run.splits.num_classes)
    logging.info("[distill] cached teacher logits agree with %.1f%% of the training labels.",
                 100 * teacher_cache.label_agreement(logits, train_y))
    train = teacher_cache.cached_train_dataset(train_x, train_y, logits, train_config.batch_size,
                                               seed=run.config.seed)
  training.fit_resumable(distiller, train, val, train_config.epochs, run.path("distill"))
  training.save_model_atomic(distiller.student, run.model_path("distill"))


def stage_export(run: Run) -> None:
  """Converts both students in every `export.modes`, and the teacher and students to float32.

  The scratch student is quantized too so distillation's gain is judged on the deployed
  model; the float32 files let the report time every Keras model on LiteRT.
  """
  modes = run.config.export.modes
  wanted = [(name, mode) for name in ("distill", "scratch") for mode in modes]
  wanted += [(name, "float32") for name in ("teacher", "scratch", "distill")
             if (name, "float32") not in wanted]
  representative = run.representative_inputs()
  for name, mode in wanted:
    out = run.tflite_path(name, mode)
    if not os.path.exists(run.model_path(name)) or run.done("export", out):
      continue
    start = time.time()
    model = tf_keras.models.load_model(run.model_path(name))
    training.write_atomic(out, convert.convert(model, mode, representative))
    logging.info("[export] %s (%d bytes, %.0fs)", out, os.path.getsize(out), time.time() - start)


def stage_report(run: Run) -> None:
  """Evaluates every model on the whole test set and writes report.{md,json,png}."""
  test_x, test_y = run.splits.test
  cfg = run.config.report
  rows, parameters = [], {}
  labels = {"teacher": "teacher", "scratch": "student from scratch", "distill": "distilled student"}
  for name, label in labels.items():
    path = run.model_path(name)
    if not os.path.exists(path):
      continue
    model = tf_keras.models.load_model(path)
    model.compile(metrics=["accuracy"])
    _, accuracy = model.evaluate(data.eval_dataset(test_x, test_y, cfg.batch_size), verbose=0)
    float_tflite = run.tflite_path(name, "float32")
    latency = (interpreter.latency_ms(float_tflite, test_x[0], cfg.latency_runs, cfg.warmup_runs,
                                      cfg.threads) if os.path.exists(float_tflite) else None)
    parameters[name] = model.count_params()
    rows.append(report.Row(f"{label} (Keras float)", model.name, parameters[name],
                           os.path.getsize(path), accuracy, latency and latency["p50"],
                           latency and latency["p90"]))
    logging.info("[report] %s: test accuracy %.4f", label, accuracy)
  # Every exported mode of the distilled student, then the scratch student's quantized files
  # (its float32 file scores like its Keras row) to show the gain survives quantization.
  tflite_rows = [("distill", mode) for mode in run.config.export.modes]
  tflite_rows += [("scratch", mode) for mode in run.config.export.modes if mode != "float32"]
  for name, mode in tflite_rows:
    path = run.tflite_path(name, mode)
    if not os.path.exists(path):
      continue
    accuracy = interpreter.evaluate_accuracy(path, test_x, test_y, cfg.batch_size)
    latency = interpreter.latency_ms(path, test_x[0], cfg.latency_runs, cfg.warmup_runs, cfg.threads)
    rows.append(report.Row(f"{labels[name]}, {mode} TFLite", os.path.basename(path),
                           parameters.get(name),
                           os.path.getsize(path), accuracy, latency["p50"], latency["p90"]))
    logging.info("[report] %s: test accuracy %.4f, p50 %.3f ms", rows[-1].label, accuracy,
                 latency["p50"])
  compression_stages.add_compression_rows(run, rows, parameters)
  meta = {"config": run.config.to_dict(), "test_examples": int(len(test_y)),
          "latency": {"runs": cfg.latency_runs, "warmup": cfg.warmup_runs, "threads": cfg.threads}}
  d = run.config.distill
  sections = [("Distillation", f"method `{d.get('method', 'soft')}`, temperature {d.temperature}, "
               f"student loss weight α = {d.student_loss_weight}, teacher `{run.config.teacher.model}`"
               f"{' + ' + str(len(d.get('extra_teachers', ()))) + ' more' if d.get('extra_teachers') else ''}"
               f", student `{run.config.student.model}`, "
               f"{training.trained_epochs(run.path('distill')) or run.config.train.epochs} epochs.")]
  edge_model = run.tflite_path("distill", cfg.get("edge_mode", "int8"))
  if cfg.get("edge", True) and os.path.exists(edge_model):
    # Device view of the deployable student: TFLM ops, arena, parity, flash, cost, board fit.
    edge, markdown = benchmark.edge_report(
        edge_model, test_x[:cfg.get("parity_samples", 100)], cfg.latency_runs, cfg.warmup_runs,
        cfg.threads, c_out=run.path("export", "firmware"))
    meta["edge"] = edge
    sections.append((f"Edge deployment: {os.path.basename(edge_model)}", markdown))
  table = report.write(run.workdir, rows, meta, sections)
  print(table)
  for title, markdown in sections:
    print(f"\n{title}\n{markdown}")


STAGE_FUNCTIONS = {
    "teacher": stage_teacher,
    "scratch": stage_scratch,
    "distill": stage_distill,
    "export": stage_export,
    "report": stage_report,
    "prune": compression_stages.stage_prune,
    "qat": compression_stages.stage_qat,
    "prune_qat": compression_stages.stage_prune_qat,
}


def run_pipeline(config, workdir: str) -> Run:
  """Runs `config.stages` in order in `workdir`.

  Args:
    config: a ConfigDict from `configs/`.
    workdir: output folder (created if needed).

  Returns:
    The stages' `Run` (data already loaded), for callers that go on measuring.
  """
  unknown = [s for s in config.stages if s not in STAGE_FUNCTIONS]
  if unknown:
    raise ConfigError(f"Unknown stage(s) {unknown} in config.stages: choose from {list(STAGE_FUNCTIONS)}.")
  os.makedirs(workdir, exist_ok=True)
  tf_keras.utils.set_random_seed(config.seed)
  run = Run(config, workdir)
  for stage in config.stages:
    start = time.time()
    logging.info("=== stage %s ===", stage)
    STAGE_FUNCTIONS[stage](run)
    logging.info("=== stage %s finished in %.0fs ===", stage, time.time() - start)
  return run
