"""Optimizers, learning-rate schedules and a resumable `fit` for every training stage.

Example:
  optimizer = make_optimizer("sgd", make_schedule("onecycle", 0.1, total_steps=390 * 30))
  model.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
  fit_resumable(model, train_ds, val_ds, epochs=30, stage_dir="runs/x/teacher")
  save_final_model(model, "runs/x/teacher/model.keras", "runs/x/teacher")
"""

import csv
import io
import math
import os
import shutil
import statistics
import tempfile
import time
from typing import Optional

import tensorflow as tf
import tf_keras
from absl import logging

from tfkd import distiller, precision, workers
from tfkd.errors import TrainingError
from tflite import files


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
  """Logs one line per epoch with the stage name, metrics, epoch time and ETA.

  The ETA is the median epoch time of this run times the epochs left, so one slow
  epoch (the first one's tracing, a process paused for a while) does not swing it.
  """

  def __init__(self, stage: str, epochs: int):
    super().__init__()
    self.stage, self.epochs = stage, epochs
    self._epoch_seconds = []

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    took = time.time() - self._start
    self._epoch_seconds.append(took)
    left = statistics.median(self._epoch_seconds) * (self.epochs - epoch - 1)
    metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
    logging.info("[%s] epoch %d/%d %.0fs (ETA %s) %s", self.stage, epoch + 1, self.epochs,
                 took, hours_minutes(left), metrics)


def hours_minutes(seconds: float) -> str:
  """A time left as '2h05m' or '7m' (at least 1m while any is left), for progress lines."""
  minutes = math.ceil(seconds / 60)
  return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


class StopOnNonFiniteLoss(tf_keras.callbacks.Callback):
  """Fails the stage at the end of an epoch whose loss is NaN or infinite.

  It runs before the backup and the history are written, so neither records
  the diverged epoch: the backup keeps the last good epoch.
  """

  def __init__(self, stage: str, epochs: int, stage_dir: str):
    super().__init__()
    self.stage, self.epochs, self.stage_dir = stage, epochs, stage_dir

  def on_epoch_end(self, epoch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is None or math.isfinite(float(loss)):
      return
    kept = (f"The last good epoch stays in {self.stage_dir}/backup: rerunning resumes from it; "
            f"delete {self.stage_dir} to start the stage over." if epoch else
            "No epoch finished: rerunning starts the stage over.")
    raise TrainingError(
        f"[{self.stage}] the training loss became {float(loss)} in epoch {epoch + 1}/{self.epochs}: "
        "training diverged and nothing was saved as finished. Likely causes: a learning rate too "
        "high for this model and batch size (lower train.learning_rate, e.g. 3x; or "
        "compress.train.learning_rate in compression stages), or bad data (NaN/inf inputs, labels "
        f"outside 0..classes-1). {kept}")


def trained_epochs(stage_dir: str) -> Optional[int]:
  """Epochs a training stage has finished, read from `stage_dir/history.csv`.

  Returns:
    The highest recorded epoch + 1, or None when the stage has no history.
  """
  path = os.path.join(stage_dir, "history.csv")
  if not os.path.exists(path):
    return None
  with open(path, newline="") as f:
    epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
  return max(epochs) + 1 if epochs else None


# Where BackupAndRestore's checkpoint keeps the last finished epoch.
_SAVED_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"


def _backup_dir(stage_dir: str) -> str:
  return os.path.join(stage_dir, "backup")


def resume_epoch(stage_dir: str) -> int:
  """The epoch an interrupted stage resumes at: epochs in its backup, 0 without one."""
  latest = tf.train.latest_checkpoint(os.path.join(_backup_dir(stage_dir), "chief"))
  if not latest:
    return 0
  return int(tf.train.load_checkpoint(latest).get_tensor(_SAVED_EPOCH_KEY)) + 1


def _keep_history_before(stage_dir: str, epoch: int) -> None:
  """Drops history.csv rows of epochs >= `epoch`: a resumed stage trains them again."""
  path = os.path.join(stage_dir, "history.csv")
  if not os.path.exists(path):
    return
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    fields, rows = reader.fieldnames, list(reader)
  kept = [row for row in rows if int(row["epoch"]) < epoch]
  if len(kept) == len(rows):
    return
  if not kept:
    os.remove(path)
    return
  text = io.StringIO()
  writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
  writer.writeheader()
  writer.writerows(kept)
  files.write_atomic(path, text.getvalue())


def fit_resumable(model: tf_keras.Model, train_ds, val_ds, epochs: int, stage_dir: str,
                  callbacks=(), steps_per_epoch: Optional[int] = None):
  """`model.fit` that resumes from its last finished epoch after an interruption.

  `BackupAndRestore` checkpoints model and optimizer each epoch under
  `stage_dir/backup` and restores them when the same call runs again. The
  backup outlives `fit`: it is deleted by `save_final_model` once the stage's
  model is saved, so a kill during that save loses no epoch. History goes to
  `stage_dir/history.csv`, one row per epoch (a resume first drops rows the
  backup does not hold). A NaN or infinite loss raises `TrainingError`
  (`StopOnNonFiniteLoss`).

  On several workers (`MultiWorkerMirroredStrategy`, `tfkd.workers`) every worker
  calls this with the same global batches: each takes its share of every batch
  (auto-shard policy DATA), so the steps and the views of an epoch are those of
  one worker. Only the chief writes the history and the backup (Keras' own
  `BackupAndRestore`: the others write theirs to `backup/workertemp_<i>/` and
  delete it), and every worker restores from the chief's backup.

  Args:
    model: a compiled model.
    train_ds: training batches: a finite dataset (one epoch, repeated here) or an
      endless one such as `tfkd.views.train_dataset` (started at `resume_epoch`),
      which needs `steps_per_epoch`.
    val_ds: validation batches, or None.
    epochs: epochs in all (a resumed run trains only the missing ones).
    stage_dir: folder of the backup and `history.csv`.
    callbacks: more Keras callbacks.
    steps_per_epoch: batches in an epoch; default: the cardinality of `train_ds`.

  Returns:
    The Keras `History`.

  Example:
    fit_resumable(model, train_ds, val_ds, epochs=30, stage_dir="runs/x/teacher")
    save_final_model(model, "runs/x/teacher/model.keras", "runs/x/teacher")
  """
  chief = workers.is_chief(model.distribute_strategy)
  os.makedirs(stage_dir, exist_ok=True)
  stage = os.path.basename(os.path.normpath(stage_dir))
  if chief:
    _keep_history_before(stage_dir, resume_epoch(stage_dir))
  # Order matters at an epoch's end: the loss check first (nothing records a diverged
  # epoch), then the history row, then the backup, so a kill between the last two
  # retrains that epoch and the resume drops its row instead of logging it twice.
  history_path = os.path.join(stage_dir, "history.csv")
  callbacks = [
      StopOnNonFiniteLoss(stage, epochs, stage_dir),
      *([tf_keras.callbacks.CSVLogger(history_path, append=True)] if chief else []),
      tf_keras.callbacks.BackupAndRestore(_backup_dir(stage_dir), delete_checkpoint=False),
      EpochProgress(stage, epochs),
      *callbacks,
  ]
  train_ds = _shard_by_batch(train_ds)
  val_ds = None if val_ds is None else _shard_by_batch(val_ds)
  # One endless iterator for the whole run: Keras otherwise rebuilds the input
  # iterator every epoch, which stalled training for up to half a minute here.
  steps = steps_per_epoch or int(tf.data.experimental.cardinality(train_ds))
  if steps <= 0:
    raise ValueError("train_ds is endless or of unknown length: pass steps_per_epoch.")
  if tf.data.experimental.cardinality(train_ds) != tf.data.INFINITE_CARDINALITY:
    train_ds = train_ds.repeat()
  build_step_variables(model, train_ds.element_spec)
  return model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                   verbose=0, steps_per_epoch=steps)


def build_step_variables(model: tf_keras.Model, element_spec) -> None:
  """Makes the optimizer's slots and the compiled metrics' variables before `fit` runs a step.

  `fit` makes them inside its first traced training step, and TensorFlow traces a step that
  makes variables a second time: 0.5 s more at every start of `fit` for a ResNet-8 on CIFAR,
  1.4 s for a ResNet-20 (BENCHMARKS §23), more for larger models. Done for a model whose
  step is Keras' own or a `Distiller`'s, with single-output logits and plain labels (the
  variables such a step trains and the metrics it updates are known); any other model is
  left to `fit`.

  Args:
    model: a compiled model, before `fit`.
    element_spec: the training batches' `element_spec`: (inputs, labels), where a
      Distiller's inputs may be (x, cached teacher logits).
  """
  if isinstance(model, distiller.Distiller):
    variables, predictor = model.trained_variables(), model.student
  elif type(model).train_step is tf_keras.Model.train_step:
    variables, predictor = model.trainable_variables, model
  else:
    return
  labels = element_spec[1] if isinstance(element_spec, tuple) and len(element_spec) == 2 else None
  if (not isinstance(labels, tf.TensorSpec) or labels.shape.rank is None
      or len(predictor.outputs or ()) != 1
      or not isinstance(model.optimizer, tf_keras.optimizers.Optimizer)):
    return
  with model.distribute_strategy.scope():
    model.optimizer.build(variables)
    if model.compiled_metrics is not None and not model.compiled_metrics.built:
      # Metrics are chosen by the labels' and logits' shapes ("accuracy": sparse or not).
      shape = [1 if d is None else d for d in labels.shape.as_list()]
      logits = tf.zeros([1, *predictor.output_shape[1:]], predictor.outputs[0].dtype)
      model.compiled_metrics.build(logits, tf.zeros([1, *shape[1:]], labels.dtype))


def _shard_by_batch(dataset):
  """`dataset` split batch by batch across workers (a no-op on one worker).

  The training batches are made in memory (no files to shard), so each worker
  builds every global batch and keeps its share of it: the global batch, and the
  views of each epoch, stay those of a one-worker run.
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return dataset.with_options(options)


def save_model_atomic(model: tf_keras.Model, path: str) -> None:
  """Saves a functional model for inference so `path` is either absent or complete.

  The saved model is uncompiled (no optimizer or schedule), so loading it needs
  neither tfkd nor the training losses, and the file holds only the weights
  that inference uses. On several workers only the chief writes `path`; the
  others save to a temporary folder they delete, as Keras' multi-worker guide
  asks (every worker takes part in a save of distributed variables).
  """
  inference_model = tf_keras.Model(model.inputs, model.outputs, name=model.name)
  if not workers.is_chief(model.distribute_strategy):
    with tempfile.TemporaryDirectory() as scratch:
      inference_model.save(os.path.join(scratch, os.path.basename(path)))
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  root, ext = os.path.splitext(path)
  tmp = f"{root}.partial{ext}"
  inference_model.save(tmp)
  os.replace(tmp, path)


def remove_backup(stage_dir: str) -> None:
  """Deletes a stage's epoch checkpoint (`fit_resumable`'s backup), if any."""
  shutil.rmtree(_backup_dir(stage_dir), ignore_errors=True)


def save_final_model(model: tf_keras.Model, path: str, stage_dir: str) -> None:
  """Saves a training stage's model atomically, then deletes the stage's epoch checkpoint.

  In that order: killed during the save, the stage resumes from its last epoch
  (nothing to retrain) and saves again. A model trained in mixed precision
  (`train.precision`) is saved as its float32 copy (`tfkd.precision`), so what
  training leaves behind is float32 whatever it computed in.

  Example:
    save_final_model(distiller.student, "runs/x/distill/model.keras", "runs/x/distill")
  """
  save_model_atomic(precision.with_policy(model, "float32"), path)
  if workers.is_chief(model.distribute_strategy):
    remove_backup(stage_dir)
