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
import tensorflow as tf
import tf_keras
from absl import logging

from tfkd import data, models, training
from tfkd.errors import ConfigError


def make_strategy(name: str) -> tf.distribute.Strategy:
  """'' (default, one device), 'mirrored' (all local devices) or 'multiworker' (TF_CONFIG)."""
  if not name:
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multiworker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ConfigError(f"Unknown distribute={name!r}: use '', 'mirrored' or 'multiworker'.")


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
    self.splits = data.load_splits(config.data, workdir)  # text keeps workdir/vocab.txt
    self.normalization = self.splits.channel_stats() if len(self.splits.input_shape) == 3 else None

  def path(self, *parts) -> str:
    return os.path.join(self.workdir, *parts)

  def model_path(self, stage: str) -> str:
    return self.path(stage, "model.keras")

  def teacher_paths(self) -> list:
    """The trained teacher and `distill.extra_teachers`: every model the student learns from."""
    return [self.model_path("teacher")] + list(self.config.distill.get("extra_teachers", ()))

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

  def build(self, model_config, name: str) -> tf_keras.Model:
    kwargs = dict(model_config.get("kwargs", {}))
    model = models.build_model(model_config.model, self.splits.num_classes,
                               self.splits.input_shape, normalization=self.normalization, **kwargs)
    model._name = name  # pylint: disable=protected-access  (distinct names for teacher/student)
    return model

  def datasets(self, batch_size: int, distillation: bool = False):
    """(train, val) `tf.data` pipelines; `distillation` marks the distill stage's data.

    In the distill stage a configured transfer set (`config.data.transfer_set`:
    augmented token ids, see `tfkd.text`) joins the training data, labelled -1 so
    the student learns it from the teacher alone. Its epochs keep the other
    stages' number of batches, drawn afresh each epoch from the shuffled union,
    so the learning-rate schedule and the step budget match the scratch baseline.
    """
    from tfkd import text  # pylint: disable=import-outside-toplevel
    x, y = self.splits.train
    transfer_set = self.config.data.get("transfer_set") if distillation else None
    if transfer_set and transfer_set.get("copies"):
      x, y = text.with_transfer_set(x, y, transfer_set)
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
    x = self.splits.train[0]
    n = min(self.config.export.representative_size, len(x))
    return x[np.linspace(0, len(x) - 1, n).astype(int)]
