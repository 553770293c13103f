"""The teacher's cost paid once: its logits for E epochs of augmented views, kept on disk.

A live teacher runs a forward pass on every training batch of every distillation
run: the distilled student, each compression fine-tune, each seed, each
candidate of a search. Because `tfkd.views` makes the view of example i in
epoch e a pure function of (seed, e, i), the teacher can label E epochs of views
once, in large inference batches, and every later run reads the logits beside
the views it regenerates (FKD, Shen & Xing 2022; ReLabel, Yun et al. 2021). A
run longer than E epochs cycles them: epoch e reads cached epoch e mod E (its
views are regenerated for e mod E too, so they always match).

On disk, in `cache_dir`:
  fingerprint.json     what the logits depend on: the teachers' file hashes and
                       weights, a hash of the training split, the augmentation,
                       the seed, E and the storage format. A cache whose
                       fingerprint differs is refused, never reused; one
                       of more epochs serves a run asking for fewer (its
                       first E: epoch e's views do not depend on E).
  epoch_00000.npz ...  one file per epoch, written atomically, so an interrupted
                       build resumes at the first missing epoch.
Storage: 'float16' keeps every logit ([N, classes] float16: 0.9 MB an epoch for
CIFAR-10's 45,000 images); 'top_k' keeps, per view, the k largest log-probabilities
with their classes and the remaining probability mass, spread evenly over the
other classes when read back, for datasets with many classes. At temperature 1
a top-k cache gives the teacher's distribution exactly on the k classes; at
other temperatures the tail is an approximation.

Example:
  fingerprint = make_fingerprint(teacher_paths, None, train_x, train_y, augment=True, seed=0,
                                 epochs=20, storage="float16")
  build(cache_dir, fingerprint, teachers, None, train_x, seed=0, augment=True)
  logits = load(cache_dir, fingerprint, num_classes=10)     # [20, N, 10]
  ds = views.train_dataset(train_x, train_y, 128, seed=0, teacher_logits=logits)
"""

import hashlib
import io
import os
import statistics
import time
from typing import Callable, Optional, Sequence

import numpy as np
import tf_keras
from absl import logging

from tfkd import teacher_compression, training, views
from tfkd.distiller import normalized_teacher_weights
from tfkd.errors import DatasetError
from tflite import files

STORAGES = ("float16", "top_k")
FORMAT_VERSION = 1  # bump when views or storage change meaning: old caches are then refused


def file_sha256(path: str) -> str:
  """SHA-256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def array_sha256(*arrays: np.ndarray) -> str:
  """SHA-256 of arrays' shapes, dtypes and bytes (the training split's identity)."""
  digest = hashlib.sha256()
  for array in arrays:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.shape}{array.dtype}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def make_fingerprint(teacher_files: Sequence[str], teacher_weights: Optional[Sequence[float]],
                     x: np.ndarray, y: np.ndarray, augment: bool, seed: int, epochs: int,
                     storage: str = "float16", top_k: int = 0) -> dict:
  """Everything a cache's logits depend on.

  Args:
    teacher_files: the teachers' `.keras` files (hashed), or for logits from
      another framework the file they came from.
    teacher_weights: weights of the teachers' logits (None: equal).
    x, y: the training split, in tfkd's order.
    augment: whether views are augmented.
    seed: the run's seed (keys every view).
    epochs: E, epochs of views cached.
    storage: one of `STORAGES`.
    top_k: classes kept per view with storage 'top_k'.
  """
  if storage not in STORAGES:
    raise ValueError(f"Unknown storage={storage!r}: use one of {STORAGES}.")
  if epochs < 1:
    raise ValueError(f"epochs={epochs}: cache at least one epoch of views.")
  if storage == "top_k" and top_k < 1:
    raise ValueError(f"top_k={top_k}: keep at least one class per view with storage='top_k'.")
  return {
      "format": FORMAT_VERSION,
      "teachers": [{"file": os.path.basename(p), "sha256": file_sha256(p)} for p in teacher_files],
      "teacher_weights": normalized_teacher_weights(teacher_weights, len(teacher_files)),
      "data_sha256": array_sha256(x, y), "examples": int(len(y)),
      "augment": {"enabled": bool(augment), "flip": True,
                  "pad": views.crop_padding(x.shape[1:3]) if augment else views.PAD},
      "seed": int(seed), "epochs": int(epochs),
      "storage": storage, "top_k": int(top_k) if storage == "top_k" else 0,
  }


def _fingerprint_path(cache_dir: str) -> str:
  return os.path.join(cache_dir, "fingerprint.json")


def _epoch_path(cache_dir: str, epoch: int) -> str:
  return os.path.join(cache_dir, f"epoch_{epoch:05d}.npz")


def _mismatches(stored: dict, fingerprint: dict) -> list:
  """The keys in which a stored cache fails a run's fingerprint: any difference, but `epochs`
  only when the run asks for more than the cache holds."""
  differs = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
  if "epochs" in differs and stored.get("epochs", 0) > fingerprint["epochs"]:
    differs.remove("epochs")
  return differs


def check_fingerprint(cache_dir: str, fingerprint: dict) -> None:
  """Writes the fingerprint of a new cache, or raises `DatasetError` if an existing one cannot
  serve this run (`_mismatches`: a cache of more epochs serves a run asking for fewer)."""
  path = _fingerprint_path(cache_dir)
  if not os.path.exists(path):
    files.write_json(path, fingerprint)
    return
  stored = files.read_json(path)
  differs = _mismatches(stored, fingerprint)
  if differs:
    raise DatasetError(
        f"The teacher-logit cache in {cache_dir} was made for other {differs} than this run "
        f"asks for (stored: {[stored.get(k) for k in differs]}): it is not reused. Fix: delete "
        f"{cache_dir} to build it again for this run, or give this run its own cache folder (a "
        f"new workdir, or another distill.cache_dir).")


def _encode(logits: np.ndarray, storage: str, top_k: int) -> dict:
  if storage == "float16":
    return {"logits": logits.astype(np.float16)}
  log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
  classes = np.argsort(-log_probs, axis=-1)[:, :top_k]
  kept = np.take_along_axis(log_probs, classes, axis=-1)
  rest = np.clip(1.0 - np.exp(kept).sum(-1), 0.0, 1.0)
  return {"classes": classes.astype(np.int32), "log_probs": kept.astype(np.float16),
          "rest": rest.astype(np.float16)}


def _decode(stored, num_classes: int) -> np.ndarray:
  """float16 [N, classes] logits from one stored epoch."""
  if "logits" in stored:
    return stored["logits"]
  classes, kept, rest = stored["classes"], stored["log_probs"], stored["rest"].astype(np.float32)
  others = max(num_classes - classes.shape[1], 1)
  floor = np.log(np.maximum(rest, 1e-12) / others)
  logits = np.repeat(floor[:, None], num_classes, axis=1)
  np.put_along_axis(logits, classes, kept.astype(np.float32), axis=1)
  return logits.astype(np.float16)


def _predict(predictors, weights, batch) -> np.ndarray:
  logits = 0.0
  for predict, weight in zip(predictors, weights):
    logits = logits + weight * predict(batch)
  return logits


def build(cache_dir: str, fingerprint: dict, teachers: Sequence[tf_keras.Model],
          x: np.ndarray, batch_size: int = 1024,
          on_epoch: Optional[Callable[[int], None]] = None) -> None:
  """Labels every missing epoch of views with the teachers; resumable.

  Args:
    cache_dir: where the cache lives (created if needed).
    fingerprint: from `make_fingerprint` for these teachers and this data.
    teachers: the loaded teacher models (Keras, or `teacher_compression.LiteRTTeacher`), in the
      fingerprint's order.
    x: the training inputs the fingerprint was made from.
    batch_size: inference batch size (large: inference needs no gradients).
    on_epoch: called with each epoch number after it is written (progress, tests).
  """
  check_fingerprint(cache_dir, fingerprint)
  weights = fingerprint["teacher_weights"]
  predictors = [teacher_compression.inference_function(t) for t in teachers]
  missing = [e for e in range(fingerprint["epochs"]) if not os.path.exists(_epoch_path(cache_dir, e))]
  seconds = []
  for epoch in missing:
    path = _epoch_path(cache_dir, epoch)
    start = time.time()
    logits = np.concatenate([_predict(predictors, weights, batch) for batch in views.epoch_views(
        x, fingerprint["seed"], epoch, fingerprint["augment"]["enabled"], batch_size)])
    buffer = io.BytesIO()
    np.savez(buffer, **_encode(logits, fingerprint["storage"], fingerprint["top_k"]))
    files.write_atomic(path, buffer.getvalue())
    seconds.append(time.time() - start)
    logging.info("[teacher_views] epoch %d/%d of views labelled (%.0fs, ETA %s)", epoch + 1,
                 fingerprint["epochs"], seconds[-1],
                 training.hours_minutes(statistics.median(seconds) * (len(missing) - len(seconds))))
    if on_epoch:
      on_epoch(epoch)


def import_logits(cache_dir: str, fingerprint: dict, logits: np.ndarray) -> None:
  """Fills a cache from logits computed elsewhere (another framework's teacher).

  Args:
    logits: [E, N, classes] (or [N, classes] for E = 1), row [e, i] the teacher's
      logits for `views.epoch_views(x, seed, e, augment)`'s example i.
  """
  logits = np.asarray(logits, np.float32)
  logits = logits[None] if logits.ndim == 2 else logits
  if logits.ndim != 3 or logits.shape[:2] != (fingerprint["epochs"], fingerprint["examples"]):
    raise DatasetError(
        f"Teacher logits of shape {logits.shape} do not fit a cache of {fingerprint['epochs']} "
        f"epochs of {fingerprint['examples']} views: write [epochs, training examples, classes], "
        "row [e, i] for the view views.epoch_views(x, seed, e, augment) yields for example i.")
  check_fingerprint(cache_dir, fingerprint)
  for epoch in range(fingerprint["epochs"]):
    buffer = io.BytesIO()
    np.savez(buffer, **_encode(logits[epoch], fingerprint["storage"], fingerprint["top_k"]))
    files.write_atomic(_epoch_path(cache_dir, epoch), buffer.getvalue())


def is_complete(cache_dir: str, fingerprint: dict) -> bool:
  """True when the cache serves this fingerprint and every epoch it asks for is on disk."""
  return (os.path.exists(_fingerprint_path(cache_dir))
          and not _mismatches(files.read_json(_fingerprint_path(cache_dir)), fingerprint)
          and all(os.path.exists(_epoch_path(cache_dir, e)) for e in range(fingerprint["epochs"])))


def load(cache_dir: str, fingerprint: dict, num_classes: int) -> np.ndarray:
  """The cached logits, [E, N, classes] float16, after checking the fingerprint.

  Raises:
    DatasetError: the cache is missing epochs or was made for something else.
  """
  check_fingerprint(cache_dir, fingerprint)
  missing = [e for e in range(fingerprint["epochs"]) if not os.path.exists(_epoch_path(cache_dir, e))]
  if missing:
    raise DatasetError(f"The teacher-logit cache in {cache_dir} lacks epochs {missing[:5]}"
                       f"{'…' if len(missing) > 5 else ''}: run the 'teacher_views' stage (it "
                       "resumes) before the stages that read it.")
  epochs = []
  for epoch in range(fingerprint["epochs"]):
    with np.load(_epoch_path(cache_dir, epoch)) as stored:
      epochs.append(_decode(stored, num_classes))
  logits = np.stack(epochs)
  if logits.shape[1:] != (fingerprint["examples"], num_classes):
    raise DatasetError(f"The cache in {cache_dir} holds logits of shape {logits.shape[1:]}, not "
                       f"[{fingerprint['examples']}, {num_classes}]: delete it and build it again.")
  return logits
