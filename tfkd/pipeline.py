"""The stages of a tfkd run: teacher → scratch → distill → export → report.

Each stage reads and writes `workdir/<stage>/`. A stage whose final artifact
exists is skipped, and an interrupted training stage resumes from its last
epoch (see `training.fit_resumable`), so rerunning the same command continues
where it stopped. Artifacts are written atomically.

Example:
  run(config, "runs/cifar10")   # or: python -m tfkd.train --config=... --workdir=...
"""

import os
import time

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from tfkd import data, losses, models, report, training
from tfkd.distiller import Distiller
from tfkd.errors import ConfigError
from tflite import convert, interpreter

STAGES = ("teacher", "scratch", "distill", "export", "report")


class Run:
  """What every stage needs: config, workdir, data, distribution strategy.

  Args:
    config: the run's ConfigDict (see configs/).
    workdir: folder for all artifacts.
  """

  def __init__(self, config, workdir: str):
    self.config = config
    self.workdir = workdir
    self.strategy = make_strategy(config.get("distribute", ""))
    self.splits = data.load_splits(config.data)
    self.normalization = self.splits.channel_stats() if len(self.splits.input_shape) == 3 else None

  def path(self, *parts) -> str:
    return os.path.join(self.workdir, *parts)

  def model_path(self, stage: str) -> str:
    return self.path(stage, "model.keras")

  def build(self, model_config, name: str) -> tf_keras.Model:
    kwargs = dict(model_config.get("kwargs", {}))
    model = models.build_model(model_config.model, self.splits.num_classes,
                               self.splits.input_shape, normalization=self.normalization, **kwargs)
    model._name = name  # pylint: disable=protected-access  (distinct names for teacher/student)
    return model

  def datasets(self, batch_size: int, distillation: bool = False):
    """(train, val) `tf.data` pipelines; `distillation` marks the distill stage's data."""
    del distillation  # The same data for every stage, until a transfer set is configured.
    train = data.train_dataset(*self.splits.train, batch_size=batch_size,
                               augment=self.config.data.augment, seed=self.config.seed)
    val = data.eval_dataset(*self.splits.val, batch_size) if self.splits.val else None
    return train, val

  def steps_per_epoch(self, batch_size: int) -> int:
    return len(self.splits.train[1]) // batch_size


def make_strategy(name: str) -> tf.distribute.Strategy:
  """'' (default, one device), 'mirrored' (all local devices) or 'multiworker' (TF_CONFIG)."""
  if not name:
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multiworker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ConfigError(f"Unknown distribute={name!r}: use '', 'mirrored' or 'multiworker'.")


def _skip(run: Run, stage: str, artifact: str) -> bool:
  if os.path.exists(artifact):
    logging.info("[%s] done already (%s): skipping.", stage, artifact)
    return True
  return False


def train_supervised(run: Run, stage: str, model_config, epochs: int) -> None:
  """Trains a model on labels alone (the teacher, or the student from scratch)."""
  if _skip(run, stage, run.model_path(stage)):
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


def make_distillation_losses(distill_config):
  """The `DistillationLoss` list and weights a `distill` config block asks for."""
  return [losses.LogitsDistillation(temperature=distill_config.temperature)], [1.0]


def stage_distill(run: Run) -> None:
  """Trains a fresh student against the trained teacher; saves the student alone."""
  if _skip(run, "distill", run.model_path("distill")):
    return
  teacher_path = run.model_path("teacher")
  if not os.path.exists(teacher_path):
    raise ConfigError(f"The distill stage needs a trained teacher at {teacher_path}: "
                      "run the 'teacher' stage first (it is in the default config.stages).")
  train_config = run.config.train
  with run.strategy.scope():
    teacher = tf_keras.models.load_model(teacher_path)
    student = run.build(run.config.student, "student")
    distillation_losses, weights = make_distillation_losses(run.config.distill)
    distiller = Distiller(teacher, student, distillation_losses, weights,
                          student_loss_weight=run.config.distill.student_loss_weight)
    distiller.compile(
        optimizer=training.make_optimizer(train_config, run.steps_per_epoch(train_config.batch_size)),
        metrics=["accuracy"])
  logging.info("[distill] %s → %s, T=%.1f, α=%.2f, %d epochs.", run.config.teacher.model,
               run.config.student.model, run.config.distill.temperature,
               run.config.distill.student_loss_weight, train_config.epochs)
  training.fit_resumable(distiller, *run.datasets(train_config.batch_size, distillation=True),
                         train_config.epochs,
                         run.path("distill"))
  training.save_model_atomic(distiller.student, run.model_path("distill"))


def tflite_path(run: Run, model_name: str, mode: str) -> str:
  return run.path("export", f"{model_name}_{mode}.tflite")


def representative_inputs(run: Run) -> np.ndarray:
  """Calibration inputs: an evenly spread sample of the training split."""
  x = run.splits.train[0]
  n = min(run.config.export.representative_size, len(x))
  return x[np.linspace(0, len(x) - 1, n).astype(int)]


def stage_export(run: Run) -> None:
  """Converts the distilled student in every `export.modes`, and the others to float32.

  The float32 teacher and scratch student exist so the report can time them on LiteRT.
  """
  wanted = [("distill", m) for m in run.config.export.modes]
  wanted += [(name, "float32") for name in ("teacher", "scratch")]
  representative = representative_inputs(run)
  for name, mode in wanted:
    out = tflite_path(run, name, mode)
    if not os.path.exists(run.model_path(name)) or _skip(run, "export", out):
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
    float_tflite = tflite_path(run, name, "float32")
    latency = (interpreter.latency_ms(float_tflite, test_x[0], cfg.latency_runs, cfg.warmup_runs,
                                      cfg.threads) if os.path.exists(float_tflite) else None)
    parameters[name] = model.count_params()
    rows.append(report.Row(f"{label} (Keras float)", model.name, parameters[name],
                           os.path.getsize(path), accuracy, latency and latency["p50"],
                           latency and latency["p90"]))
    logging.info("[report] %s: test accuracy %.4f", label, accuracy)
  for mode in run.config.export.modes:
    path = tflite_path(run, "distill", mode)
    if not os.path.exists(path):
      continue
    accuracy = interpreter.evaluate_accuracy(path, test_x, test_y, cfg.batch_size)
    latency = interpreter.latency_ms(path, test_x[0], cfg.latency_runs, cfg.warmup_runs, cfg.threads)
    rows.append(report.Row(f"distilled student, {mode} TFLite", os.path.basename(path),
                           parameters.get("distill"),
                           os.path.getsize(path), accuracy, latency["p50"], latency["p90"]))
    logging.info("[report] %s TFLite: test accuracy %.4f, p50 %.3f ms", mode, accuracy, latency["p50"])
  meta = {"config": run.config.to_dict(), "test_examples": int(len(test_y)),
          "latency": {"runs": cfg.latency_runs, "warmup": cfg.warmup_runs, "threads": cfg.threads}}
  table = report.write(run.workdir, rows, meta)
  print(table)


STAGE_FUNCTIONS = {
    "teacher": stage_teacher,
    "scratch": stage_scratch,
    "distill": stage_distill,
    "export": stage_export,
    "report": stage_report,
}


def run_pipeline(config, workdir: str) -> None:
  """Runs `config.stages` in order in `workdir`.

  Args:
    config: a ConfigDict from `configs/`.
    workdir: output folder (created if needed).
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
