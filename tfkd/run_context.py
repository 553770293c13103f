"""`Run`: what every pipeline stage needs (config, workdir, data, strategy) and where it writes.

Example:
  run = Run(config, "runs/cifar10")
  train_ds, val_ds = run.datasets(batch_size=128)
  run.model_path("distill")           # runs/cifar10/distill/model.keras
  run.tflite_path("distill", "int8")  # runs/cifar10/export/distill_int8.tflite
"""

import os
from typing import Optional

import numpy as np
import tf_keras
from absl import logging

from tfkd import data, from_config, training
from tfkd.errors import ConfigError


class Run:
  """What every stage needs: config, workdir, data, distribution strategy.

  Args:
    config: the run's ConfigDict with every key (`from_config.with_defaults`).
    workdir: folder for all artifacts.
  """

  def __init__(self, config, workdir: str):
    self.config = config
    self.workdir = workdir
    self.strategy = from_config.strategy(config.distribute)
    self.splits = from_config.splits(config.data, workdir)  # text keeps workdir/vocab.txt

  def path(self, *parts) -> str:
    return os.path.join(self.workdir, *parts)

  def model_path(self, stage: str) -> str:
    return self.path(stage, "model.keras")

  def teacher_paths(self) -> list:
    """The trained teacher and `distill.extra_teachers`: every model the student learns from."""
    return [self.model_path("teacher")] + list(self.config.distill.extra_teachers)

  def tflite_path(self, model_name: str, mode: str) -> str:
    return self.path("export", f"{model_name}_{mode}.tflite")

  def done(self, stage: str, artifact: str, epochs: Optional[int] = None) -> bool:
    """True (and says so) when `artifact`, a stage's final output, exists: the stage is skipped.

    With `epochs` (a training stage's budget), a finished stage whose history shows
    another epoch count is still skipped, with a warning that names both counts.
    """
    if not os.path.exists(artifact):
      return False
    logging.info("[%s] done already (%s): skipping.", stage, artifact)
    trained = training.trained_epochs(self.path(stage))
    if epochs is not None and trained is not None and trained != epochs:
      logging.warning("[%s] the finished model in %s was trained for %d epochs, the config asks "
                      "for %d: it is kept. To train it again, use a new --workdir or delete %s.",
                      stage, self.path(stage), trained, epochs, self.path(stage))
    return True

  def require(self, paths, stage: str) -> None:
    """Raises `ConfigError` naming the first of `paths` (earlier stages' outputs) that is missing."""
    producers = {self.model_path("teacher"): "teacher", self.model_path("distill"): "distill",
                 self.model_path("prune"): "prune"}
    for path in paths:
      if not os.path.exists(path):
        producer = producers.get(path)
        fix = (f"run the '{producer}' stage first (list it before '{stage}' in config.stages)"
               if producer else "fix distill.extra_teachers, or train that model first")
        raise ConfigError(f"The {stage} stage needs {path}: {fix}.")

  def build(self, model_config, name: str) -> tf_keras.Model:
    """A fresh model as `config.teacher` / `config.student` describes, for this run's data."""
    return from_config.model(model_config, self.splits, name)

  def datasets(self, batch_size: int, distillation: bool = False):
    """(train, val) `tf.data` pipelines; `distillation` marks the distill stage's data.

    In the distill stage a configured transfer set (`config.data.transfer_set`:
    augmented token ids, see `tfkd.text_augment`) joins the training data, labelled -1 so
    the student learns it from the teacher alone. Its epochs keep the other
    stages' number of batches, drawn afresh each epoch from the shuffled union,
    so the learning-rate schedule and the step budget match the scratch baseline.
    """
    x, y = self.splits.train
    if distillation:
      x, y = from_config.with_transfer_set(self.config.data, x, y)
    train = data.train_dataset(x, y, batch_size=batch_size,
                               augment=self.config.data.augment, seed=self.config.seed)
    if len(y) > len(self.splits.train[1]):
      train = train.take(self.steps_per_epoch(batch_size))
    val = data.eval_dataset(*self.splits.val, batch_size) if self.splits.val else None
    return train, val

  def steps_per_epoch(self, batch_size: int) -> int:
    return len(self.splits.train[1]) // batch_size

  def representative_inputs(self) -> np.ndarray:
    """Calibration inputs for int8: an evenly spread sample of the training split."""
    return data.evenly_spaced(self.splits.train[0], self.config.export.representative_size)
