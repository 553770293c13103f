"""The keras-hub teacher: the shipped all-MiniLM-L6-v2 loads offline and computes what the
published model computes; length-bucketed batches; the transfer set as the teacher's text.

No fine-tune runs here: one training step at length 16 checks the fine-tune path and its
checkpoint. The reference for the weights is a NumPy forward pass of the BERT encoder
straight from model.safetensors, for the tokenizer Hugging Face's `tokenizers` reading
tokenizer.json: both independent of keras-hub.
"""

import glob
import json
import math
import os
import time

import numpy as np
import pytest
import tensorflow as tf

import tfkd  # pylint: disable=unused-import  (Keras 2 for tfkd before anything loads Keras 3)
from tfkd import hub_fine_tune, hub_teacher
from tfkd.text_augment import augment_token_ids, augmented_texts
from tfkd.vocabulary import Vocabulary

SENTENCES = ["A gorgeous, witty café film", "a beautiful and clever movie",
             "the tax forms are due on monday"]
# 9 to 16 wordpieces each: one bucket, so one training step at length 16.
TRAIN_TEXTS = ["a gorgeous , witty and moving film about two old friends",
               "the tax forms are due on monday morning , not later"]
_erf = np.vectorize(math.erf)


def _layer_norm(x, gamma, beta, eps=1e-12):
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def _gelu(x, exact):
  if exact:  # BERT's (and all-MiniLM-L6-v2's) GELU
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))  # keras-hub's


def numpy_bert_embedding(weights, ids, exact_gelu=True):
  """sentence-transformers' embedding of one row of ids: BERT encoder, mean, L2 norm (NumPy)."""
  w = lambda name: weights[name].astype(np.float64)
  dense = lambda x, name: x @ w(name + ".weight").T + w(name + ".bias")
  x = (w("embeddings.word_embeddings.weight")[ids] + w("embeddings.position_embeddings.weight")[
      :len(ids)] + w("embeddings.token_type_embeddings.weight")[0])
  x = _layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
  heads = 12
  for i in range(6):
    p = f"encoder.layer.{i}."
    q, k, v = (dense(x, p + f"attention.self.{n}").reshape(len(ids), heads, -1).transpose(1, 0, 2)
               for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
    attention = np.exp(scores - scores.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    context = (attention @ v).transpose(1, 0, 2).reshape(len(ids), -1)
    x = _layer_norm(x + dense(context, p + "attention.output.dense"),
                    w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias"))
    h = dense(x, p + "intermediate.dense")
    h = _gelu(h, exact_gelu)
    x = _layer_norm(x + dense(h, p + "output.dense"), w(p + "output.LayerNorm.weight"),
                    w(p + "output.LayerNorm.bias"))
  pooled = x.mean(axis=0)
  return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="module")
def shipped():
  """(preset folder, tokenizer, float32 classifier) of the shipped MiniLM."""
  preset = hub_teacher.shipped_preset()
  return preset, hub_teacher.load_tokenizer(preset), hub_teacher.build_classifier(preset, 2)


def test_shipped_minilm_tokenizes_and_embeds_as_the_published_model(shipped):
  import keras  # pylint: disable=import-outside-toplevel
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  from tokenizers import Tokenizer  # pylint: disable=import-outside-toplevel
  preset, tokenizer, model = shipped
  ids, mask = hub_teacher.encode(tokenizer, SENTENCES, sequence_length=16)
  reference = Tokenizer.from_file(os.path.join(preset, "tokenizer.json"))
  reference.no_padding()
  for row, sentence in enumerate(SENTENCES):
    expected = reference.encode(sentence).ids  # [CLS] ... [SEP]; 'café' → 'cafe', not [UNK]
    np.testing.assert_array_equal(ids[row, :len(expected)], expected)
    assert mask[row].sum() == len(expected) and not ids[row, len(expected):].any()
  assert tokenizer.token_to_id("[UNK]") not in ids
  pooled_model = keras.Model(model.inputs, model.get_layer("dropout").input)
  pooled = np.asarray(pooled_model.predict_on_batch(hub_teacher.batch_inputs(ids, mask, np.arange(3))))
  embeddings = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
  weights = load_file(os.path.join(preset, "model.safetensors"))
  for row in range(len(SENTENCES)):
    row_ids = ids[row, :mask[row].sum()]
    # keras-hub's BERT uses the tanh approximation of GELU: the same computation to float32
    # precision, and within 1e-3 of the published model's exact-GELU embedding.
    np.testing.assert_allclose(embeddings[row], numpy_bert_embedding(weights, row_ids, False),
                               atol=2e-5)
    np.testing.assert_allclose(embeddings[row], numpy_bert_embedding(weights, row_ids), atol=1e-3)
  # What a sentence embedding is for: the paraphrase is nearer than the unrelated sentence.
  assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2] + 0.2


def test_one_fine_tune_step_at_length_16_checkpoints_and_is_not_repeated(shipped, tmp_path):
  preset, tokenizer, model = shipped
  ids, mask = hub_teacher.encode(tokenizer, TRAIN_TEXTS * 2, sequence_length=16)
  assert np.all((mask.sum(axis=1) > 8) & (mask.sum(axis=1) <= 16))
  labels = np.array([1, 0] * 2)
  hub_fine_tune.compile_for_fine_tune(model, learning_rate=1e-4, total_steps=1, warmup_fraction=0)
  before = model.get_layer("logits").get_weights()[0].copy()
  made_while_tracing = []

  def creator(next_creator, **kwargs):
    if tf.inside_function():
      made_while_tracing.append(kwargs.get("name"))
    return next_creator(**kwargs)

  with tf.variable_creator_scope(creator):
    seconds = hub_fine_tune.fine_tune(model, ids, mask, labels, epochs=1, batch_size=8,
                                      checkpoint_dir=str(tmp_path))
  # TensorFlow traces a step that makes variables twice (10 s more for MiniLM): none is made there.
  assert made_while_tracing == []
  assert seconds > 0 and int(model.optimizer.iterations.numpy()) == 1
  assert not np.allclose(model.get_layer("logits").get_weights()[0], before)
  state = hub_fine_tune.read_state(str(tmp_path))
  assert (state["epoch"], state["step"]) == (1, 0) and (tmp_path / state["weights"]).exists()
  # Rerun after the epoch ended: the checkpoint is loaded and no step is taken again.
  hub_fine_tune.fine_tune(model, ids, mask, labels, epochs=1, batch_size=8,
                          checkpoint_dir=str(tmp_path))
  assert int(model.optimizer.iterations.numpy()) == 1
  logits = hub_teacher.predict_logits(model, ids, mask, batch_size=4)
  assert logits.shape == (4, 2) and np.isfinite(logits).all()
  np.testing.assert_allclose(logits[:2], logits[2:], atol=1e-4)  # same texts, same logits


def test_bucketed_batches_hold_every_row_once_in_rows_of_similar_length():
  lengths = np.random.default_rng(0).integers(3, 60, 1000)
  batches = hub_fine_tune.bucketed_batches(lengths, 32, seed=1, epoch=0)
  rows = np.concatenate(batches)
  assert sorted(rows) == list(range(1000))
  assert len(batches) == hub_fine_tune.steps_per_epoch(lengths, 32)
  assert all(len(b) <= 32 and np.ptp(-(-lengths[b] // hub_teacher.WIDTH_STEP)) == 0 for b in batches)
  again = hub_fine_tune.bucketed_batches(lengths, 32, seed=1, epoch=0)
  assert all(np.array_equal(a, b) for a, b in zip(batches, again))
  other_epoch = hub_fine_tune.bucketed_batches(lengths, 32, seed=1, epoch=1)
  assert not np.array_equal(np.concatenate(other_epoch), rows)


def test_transfer_texts_are_the_student_copies_with_the_words_the_vocabulary_lacks():
  texts = ["a gorgeous , witty film", "dull and rare words here today", "ok"]
  settings = dict(mask_probability=0.3, ngram_probability=0.5, ngram_range=(1, 3), seed=1)
  full = Vocabulary.build(texts, 100)
  ids = full.encode(texts, 5)
  copies = augmented_texts(texts, ids, 3, "<mask>", **settings)
  expected = [full.decode(row) for row in augment_token_ids(ids, 3, **settings)]
  assert copies == expected and any("<mask>" in c for c in copies)
  small = Vocabulary.build(texts, 6)  # most words <unk> for the student
  small_ids = small.encode(texts, 5)
  assert augmented_texts(texts, small_ids, 3, "<mask>", **settings) == copies
  student = [small.decode(row) for row in augment_token_ids(small_ids, 3, **settings)]
  assert any("<unk>" in s for s in student)
  assert all(len(s.split()) == len(c.split()) for s, c in zip(student, copies))
  # Extra copies of the long rows (5 tokens: the first two) stay aligned with the student's.
  long = dict(settings, long_copies=2, long_min_tokens=5)
  with_long = augmented_texts(texts, ids, 3, "<mask>", **long)
  assert with_long[:9] == copies and len(with_long) == 9 + 2 * 2
  assert with_long == [full.decode(row) for row in augment_token_ids(ids, 3, **long)]


def tiny_preset(folder, words):
  """A small random BERT saved as a keras-hub preset folder: a 'local preset folder by path'."""
  import keras  # pylint: disable=import-outside-toplevel
  import keras_hub  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(words))
  keras_hub.models.BertBackbone(
      vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16,
      intermediate_dim=32, max_sequence_length=16).save_to_preset(str(folder))
  keras_hub.models.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(folder))
  return str(folder)


@pytest.mark.slow
def test_pipeline_fine_tunes_a_local_preset_caches_its_logits_once_and_distils(tmp_path):
  from configs import sst2_minilm  # pylint: disable=import-outside-toplevel
  from tests.test_text import FILLER, NEGATIVE, POSITIVE, write_sst2_like  # pylint: disable=import-outside-toplevel
  data = write_sst2_like(tmp_path / "sst2", train_rows=96, dev_rows=24)
  config = sst2_minilm.get_config()
  config.stages = ("teacher", "teacher_views", "distill")
  config.data.train_file.path, config.data.test_file.path = (os.path.join(data, f"{n}.tsv")
                                                             for n in ("train", "dev"))
  config.data.update(dict(vocab_size=30, max_length=12, val_size=16, val_unit="row"))
  config.data.transfer_set.update(dict(copies=1, long_copies=0))
  config.student.kwargs.update(dict(vocab_size=30, embedding_dim=8, filters=8))
  config.train.update(dict(epochs=1, batch_size=16))
  config.teacher.hub.update(dict(preset=tiny_preset(tmp_path / "preset", POSITIVE + NEGATIVE + FILLER),
                                 sequence_length=16, epochs=6, batch_size=16, learning_rate=3e-3,
                                 dtype="float32", dropout=0.0))
  workdir = str(tmp_path / "run")
  run = tfkd.run_pipeline(config, workdir)
  result = json.load(open(os.path.join(workdir, "teacher", "hub_teacher.json")))
  assert result["dev_accuracy"] > 0.7 and result["val_accuracy"] > 0.7  # chance: 0.5
  assert result["inference_dtype"] == "float32"
  assert not os.path.exists(os.path.join(workdir, "teacher", "checkpoint"))
  logits_files = glob.glob(os.path.join(workdir, "teacher", "logits", "*.npy"))
  assert len(logits_files) == 1 and np.load(logits_files[0]).shape == (2 * 80, 2)  # rows + copies
  assert os.path.exists(os.path.join(workdir, "distill", "model.keras"))
  assert run.teacher_view_logits().shape == (1, 160, 2)
  # A second student of another vocabulary reads the same cached file: no teacher pass.
  before = os.path.getmtime(logits_files[0])
  other = config.copy_and_resolve_references()
  other.data.vocab_size = other.student.kwargs.vocab_size = 12
  os.makedirs(tmp_path / "other")
  os.symlink(os.path.join(workdir, "teacher"), tmp_path / "other" / "teacher")
  tfkd.run_pipeline(other, str(tmp_path / "other"))
  assert glob.glob(os.path.join(workdir, "teacher", "logits", "*.npy")) == logits_files
  assert os.path.getmtime(logits_files[0]) == before
  # Logits computed in another dtype are other logits: computed anew, never the float32 file.
  bfloat16 = config.copy_and_resolve_references()
  bfloat16.teacher.hub.inference_dtype = "mixed_bfloat16"
  bfloat16.stages = ("teacher", "teacher_views")
  os.makedirs(tmp_path / "bfloat16")
  os.symlink(os.path.join(workdir, "teacher"), tmp_path / "bfloat16" / "teacher")
  tfkd.run_pipeline(bfloat16, str(tmp_path / "bfloat16"))
  both = sorted(glob.glob(os.path.join(workdir, "teacher", "logits", "*.npy")))
  assert len(both) == 2 and os.path.getmtime(logits_files[0]) == before
  new = [f for f in both if f not in logits_files][0]
  assert json.load(open(new[:-len(".npy")] + ".json"))["dtype"] == "mixed_bfloat16"
  np.testing.assert_allclose(np.load(new), np.load(logits_files[0]), atol=0.1)  # bfloat16's 8 bits
  # Long copies append rows: the cached logits of the rows before them are reused, not redone.
  longer = config.copy_and_resolve_references()
  longer.data.transfer_set.update(dict(long_copies=1, long_min_tokens=2))
  longer.stages = ("teacher", "teacher_views")
  os.makedirs(tmp_path / "longer")
  os.symlink(os.path.join(workdir, "teacher"), tmp_path / "longer" / "teacher")
  tfkd.run_pipeline(longer, str(tmp_path / "longer"))
  (extended,) = set(glob.glob(os.path.join(workdir, "teacher", "logits", "*.npy"))) - set(both)
  saved = json.load(open(extended[:-len(".npy")] + ".json"))
  assert saved["reused_rows"] == 160 and saved["rows"] > 160
  np.testing.assert_array_equal(np.load(extended)[:160], np.load(logits_files[0]))


class CountingModel:
  """Stands in for the classifier: logits from the token ids, and a count of the rows it ran."""

  def __init__(self, seconds_per_batch: float = 0.0):
    self.rows, self.seconds_per_batch = 0, seconds_per_batch

  def predict_on_batch(self, inputs):
    time.sleep(self.seconds_per_batch)
    self.rows += len(inputs["token_ids"])
    total = (inputs["token_ids"] * inputs["padding_mask"]).sum(axis=1).astype(np.float32)
    return np.stack([total, -total], axis=1)


def test_teacher_logits_resume_after_a_kill_without_redoing_saved_rows(tmp_path):
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 17, 100)
  mask = (np.arange(16)[None, :] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(1, 500, (100, 16)).astype(np.int32) * mask
  total = (ids * mask).sum(axis=1).astype(np.float32)
  expected = np.stack([total, -total], axis=1)  # CountingModel's logits, each row in place
  partial = str(tmp_path / "logits.partial.npz")

  def kill_after_60_rows(done, total):
    if done >= 60:
      raise KeyboardInterrupt  # as a SIGINT would, between two batches
  with pytest.raises(KeyboardInterrupt):
    hub_teacher.predict_logits(CountingModel(0.02), ids, mask, 8, kill_after_60_rows,
                               partial_path=partial, save_every_rows=20)
  first_seconds = hub_teacher.saved_seconds(partial, 100, 8)
  model = CountingModel(0.02)
  logits = hub_teacher.predict_logits(model, ids, mask, 8, partial_path=partial, save_every_rows=20)
  np.testing.assert_array_equal(logits, expected)
  # Saved after 24 and 48 rows (every 3 batches of 8), killed at 64: 48 rows kept, 52 redone.
  assert model.rows == 100 - 48
  # The seconds of the kept work add up across attempts: 6 batches kept, then 6 more saved.
  assert first_seconds >= 6 * 0.02
  assert hub_teacher.saved_seconds(partial, 100, 8) >= first_seconds + 6 * 0.02
  assert hub_teacher.saved_seconds(partial, 100, 16) == 0.0  # another batch size: redone, not counted
