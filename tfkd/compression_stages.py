"""Compression stages: prune, qat and prune_qat, each under distillation.

Each fine-tunes a compressed copy of the distilled student inside a `Distiller`,
the teacher guiding it as in the distill stage, and exports it to full-integer
int8; `add_compression_rows` puts the results in the report. Stages skip when
done and resume like the others (see `tfkd.pipeline`). See docs/compression.md.

Example:
  config = configs.cifar10_compress.get_config()   # stages (..., "prune", "qat", "prune_qat", ...)
  pipeline.run_pipeline(config, "runs/cifar10")
"""

import os

import tf_keras
from absl import logging

from tfkd import compress, report, training
from tfkd.distiller import distiller_from_config
from tfkd.errors import ConfigError
from tfkd.run_context import Run
from tflite import convert, interpreter


def compress_config(run: Run):
  """The `config.compress` block, or a ConfigError saying where to get one."""
  if "compress" not in run.config:
    raise ConfigError("The prune, qat and prune_qat stages need a config.compress block: start "
                      "from configs/cifar10_compress.py (keys in docs/compression.md).")
  return run.config.compress


def compress_train_config(run: Run, qat: bool = False):
  """`config.train` with `config.compress.train` (and for QAT `compress.qat`) overrides."""
  cfg = compress_config(run)
  train_config = run.config.train.copy_and_resolve_references()
  train_config.update(cfg.train)
  if qat:
    train_config.epochs = cfg.qat.get("epochs") or train_config.epochs
    train_config.learning_rate = cfg.qat.get("learning_rate") or train_config.learning_rate
  return train_config


def compressed_model_path(run: Run, stage: str) -> str:
  """Where a compression stage keeps its Keras model: `.h5` for QAT models.

  tf_keras cannot reload tfmot's QAT wrappers from `.keras` files
  (tensorflow/model-optimization#1123); load them with `compress.load_model`.
  """
  return run.path(stage, "model.h5") if stage in ("qat", "prune_qat") else run.model_path(stage)


def finetune_with_teacher(run: Run, stage: str, start: str, wrap_student, callbacks=(),
                          qat: bool = False) -> tf_keras.Model:
  """Fine-tunes a wrapped copy of a saved student inside a `Distiller`, resumably.

  Args:
    run: the run.
    stage: this stage's name (its folder keeps the backup and history).
    start: the stage whose saved model is the starting point ('distill' or 'prune').
    wrap_student: fn(model, total_steps) → the model to train, e.g. a pruned copy.
    callbacks: extra `fit` callbacks (pruning needs `compress.pruning_callbacks()`).
    qat: use the `compress.qat` epochs and learning rate.

  Returns:
    The trained (still wrapped) student.
  """
  train_config = compress_train_config(run, qat)
  start_path = compressed_model_path(run, start)
  teacher_paths = run.teacher_paths()
  for path, producer in [(start_path, start), (teacher_paths[0], "teacher")]:
    if not os.path.exists(path):
      raise ConfigError(f"The {stage} stage needs {path}: run the '{producer}' stage first "
                        f"(list it before '{stage}' in config.stages).")
  steps = run.steps_per_epoch(train_config.batch_size)
  with run.strategy.scope():
    teachers = [tf_keras.models.load_model(p) for p in teacher_paths]
    student = wrap_student(compress.load_model(start_path), train_config.epochs * steps)
    distiller = distiller_from_config(run.config.distill, teachers, student)
    distiller.compile(optimizer=training.make_optimizer(train_config, steps), metrics=["accuracy"])
  logging.info("[%s] fine-tuning %s with the teacher: %d epochs, learning rate %g.", stage, start_path,
               train_config.epochs, train_config.learning_rate)
  training.fit_resumable(distiller, *run.datasets(train_config.batch_size, distillation=True),
                         train_config.epochs, run.path(stage), callbacks=list(callbacks))
  return student


def export_compressed(run: Run, stage: str) -> None:
  """Converts a compression stage's saved model to full-integer int8 TFLite."""
  out = run.tflite_path(stage, "int8")
  model = compress.load_model(compressed_model_path(run, stage))
  training.write_atomic(out, convert.convert(model, "int8", run.representative_inputs()))
  measured = compress.tflite_sparsity(out)["sparsity"]
  logging.info("[%s] %s: %d bytes, weight sparsity %.3f", stage, out, os.path.getsize(out), measured)


def stage_prune(run: Run) -> None:
  """Prunes the distilled student while the teacher guides it; exports post-training int8.

  `compress.prune.sparsity` is reached with a polynomial schedule, or with
  `compress.prune.m_by_n=(2, 4)` every 4 input-channel weights keep 2.
  """
  if run.done("prune", run.tflite_path("prune", "int8"), compress_train_config(run).epochs):
    return
  if not os.path.exists(compressed_model_path(run, "prune")):
    cfg = compress_config(run)
    m_by_n = tuple(cfg.prune.get("m_by_n", ())) or None

    def wrap(model, total_steps):
      schedule = None if m_by_n else compress.pruning_schedule(
          cfg.prune.sparsity, total_steps, cfg.prune.end_fraction, cfg.prune.frequency)
      return compress.prune(model, schedule, m_by_n, cfg.unsupported)

    student = finetune_with_teacher(run, "prune", "distill", wrap, compress.pruning_callbacks())
    training.save_model_atomic(compress.strip_pruning(student), compressed_model_path(run, "prune"))
  export_compressed(run, "prune")


def _finetune_quantized(run: Run, stage: str, start: str, preserve_sparsity: bool) -> None:
  if run.done(stage, run.tflite_path(stage, "int8"), compress_train_config(run, qat=True).epochs):
    return
  path = compressed_model_path(run, stage)
  if not os.path.exists(path):
    representative = run.representative_inputs()  # QAT's activation ranges start calibrated
    student = finetune_with_teacher(
        run, stage, start, lambda model, _: compress.quantize(model, preserve_sparsity, representative),
        qat=True)
    with compress.quantize_scope():
      training.save_model_atomic(student, path)
  export_compressed(run, stage)


def stage_qat(run: Run) -> None:
  """Quantisation-aware fine-tuning of the distilled student with the teacher; exports int8."""
  _finetune_quantized(run, "qat", "distill", preserve_sparsity=False)


def stage_prune_qat(run: Run) -> None:
  """QAT of the pruned student with tfmot's prune-preserve scheme (zeros stay); exports int8."""
  _finetune_quantized(run, "prune_qat", "prune", preserve_sparsity=True)


def _pruning_label(run: Run) -> str:
  prune_config = run.config.get("compress", {}).get("prune", {})
  if prune_config.get("m_by_n"):
    return "{}:{} sparse".format(*prune_config["m_by_n"])
  return f"{prune_config['sparsity']:.0%} sparse" if "sparsity" in prune_config else "pruned"


def add_compression_rows(run: Run, rows, parameters) -> None:
  """Measures gzip bytes and weight sparsity in the `.tflite` files for the report.

  Fills `gzip_bytes` and `sparsity` of the TFLite rows already in `rows` and
  appends one row per compressed int8 model found in `export/` (accuracy on the
  test set, LiteRT latency, sizes, sparsity read from the file).

  Args:
    run: the run.
    rows: the report's `Row`s so far; changed in place.
    parameters: stage name → parameter count of its Keras model.
  """
  test_x, test_y = run.splits.test
  cfg = run.config.report

  def measure(path):
    with open(path, "rb") as f:
      content = f.read()
    return compress.gzip_bytes(content), compress.tflite_sparsity(content)["sparsity"]

  for row in rows:
    path = run.path("export", row.model)
    if row.model.endswith(".tflite") and os.path.exists(path):
      row.gzip_bytes, row.sparsity = measure(path)
  labels = {"prune": f"pruned student ({_pruning_label(run)}), int8 TFLite (post-training)",
            "qat": "QAT student, int8 TFLite",
            "prune_qat": f"pruned ({_pruning_label(run)}) + QAT student, int8 TFLite"}
  for stage, label in labels.items():
    path = run.tflite_path(stage, "int8")
    if not os.path.exists(path):
      continue
    accuracy = interpreter.evaluate_accuracy(path, test_x, test_y, cfg.batch_size)
    latency = interpreter.latency_ms(path, test_x[0], cfg.latency_runs, cfg.warmup_runs, cfg.threads)
    gzip_size, sparsity = measure(path)
    rows.append(report.Row(label, os.path.basename(path), parameters.get("distill"),
                           os.path.getsize(path), accuracy, latency["p50"], latency["p90"],
                           gzip_bytes=gzip_size, sparsity=sparsity))
    logging.info("[report] %s: test accuracy %.4f, sparsity %.3f, gzip %d bytes", label, accuracy,
                 sparsity, gzip_size)
