"""Training one search candidate: distilled from the cached teacher views, or from scratch.

Each architecture trains in its own folder, `workdir/search/trials/<mode>_<key>_e<epochs>/`,
resumably (`training.fit_resumable`), under a file lock, and ends with `result.json`. An
architecture proposed again, in another study or by another worker, or retried
after a killed worker, reuses that folder: a finished one is not trained
again, an interrupted one continues at its next epoch. Per-epoch validation
accuracy is reported to the Optuna trial, whose pruner may stop it early.

Candidates at a lower resolution than the data see the same views, resized
with bilinear filtering and antialiasing (`resize_images`); the teacher's
cached logits label the full-size view the resized one comes from.

Example:
  result = train_candidate(run, cand, "distill", train_config, trial)
"""

import csv
import datetime
import fcntl
import os
import time

import numpy as np
import tensorflow as tf
import tf_keras

from tfkd import batch_norm, data, from_config, model_files, precision, search_space, training
from tflite import files


def resize_images(images, size: int):
  """Images resized to size x size (bilinear, antialiased), as the device must resize its input.

  Args:
    images: a batch [N, H, W, C] (NumPy or tensor), pixels in [0, 255].
    size: the candidate's resolution.

  Returns:
    float32 images [N, size, size, C]; unchanged (as float32) when already that size.
  """
  images = tf.cast(images, tf.float32)
  if images.shape[1] == size and images.shape[2] == size:
    return images
  return tf.image.resize(images, [size, size], method="bilinear", antialias=True)


def _resized_batches(dataset, size: int):
  def resize(features, labels):
    if isinstance(features, tuple):  # ((x, teacher logits), y) from the cached views
      return (resize_images(features[0], size), features[1]), labels
    return resize_images(features, size), labels
  return dataset.map(resize, num_parallel_calls=tf.data.AUTOTUNE)


def trial_dir(workdir: str, cand: dict, mode: str, epochs: int) -> str:
  """The folder where `cand` trains `epochs` epochs in `mode`, shared by every study and worker."""
  return os.path.join(workdir, "search", "trials",
                      f"{mode}_{search_space.candidate_key(cand)}_e{epochs}")


def build(run, cand: dict, name: str = "student") -> tf_keras.Model:
  """The candidate for this run's data (classes, channels, the training split's statistics)."""
  return search_space.build_candidate(cand, run.splits.num_classes, run.splits.input_shape[-1],
                                      run.splits.channel_stats(), name)


class _ReportToTrial(tf_keras.callbacks.Callback):
  """Reports each epoch's validation accuracy to Optuna; stops training when the pruner says so."""

  def __init__(self, trial):
    super().__init__()
    self.trial, self.stopped_after = trial, None

  def on_epoch_end(self, epoch, logs=None):
    # `epoch` counts from the run's start: a fit resumed from its backup begins at the
    # restored epoch, so the steps continue those replayed from the history.
    self.trial.report(float(logs["val_accuracy"]), epoch)
    # A trial killed later still counts its time up to here (`search_report.study_summary`).
    self.trial.set_user_attr("seconds_to_last_epoch", (
        datetime.datetime.now() - self.trial.datetime_start).total_seconds())
    if self.trial.should_prune():
      self.model.stop_training = True
      self.stopped_after = epoch + 1


def history_accuracies(folder: str) -> list:
  path = os.path.join(folder, "history.csv")
  if not os.path.exists(path):
    return []
  by_epoch = {}
  with open(path, newline="") as f:
    for row in csv.DictReader(f):
      by_epoch[int(row["epoch"])] = float(row["val_accuracy"])
  return [by_epoch[e] for e in sorted(by_epoch)]


def _report_history(trial, accuracies) -> None:
  """Reports a finished run's every epoch to the trial: its result stands, whatever the pruner
  would say, and the study's records keep the whole curve."""
  for epoch, accuracy in enumerate(accuracies):
    trial.report(accuracy, epoch)


def _should_stop_on_history(trial, accuracies) -> bool:
  """Replays the epochs of an interrupted run into the trial, until the pruner stops it."""
  for epoch, accuracy in enumerate(accuracies):
    trial.report(accuracy, epoch)
    if trial.should_prune():
      return True
  return False


def test_accuracy(run, model: tf_keras.Model, size: int, batch_size: int) -> float:
  """Float accuracy of a trained candidate on the run's test split (resized to `size`)."""
  x, y = run.splits.test
  logits = model.predict(data.eval_dataset(resize_images(x, size).numpy(), y, batch_size),
                         verbose=0)
  return float(np.mean(np.argmax(logits, axis=-1) == y))


def train_candidate(run, cand: dict, mode: str, train_config, trial=None, teacher_logits=None,
                    folder: str = None) -> dict:
  """Trains a candidate (or reads its finished result) and returns its result.

  Args:
    run: the search's `Run` (data, config, workdir).
    cand: the candidate (`tfkd.search_space`).
    mode: 'distill' (needs `teacher_logits`, the cached views' logits) or 'scratch'.
    train_config: a `config.train`-shaped block (epochs, batch size, optimizer, schedule).
    trial: the Optuna trial to report to and be stopped by, or None (train to the end).
    teacher_logits: [E, N, classes] logits of the cached training views, for 'distill'.
    folder: where to train; default `trial_dir(...)`.

  Returns:
    {"status": 'trained' or 'stopped', "epochs", "val_accuracy" (last epoch's),
     "best_val_accuracy", "test_accuracy" (float, trained only), "train_seconds",
     "model_path"}, and "read": True if the folder already had the result.
  """
  folder = folder or trial_dir(run.workdir, cand, mode, train_config.epochs)
  os.makedirs(folder, exist_ok=True)
  # Two workers drawing the same architecture at once: the second waits, then reads the result.
  with open(os.path.join(folder, ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    return _train_candidate(run, cand, mode, train_config, trial, teacher_logits, folder)


def _train_candidate(run, cand, mode, train_config, trial, teacher_logits, folder) -> dict:
  result_path = os.path.join(folder, "result.json")
  if os.path.exists(result_path):  # trained by another study, or before a kill
    if trial is not None:
      _report_history(trial, history_accuracies(folder))
    return dict(files.read_json(result_path), read=True)
  done_before = history_accuracies(folder)
  model_path = os.path.join(folder, "model.keras")
  if os.path.exists(model_path):  # trained, then killed before its result was written
    if trial is not None:
      _report_history(trial, done_before)
    return _finish(folder, "trained", done_before,
                   test_accuracy(run, model_files.load_model(model_path), cand["resolution"],
                                 run.config.report.batch_size), 0.0)
  if trial is not None and _should_stop_on_history(trial, done_before):
    return _finish(folder, "stopped", done_before, None, 0.0)
  start = time.time()
  size = cand["resolution"]
  steps = run.steps_per_epoch(train_config.batch_size, distillation=mode == "distill")
  with run.strategy.scope():
    student = precision.with_policy(build(run, cand), run.config.train.precision)
    if mode == "distill":
      model = from_config.distiller(run.config.distill, [], student)
    else:
      model = student
      model_loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=from_config.optimizer(train_config, steps),
                  metrics=["accuracy"], **({} if mode == "distill" else {"loss": model_loss}))
  with from_config.reading("train"):
    train, val = run.datasets(train_config.batch_size, os.path.relpath(folder, run.workdir),
                              distillation=mode == "distill",
                              teacher_logits=teacher_logits if mode == "distill" else None)
  train = _resized_batches(train, size)
  # Validation accuracy stops trials: read it with BatchNorm statistics of the current weights.
  inputs = train.map(lambda features, labels: features[0] if isinstance(features, tuple) else features)
  callbacks = [batch_norm.ReestimateBeforeValidation(student, inputs,
                                                     run.config.search.batch_norm_batches)]
  reporter = _ReportToTrial(trial) if trial is not None else None
  training.fit_resumable(model, train, _resized_batches(val, size), train_config.epochs, folder,
                         callbacks=callbacks + ([reporter] if reporter else []),
                         steps_per_epoch=steps)
  accuracies = history_accuracies(folder)
  if reporter is not None and reporter.stopped_after:
    training.remove_backup(folder)  # a stopped trial is final: nothing will resume it
    return _finish(folder, "stopped", accuracies, None, time.time() - start)
  training.save_final_model(student, model_path, folder)
  return _finish(folder, "trained", accuracies,
                 test_accuracy(run, precision.with_policy(student, "float32"), size,
                               run.config.report.batch_size),
                 time.time() - start)


def _finish(folder, status, accuracies, test_acc, seconds) -> dict:
  result = {"status": status, "epochs": len(accuracies),
            "val_accuracy": accuracies[-1] if accuracies else None,
            "best_val_accuracy": max(accuracies) if accuracies else None,
            "test_accuracy": test_acc, "train_seconds": seconds,
            "model_path": os.path.join(folder, "model.keras") if status == "trained" else None}
  files.write_json(os.path.join(folder, "result.json"), result)
  return result


def representative_inputs(run, size: int) -> np.ndarray:
  """The run's int8 calibration sample at a candidate's resolution."""
  return resize_images(run.representative_inputs(), size).numpy()
