"""Optimizers, learning-rate schedules and a resumable `fit` for every training stage.

Example:
  optimizer = make_optimizer("sgd", make_schedule("onecycle", 0.1, total_steps=390 * 30))
  model.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
  fit_resumable(model, train_ds, val_ds, epochs=30, stage_dir="runs/x/teacher")
"""

import csv
import math
import os
import time
from typing import Optional

import tensorflow as tf
import tf_keras
from absl import logging



@tf_keras.saving.register_keras_serializable(package="tfkd")
class OneCycle(tf_keras.optimizers.schedules.LearningRateSchedule):
  """One-cycle schedule (Smith & Topin 2019): cosine warm-up to `max_lr`, cosine down to ~0.

  Args:
    max_lr: peak learning rate.
    total_steps: steps of the whole run.
    warmup_fraction: share of the steps spent rising.
    div_factor: the start rate is max_lr / div_factor.
    final_div_factor: the end rate is start rate / final_div_factor.
  """

  def __init__(self, max_lr, total_steps, warmup_fraction=0.3, div_factor=25.0,
               final_div_factor=1e4):
    self.max_lr = max_lr
    self.total_steps = total_steps
    self.warmup_fraction = warmup_fraction
    self.div_factor = div_factor
    self.final_div_factor = final_div_factor

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    start = self.max_lr / self.div_factor
    end = start / self.final_div_factor
    warmup = max(1.0, self.warmup_fraction * self.total_steps)
    up = tf.minimum(step / warmup, 1.0)
    down = tf.clip_by_value((step - warmup) / max(1.0, self.total_steps - warmup), 0.0, 1.0)
    rising = start + (self.max_lr - start) * (1 - tf.cos(math.pi * up)) / 2
    falling = end + (self.max_lr - end) * (1 + tf.cos(math.pi * down)) / 2
    return tf.where(step < warmup, rising, falling)

  def get_config(self):
    return {"max_lr": self.max_lr, "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction, "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor}


def make_schedule(schedule: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
  """A learning-rate schedule by name.

  Args:
    schedule: 'onecycle' (`OneCycle`), 'cosine' (cosine decay, optionally after a
      linear warm-up from a tenth of the rate) or 'constant'.
    learning_rate: the peak (onecycle, cosine) or only (constant) rate.
    total_steps: optimizer steps of the whole run.
    warmup_steps: cosine only: steps of the warm-up.

  Returns:
    A `tf_keras` schedule, or the float rate for 'constant'.

  Example:
    make_schedule("cosine", 0.1, total_steps=390 * 30, warmup_steps=390)
  """
  total_steps = max(1, int(total_steps))
  if schedule == "cosine":
    return tf_keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10 if warmup_steps else learning_rate,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps)
  if schedule == "onecycle":
    return OneCycle(learning_rate, total_steps)
  if schedule == "constant":
    return learning_rate
  raise ValueError(f"Unknown schedule={schedule!r}: use 'cosine', 'onecycle' or 'constant'.")


def make_optimizer(name: str, schedule, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> tf_keras.optimizers.Optimizer:
  """SGD with Nesterov momentum or AdamW, decoupled weight decay off BatchNorm and biases.

  Args:
    name: 'sgd' or 'adamw'.
    schedule: a learning rate or schedule (see `make_schedule`).
    momentum: SGD momentum.
    weight_decay: decoupled weight decay.

  Returns:
    A `tf_keras` optimizer.

  Example:
    make_optimizer("sgd", make_schedule("onecycle", 0.1, 390 * 30), weight_decay=5e-4)
  """
  if name == "sgd":
    optimizer = tf_keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True,
                                        weight_decay=weight_decay)
  elif name == "adamw":
    optimizer = tf_keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
  else:
    raise ValueError(f"Unknown optimizer name={name!r}: use 'sgd' or 'adamw'.")
  optimizer.exclude_from_weight_decay(var_names=["_bn", "bias", "gamma", "beta"])
  return optimizer


class EpochProgress(tf_keras.callbacks.Callback):
  """Logs one line per epoch with the stage name, metrics, epoch time and ETA."""

  def __init__(self, stage: str, epochs: int):
    super().__init__()
    self.stage, self.epochs = stage, epochs

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    took = time.time() - self._start
    metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
    logging.info("[%s] epoch %d/%d %.0fs (ETA %.0fs) %s", self.stage, epoch + 1, self.epochs,
                 took, took * (self.epochs - epoch - 1), metrics)


def trained_epochs(stage_dir: str) -> Optional[int]:
  """Epochs a training stage has finished, read from `stage_dir/history.csv`.

  Returns:
    The highest recorded epoch + 1 (resumed runs may log an epoch twice), or None
    when the stage has no history.
  """
  path = os.path.join(stage_dir, "history.csv")
  if not os.path.exists(path):
    return None
  with open(path, newline="") as f:
    epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
  return max(epochs) + 1 if epochs else None


def fit_resumable(model: tf_keras.Model, train_ds, val_ds, epochs: int, stage_dir: str,
                  callbacks=(), steps_per_epoch: Optional[int] = None):
  """`model.fit` that resumes from its last finished epoch after an interruption.

  `BackupAndRestore` checkpoints model and optimizer each epoch under
  `stage_dir/backup` and restores them when the same call runs again; the
  backup is deleted when training finishes. History goes to `stage_dir/history.csv`.

  Args:
    model: a compiled model.
    train_ds: training batches: a finite dataset (one epoch, repeated here) or an
      endless one such as `tfkd.views.train_dataset`, which needs `steps_per_epoch`.
    val_ds: validation batches, or None.
    epochs: epochs in all (a resumed run trains only the missing ones).
    stage_dir: folder of the backup and `history.csv`.
    callbacks: more Keras callbacks.
    steps_per_epoch: batches in an epoch; default: the cardinality of `train_ds`.

  Returns:
    The Keras `History`.
  """
  os.makedirs(stage_dir, exist_ok=True)
  stage = os.path.basename(os.path.normpath(stage_dir))
  backup_dir = os.path.join(stage_dir, "backup")
  callbacks = [
      tf_keras.callbacks.BackupAndRestore(backup_dir),
      tf_keras.callbacks.CSVLogger(os.path.join(stage_dir, "history.csv"), append=True),
      tf_keras.callbacks.TerminateOnNaN(),
      EpochProgress(stage, epochs),
      *callbacks,
  ]
  # One endless iterator for the whole run: Keras otherwise rebuilds the input
  # iterator every epoch, which stalled training for up to half a minute here.
  steps = steps_per_epoch or int(tf.data.experimental.cardinality(train_ds))
  if steps <= 0:
    raise ValueError("train_ds is endless or of unknown length: pass steps_per_epoch.")
  if tf.data.experimental.cardinality(train_ds) != tf.data.INFINITE_CARDINALITY:
    train_ds = train_ds.repeat()
  history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                      verbose=0, steps_per_epoch=steps)
  if os.path.isdir(backup_dir) and not os.listdir(backup_dir):
    os.rmdir(backup_dir)  # Keras deletes the checkpoint but leaves its empty folder
  return history


def save_model_atomic(model: tf_keras.Model, path: str) -> None:
  """Saves a functional model for inference so `path` is either absent or complete.

  The saved model is uncompiled (no optimizer or schedule), so loading it needs
  neither tfkd nor the training losses, and the file holds only the weights
  that inference uses.
  """
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  root, ext = os.path.splitext(path)
  tmp = f"{root}.partial{ext}"
  tf_keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)
  os.replace(tmp, path)
