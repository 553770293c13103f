"""Offline teachers: teacher logits computed once, then read with the training data.

A live teacher runs a forward pass on every training batch, which can cost as
much as the student's whole training step. Caching runs the teachers once over
the training set (or reads logits any framework wrote to a `.npy` file) and
feeds `((x, teacher_logits), y)` batches to the `Distiller`, which then skips
the teachers: a distillation epoch costs about one student epoch.

When caching is valid: the cached logits must be the teachers' output for
exactly the inputs the student trains on. So
  - no random augmentation: with `augment=True` every epoch sees new crops
    and flips that the teacher never labelled (caching would need every
    augmented view cached as well, which tfkd does not do);
  - only losses that read logits: feature, attention, contrastive and relational
    losses read teacher layers that the cache does not hold;
  - one row per training example, in the order of the training split tfkd
    loads (`Run.splits.train`), for the teacher(s) and
    teacher weights of the run.
Each of these is checked and refused with an error that says what to change.

Example:
  logits = compute_teacher_logits([teacher], train_x)
  save_teacher_logits("teacher_logits.npy", logits)
  train_ds = cached_train_dataset(train_x, train_y, logits, batch_size=128)
  distiller.fit(train_ds, epochs=30)          # the teacher is not run
"""

import io
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from tfkd import data
from tfkd.distiller import normalized_teacher_weights
from tfkd.errors import DatasetError
from tfkd.losses import DistillationLoss
from tflite.files import write_atomic


def compute_teacher_logits(teachers: Sequence[tf_keras.Model], x: np.ndarray,
                           teacher_weights: Optional[Sequence[float]] = None,
                           batch_size: int = 256) -> np.ndarray:
  """The teachers' weighted average logits for every row of `x`, in order.

  Args:
    teachers: one or more trained models returning logits.
    x: inputs (e.g. uint8 images), in the order the training data will use.
    teacher_weights: weights of the teachers' logits (default: equal), as in `Distiller`.
    batch_size: inference batch size.

  Returns:
    float32 array [len(x), classes].
  """
  weights = normalized_teacher_weights(teacher_weights, len(teachers))
  batches = data.eval_dataset(x, np.zeros(len(x), np.int32), batch_size)
  logits = 0.0
  for model, weight in zip(teachers, weights):
    logits = logits + weight * model.predict(batches, verbose=0).astype(np.float32)
  return np.asarray(logits, np.float32)


def save_teacher_logits(path: str, logits: np.ndarray) -> None:
  """Writes logits to a `.npy` file atomically (a partial file is never left at `path`)."""
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(logits, np.float32))
  write_atomic(path, buffer.getvalue())


def load_teacher_logits(path: str, num_examples: int, num_classes: int) -> np.ndarray:
  """Reads and checks a `.npy` file of teacher logits, one row per training example.

  Args:
    path: `.npy` file holding a float array [num_examples, num_classes].
    num_examples: rows expected (the training split's size).
    num_classes: columns expected.

  Returns:
    float32 array [num_examples, num_classes].

  Raises:
    DatasetError: the file is missing or unreadable, or has the wrong shape or non-finite values.
  """
  how = ("write one row of logits per training example, in the order of the training split "
         "tfkd loads (Run.splits.train; see docs/distillation.md)")
  if not os.path.exists(path):
    raise DatasetError(f"Teacher logits file {path!r} does not exist: {how}.")
  try:
    logits = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DatasetError(f"Teacher logits file {path!r} is not a readable .npy array ({e}): {how}.") from e
  if logits.ndim != 2:
    raise DatasetError(f"Teacher logits file {path!r} holds an array of shape {logits.shape}, "
                       f"not [examples, classes]: {how}.")
  if len(logits) != num_examples:
    raise DatasetError(f"Teacher logits file {path!r} has {len(logits)} rows but the training "
                       f"split has {num_examples} examples: {how}.")
  if logits.shape[1] != num_classes:
    raise DatasetError(f"Teacher logits file {path!r} has {logits.shape[1]} columns but the "
                       f"dataset has {num_classes} classes: {how}.")
  if not np.all(np.isfinite(logits)):
    raise DatasetError(f"Teacher logits file {path!r} holds NaN or infinite values: "
                       "recompute them with a working teacher.")
  return logits.astype(np.float32)


def label_agreement(logits: np.ndarray, labels: np.ndarray) -> float:
  """Share of labelled examples whose teacher top-1 class is the label.

  A trained teacher agrees with most training labels; agreement near 1/classes
  means the logits are in another order than the data (misaligned file).
  """
  labels = np.asarray(labels)
  labelled = labels >= 0
  if not labelled.any():
    return float("nan")
  return float(np.mean(np.argmax(logits[labelled], axis=-1) == labels[labelled]))


def check_cacheable(distillation_losses: Sequence[DistillationLoss], augment: bool) -> None:
  """Raises `ValueError` unless cached teacher logits are valid for this training.

  Args:
    distillation_losses: the losses the Distiller will train with.
    augment: whether training batches are randomly augmented.
  """
  if augment:
    raise ValueError(
        "Cached teacher logits are the teacher's outputs on the un-augmented training inputs, "
        "but random augmentation (augment=True) shows the student different inputs every "
        "epoch: train without augmentation (config: data.augment=False), or run the teacher "
        "live (config: distill.cached_teacher=False and no distill.teacher_logits_path).")
  layer_losses = [type(l).__name__ for l in distillation_losses if l.teacher_layer_name is not None]
  if layer_losses:
    raise ValueError(
        f"Cached teacher logits hold logits only, but {layer_losses} read teacher layers: "
        "use logit losses (config: distill.method='soft') with a cached teacher, or run the "
        "teacher live.")


def cached_train_dataset(x: np.ndarray, y: np.ndarray, logits: np.ndarray, batch_size: int,
                         augment: bool = False, seed: int = 0) -> tf.data.Dataset:
  """Shuffled training batches `((x, teacher_logits), y)` for the `Distiller`.

  Args:
    x, y: training features and labels.
    logits: teacher logits aligned with `x` (e.g. from `compute_teacher_logits`).
    batch_size: global batch size.
    augment: must be False (see the module docstring); given so the check lives here.
    seed: shuffle seed.

  Returns:
    A `tf.data.Dataset`.
  """
  if augment:
    check_cacheable([], augment)
  if len(logits) != len(y):
    raise DatasetError(f"{len(logits)} rows of teacher logits for {len(y)} training examples: "
                       "compute or load one row per training example.")
  return data.train_dataset(x, y, batch_size, augment=False, seed=seed,
                            extra=np.asarray(logits, np.float32))
