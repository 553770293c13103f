"""Fine-tuning a keras-hub teacher (Keras 3) on length-bucketed batches, resumable at any checkpoint.

SST-2's training rows are mostly short phrases (median 7 words, longest 52):
padding every batch to the longest sentence would multiply the transformer's
cost. Batches here hold rows of similar length (`bucketed_batches`: rows
grouped by length rounded up to 8 tokens, shuffled within a group, the batches
shuffled), padded to their own longest row.

A fine-tune of one epoch takes tens of minutes on a CPU, so it checkpoints every
`checkpoint_steps` steps, not only per epoch: `checkpoint_dir/state.json`
names the last weights file (model and optimizer) and the (epoch, step) it
holds. The batch order of an epoch is a function of (seed, epoch), so a killed
fine-tune reloads the checkpoint and continues at the next batch, as if it had
not stopped.

Example:
  model = hub_teacher.build_classifier(preset, 2, "mixed_bfloat16")
  compile_for_fine_tune(model, learning_rate=5e-5, total_steps=2000)
  fine_tune(model, ids, mask, labels, epochs=1, batch_size=32, checkpoint_dir="runs/x/teacher/ckpt")
"""

import json
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from tfkd.errors import TrainingError
from tfkd.hub_teacher import WIDTH_STEP, batch_inputs, import_keras
from tflite import files

STATE_FILE = "state.json"


def bucketed_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list:
  """One epoch's batches of row indices, rows of a batch of about the same length.

  Rows are grouped by length rounded up to `WIDTH_STEP`; each group is shuffled
  and cut into batches (the last one of a group may be smaller); the batches
  are shuffled. Every row appears once; the same (seed, epoch) gives the same batches.

  Example:
    bucketed_batches(np.array([3, 30, 4, 31]), 2, seed=0, epoch=0)  # e.g. [[1, 3], [2, 0]]
  """
  rng = np.random.default_rng([seed, epoch])
  buckets = -(-np.asarray(lengths) // WIDTH_STEP)
  batches = []
  for bucket in np.unique(buckets):
    rows = rng.permutation(np.flatnonzero(buckets == bucket))
    batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
  return [batches[i] for i in rng.permutation(len(batches))]


def steps_per_epoch(lengths: np.ndarray, batch_size: int) -> int:
  """Batches in an epoch of `bucketed_batches` (the same every epoch)."""
  buckets = -(-np.asarray(lengths) // WIDTH_STEP)
  return int(sum(-(-np.sum(buckets == b) // batch_size) for b in np.unique(buckets)))


def compile_for_fine_tune(model, learning_rate: float, total_steps: int,
                          warmup_fraction: float = 0.06, weight_decay: float = 0.01) -> None:
  """AdamW, linear warm-up then cosine decay to 0, cross-entropy on logits, accuracy.

  Biases and LayerNorm parameters get no weight decay (as BERT's fine-tuning recipe).
  """
  keras, _ = import_keras()
  warmup = int(warmup_fraction * total_steps)
  schedule = keras.optimizers.schedules.CosineDecay(
      0.0 if warmup else learning_rate, max(1, total_steps - warmup), alpha=0.0,
      warmup_target=learning_rate if warmup else None, warmup_steps=warmup)
  optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
  optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
  # No XLA: every batch shape (length bucket, a group's last smaller batch) would compile anew.
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=False)


def read_state(checkpoint_dir: str) -> Optional[dict]:
  """The last checkpoint's state ({'epoch', 'step', 'weights', 'seconds'}), or None."""
  path = os.path.join(checkpoint_dir, STATE_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _save_checkpoint(model, checkpoint_dir: str, epoch: int, step: int, seconds: float) -> None:
  """Weights (model and optimizer) to a new file, then the state naming it, then the old file goes.

  A kill at any point leaves a state that names a complete weights file.
  """
  old = read_state(checkpoint_dir)
  name = f"epoch{epoch}_step{step}.weights.h5"
  model.save_weights(os.path.join(checkpoint_dir, name))
  files.write_json(os.path.join(checkpoint_dir, STATE_FILE),
                   {"epoch": epoch, "step": step, "weights": name, "seconds": seconds})
  if old and old["weights"] != name:
    os.remove(os.path.join(checkpoint_dir, old["weights"]))


def _build_compiled_metrics(model, inputs, labels: np.ndarray) -> None:
  """Makes the compiled metrics' variables now, from one eager forward pass (under 1 s).

  Keras 3 without a distribution strategy makes them inside the first traced training step,
  and a step that makes variables is traced twice by TensorFlow: for MiniLM on a CPU that is
  a second trace of about 10 s.
  """
  model.compute_metrics(inputs, labels, model(inputs, training=False))
  model.reset_metrics()


def fine_tune(model, ids: np.ndarray, mask: np.ndarray, labels: np.ndarray, epochs: int,
              batch_size: int, checkpoint_dir: str, checkpoint_steps: int = 200,
              seed: int = 0) -> float:
  """Trains a compiled model for `epochs` epochs of bucketed batches, resuming a checkpoint.

  Args:
    model: `hub_teacher.build_classifier`'s model, compiled (`compile_for_fine_tune`).
    ids, mask: `hub_teacher.encode`'s arrays of the training rows.
    labels: int class ids, one per row.
    epochs: epochs to have trained when this returns (those a checkpoint holds count).
    batch_size: rows per step.
    checkpoint_dir: folder of the checkpoints; a state there is resumed.
    checkpoint_steps: steps between checkpoints (and at each epoch's end).
    seed: the batch order's seed.

  Returns:
    Seconds spent training, over every resumed attempt.

  Raises:
    TrainingError: the loss became NaN or infinite.
  """
  os.makedirs(checkpoint_dir, exist_ok=True)
  if not model.optimizer.built:  # its variables must exist for a checkpoint to fill them
    model.optimizer.build(model.trainable_variables)
  state = read_state(checkpoint_dir) or {"epoch": 0, "step": 0, "seconds": 0.0}
  if "weights" in state:
    model.load_weights(os.path.join(checkpoint_dir, state["weights"]))
    logging.info("[teacher] resuming the fine-tune at epoch %d, step %d (%s).", state["epoch"] + 1,
                 state["step"], state["weights"])
  lengths = mask.sum(axis=1)
  labels = np.asarray(labels, np.int32)
  epoch, step, seconds = state["epoch"], state["step"], state["seconds"]
  if epoch < epochs and not tf.distribute.has_strategy():  # under one, Keras builds them itself
    rows = np.arange(min(2, len(labels)))
    _build_compiled_metrics(model, batch_inputs(ids, mask, rows), labels[rows])
  while epoch < epochs:
    batches = bucketed_batches(lengths, batch_size, seed, epoch)
    start, segment_steps = time.time(), 0
    model.reset_metrics()  # Keras 3 averages loss and accuracy over calls until reset
    while step < len(batches):
      rows = batches[step]
      logs = model.train_on_batch(batch_inputs(ids, mask, rows), labels[rows], return_dict=True)
      step, segment_steps = step + 1, segment_steps + 1
      if not np.isfinite(logs["loss"]):
        raise TrainingError(f"The teacher's fine-tune loss became {logs['loss']} at epoch "
                            f"{epoch + 1}, step {step}: lower teacher.hub.learning_rate, or use "
                            "teacher.hub.dtype='float32'.")
      done = step == len(batches)
      if done or step % checkpoint_steps == 0:
        elapsed = seconds + time.time() - start
        _save_checkpoint(model, checkpoint_dir, epoch + done, 0 if done else step, elapsed)
        logging.info("[teacher] epoch %d step %d/%d: loss %.4f, accuracy %.4f (last %d steps), "
                     "%.2f s/step.", epoch + 1, step, len(batches), logs["loss"],
                     logs["accuracy"], segment_steps, (time.time() - start) / segment_steps)
        seconds, start, segment_steps = elapsed, time.time(), 0
        model.reset_metrics()
    epoch, step = epoch + 1, 0
  return seconds
