"""The keras-hub teacher in a run: its fine-tune stage and its logits, computed once and cached.

With `teacher.kind='keras_hub'` the teacher stage fine-tunes a pretrained
BERT-family preset (`teacher.hub`; the shipped all-MiniLM-L6-v2 by default) on
the training split's raw text (`tfkd.hub_fine_tune`: length-bucketed batches,
resumable at every checkpoint) and writes to `workdir/teacher/`:
  hub_teacher.weights.h5   the fine-tuned weights (Keras 3)
  hub_teacher.json         the stage's result: dev and validation accuracy,
                           seconds of the fine-tune, the settings
The students never run it: `teacher_logits_file` computes its logits once for
every row the distill stage trains on (the training rows, then the augmented
transfer set as text, `tfkd.text_augment.augmented_texts`) into
`teacher/logits/<key>.npy`, keyed by a fingerprint of the weights file, the
texts, the sequence length and the inference dtype, and `Run.teacher_view_logits`
reads it as an offline teacher's logits (`distill.teacher_logits_path`). The
transfer set's texts do not depend on the student's vocabulary, so students of
any vocabulary sharing the teacher folder share the file; and a file holding
the first rows of a longer list (`data.transfer_set.long_copies` appends rows)
is reused for them.

Example:
  config.teacher.kind = "keras_hub"        # configs/sst2_minilm.py
  run_pipeline(config, "runs/sst2_minilm")  # teacher → teacher_views → scratch → distill → ...
"""

import glob
import hashlib
import json
import os
import shutil
import time

import numpy as np
from absl import logging

from tfkd import from_config, hub_fine_tune, hub_teacher, teacher_cache, view_cache
from tfkd.errors import ConfigError
from tflite import files

WEIGHTS = "hub_teacher.weights.h5"
RESULT = "hub_teacher.json"
MASK_TOKEN = "[MASK]"  # BERT's; the transfer set's <mask> becomes it


def result_path(run) -> str:
  return run.path("teacher", RESULT)


def _preset(run) -> str:
  with from_config.reading("teacher.hub"):
    return hub_teacher.check_preset(run.config.teacher.hub.preset)


def _classifier(run, dtype: str):
  hub = run.config.teacher.hub
  return hub_teacher.build_classifier(_preset(run), run.splits.num_classes, dtype, hub.dropout)


def _fine_tuned(run):
  """The fine-tuned teacher, built in `teacher.hub.inference_dtype` for its logits and scores."""
  model = _classifier(run, run.config.teacher.hub.inference_dtype)
  model.load_weights(run.path("teacher", WEIGHTS))
  model.compile(jit_compile=False)  # batch shapes vary: XLA would compile each
  return model


def _encode(run, tokenizer, texts):
  return hub_teacher.encode(tokenizer, texts, run.config.teacher.hub.sequence_length)


def accuracy(run, model, tokenizer, split: str) -> float:
  """The teacher's accuracy on a split's raw texts ('val' or 'test'); NaN when it is empty."""
  texts, labels = run.splits.texts[split], (run.splits.val if split == "val" else run.splits.test)
  if not texts:
    return float("nan")
  logits = hub_teacher.predict_logits(model, *_encode(run, tokenizer, texts),
                                      run.config.teacher.hub.inference_batch_size)
  return float(np.mean(np.argmax(logits, axis=-1) == labels[1]))


def stage_fine_tune(run) -> None:
  """The teacher stage for `teacher.kind='keras_hub'`: fine-tune, save, measure (skipped when done)."""
  if run.done("teacher", result_path(run)):
    return
  hub, preset = run.config.teacher.hub, _preset(run)
  tokenizer = hub_teacher.load_tokenizer(preset)
  ids, mask = _encode(run, tokenizer, run.splits.texts["train"])
  model = _classifier(run, hub.dtype)
  steps = hub_fine_tune.steps_per_epoch(mask.sum(axis=1), hub.batch_size)
  hub_fine_tune.compile_for_fine_tune(model, hub.learning_rate, hub.epochs * steps,
                                      hub.warmup_fraction, hub.weight_decay)
  logging.info("[teacher] fine-tuning %s (%d parameters, %s) on %d texts: %d epoch(s) of %d "
               "length-bucketed steps.", preset, model.count_params(), hub.dtype, len(ids),
               hub.epochs, steps)
  checkpoint_dir = run.path("teacher", "checkpoint")
  seconds = hub_fine_tune.fine_tune(model, ids, mask, run.splits.train[1], hub.epochs,
                                    hub.batch_size, checkpoint_dir, hub.checkpoint_steps,
                                    run.config.seed)
  final = run.path("teacher", WEIGHTS)
  partial = run.path("teacher", "partial_" + WEIGHTS)  # Keras wants the .weights.h5 ending
  model.save_weights(partial)
  os.replace(partial, final)
  start, model = time.time(), _fine_tuned(run)  # scored as its logits will be computed
  result = {"preset": preset, "parameters": int(model.count_params()), "epochs": hub.epochs,
            "steps_per_epoch": steps, "dtype": hub.dtype, "inference_dtype": hub.inference_dtype,
            "sequence_length": hub.sequence_length, "fine_tune_seconds": seconds,
            "dev_accuracy": accuracy(run, model, tokenizer, "test"),
            "val_accuracy": accuracy(run, model, tokenizer, "val")}
  result["evaluation_seconds"] = time.time() - start
  files.write_json(result_path(run), result)
  shutil.rmtree(checkpoint_dir, ignore_errors=True)
  logging.info("[teacher] fine-tuned in %.1f min: dev accuracy %.4f, validation %.4f.",
               seconds / 60, result["dev_accuracy"], result["val_accuracy"])


def distill_texts(run) -> list:
  """What the teacher reads for each row the distill stage trains on: training rows, then the
  transfer set (`from_config.with_transfer_set`'s rows, as text)."""
  texts = run.splits.texts["train"]
  return list(texts) + from_config.transfer_texts(run.config.data, texts, run.splits.train[0],
                                                  MASK_TOKEN)


def teacher_logits_file(run) -> str:
  """The `.npy` of the teacher's logits for `distill_texts`, computed now unless cached.

  Raises:
    ConfigError: the teacher stage has not run.
  """
  weights = run.path("teacher", WEIGHTS)
  if not os.path.exists(weights):
    raise ConfigError(f"The distill stage needs the fine-tuned teacher {weights}: run the "
                      "'teacher' stage first (list it first in config.stages).")
  texts = distill_texts(run)
  hub = run.config.teacher.hub
  fingerprint = {"weights_sha256": view_cache.file_sha256(weights), "texts_sha256": _sha256(texts),
                 "rows": len(texts), "sequence_length": hub.sequence_length,
                 "dtype": hub.inference_dtype}
  key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
  path = run.path("teacher", "logits", f"{key}.npy")
  if os.path.exists(path):
    logging.info("[teacher_views] the teacher's logits of %d texts are cached: %s", len(texts), path)
    return path
  start, tokenizer = time.time(), hub_teacher.load_tokenizer(_preset(run))
  model = _fine_tuned(run)
  # A cached file of the same teacher may hold the first rows (data.transfer_set.long_copies
  # appends rows): only the rest is computed.
  reused = _cached_first_rows(os.path.dirname(path), fingerprint, texts)
  reused_rows = 0 if reused is None else len(reused)
  if reused_rows:
    logging.info("[teacher_views] the first %d of %d texts' logits are cached: computing the "
                 "other %d.", reused_rows, len(texts), len(texts) - reused_rows)
  ids, mask = _encode(run, tokenizer, texts[reused_rows:])
  step = max(1, len(ids) // 20)

  def progress(done, total):
    if done % step < hub.inference_batch_size or done == total:
      logging.info("[teacher_views] teacher logits: %d/%d texts, %.0f s.", done, total,
                   time.time() - start)

  partial = path[:-len(".npy")] + ".partial.npz"  # a killed run resumes here
  resumed = os.path.exists(partial)
  earlier_seconds = hub_teacher.saved_seconds(partial, len(ids), hub.inference_batch_size)
  logits = hub_teacher.predict_logits(model, ids, mask, hub.inference_batch_size, progress,
                                      partial_path=partial)
  if reused_rows:
    logits = np.concatenate([reused, logits])
  teacher_cache.save_teacher_logits(path, logits)
  if os.path.exists(partial):
    os.remove(partial)
  # Earlier attempts' kept work counts: the cost of the logits, not of this attempt.
  seconds = earlier_seconds + time.time() - start
  files.write_json(path[:-len(".npy")] + ".json",
                   {**fingerprint, "seconds": seconds, "resumed": resumed,
                    "reused_rows": reused_rows, "texts_per_second": len(ids) / max(seconds, 1e-9)})
  logging.info("[teacher_views] teacher logits of %d texts in %.1f min: %s", len(ids),
               seconds / 60, path)
  return path


def _sha256(texts) -> str:
  return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def _cached_first_rows(logits_dir: str, fingerprint: dict, texts: list):
  """The logits of `texts`' first rows from the largest cached file that holds exactly those
  rows (same teacher weights, sequence length and dtype), or None."""
  best, best_rows = None, 0
  for json_path in glob.glob(os.path.join(logits_dir, "*.json")):
    saved, npy = files.read_json(json_path), json_path[:-len(".json")] + ".npy"
    rows = saved.get("rows", 0)
    same_teacher = all(saved.get(k) == fingerprint[k]
                       for k in ("weights_sha256", "sequence_length", "dtype"))
    if (same_teacher and best_rows < rows < len(texts) and os.path.exists(npy)
        and saved.get("texts_sha256") == _sha256(texts[:rows])):
      best, best_rows = npy, rows
  return np.load(best) if best else None

