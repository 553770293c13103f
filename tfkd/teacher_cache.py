"""Teacher logits computed once or read from a file, and the checks that make them valid.

A live teacher runs a forward pass on every training batch, which can cost as
much as the student's whole training step. tfkd can instead compute the
teachers' logits once (`compute_teacher_logits`; for augmented views of many
epochs, `tfkd.view_cache`) or read logits any framework wrote to a `.npy` file
(`load_teacher_logits`), and feed `((x, teacher_logits), y)` batches to the
`Distiller`, which then skips the teachers: a distillation epoch costs about
one student epoch.

Cached logits are valid when
  - they are the teachers' output for exactly the inputs the student trains on:
    one row per training example in the order of the training split tfkd loads
    (`Run.splits.train`), and for augmented training one such array per epoch
    of views (`tfkd.views` keys every view by seed, epoch and example);
  - the losses read logits only: feature, attention, contrastive and relational
    losses read teacher layers that a cache does not hold.
Each is checked and refused with an error that says what to change.

Example:
  logits = compute_teacher_logits([teacher], train_x)            # [N, classes]
  save_teacher_logits("teacher_logits.npy", logits)
  train_ds = views.train_dataset(train_x, train_y, 128, augment=False, teacher_logits=logits[None])
  distiller.fit(train_ds, steps_per_epoch=len(train_y) // 128, epochs=30)   # the teacher is not run
"""

import io
import os
from typing import Optional, Sequence

import numpy as np
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


def load_teacher_logits(path: str, num_examples: int, num_classes: int,
                        augmented: bool = False) -> np.ndarray:
  """Reads and checks a `.npy` file of teacher logits for the training views.

  Args:
    path: `.npy` file holding a float array [num_examples, num_classes] (the
      un-augmented training split), or [epochs, num_examples, num_classes] (row
      [e, i]: the view `tfkd.views.epoch_views` makes of example i in epoch e).
    num_examples: rows expected (the training split's size).
    num_classes: columns expected.
    augmented: whether training augments its inputs; a 2-D file (logits of the
      un-augmented inputs) is then refused.

  Returns:
    float32 array [epochs, num_examples, num_classes] (epochs = 1 for a 2-D file).

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
  if logits.ndim == 2 and augmented:
    raise DatasetError(
        f"Teacher logits file {path!r} holds one row per training example, the teacher's logits "
        "for the un-augmented inputs, but training augments them (augment=True): write "
        "[epochs, examples, classes] for the views tfkd.views.epoch_views makes, or train "
        "without augmentation (config: data.augment=False).")
  if logits.ndim == 2:
    logits = logits[None]
  if logits.ndim != 3:
    raise DatasetError(f"Teacher logits file {path!r} holds an array of shape {logits.shape}, "
                       f"not [examples, classes] or [epochs, examples, classes]: {how}.")
  if logits.shape[1] != num_examples:
    raise DatasetError(f"Teacher logits file {path!r} has {logits.shape[1]} rows but the training "
                       f"split has {num_examples} examples: {how}.")
  if logits.shape[2] != num_classes:
    raise DatasetError(f"Teacher logits file {path!r} has {logits.shape[2]} columns but the "
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


def check_cacheable(distillation_losses: Sequence[DistillationLoss]) -> None:
  """Raises `ValueError` unless cached teacher logits can serve these losses.

  Args:
    distillation_losses: the losses the Distiller will train with.
  """
  layer_losses = [type(l).__name__ for l in distillation_losses if l.teacher_layer_name is not None]
  if layer_losses:
    raise ValueError(
        f"Cached teacher logits hold logits only, but {layer_losses} read teacher layers: "
        "use logit losses (config: distill.method='soft' or 'logits') with a cached teacher, "
        "or run the teacher live.")
