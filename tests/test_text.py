"""Text case: TSV/CSV spec, vocabulary, encode CLI, transfer set, int8 student on TFLM, pipeline."""

import ast
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from ml_collections import ConfigDict
from tflite_micro.python.tflite_micro import runtime

from configs import sst2_quick
from tfkd import compress, from_config, models, pipeline, text_data, text_models
from tfkd.compress import PruneLowMagnitude
from tfkd.errors import ConfigError, DatasetError
from tfkd.run_context import Run
from tfkd.sentence_split import split_validation_by_sentence
from tfkd.text_augment import augment_token_ids, copy_rows, with_transfer_set
from tfkd.text_table import TableSpec, label_ids, read_table
from tfkd.vocabulary import (MASK_ID, PAD_ID, VOCAB_FILENAME, Vocabulary,
                             load_or_build_vocabulary)
from tflite import convert, interpreter, sparsity

POSITIVE = ("good", "great", "fun", "lovely", "brilliant", "moving")
NEGATIVE = ("bad", "dull", "awful", "boring", "weak", "tedious")
FILLER = ("the", "film", "a", "movie", "is", "plot", "actors", "story", "and", "it", "'s", ",")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sentence(label: int, rng) -> str:
  """Filler words around one to three words of the label's sentiment."""
  words = list(rng.choice(FILLER, rng.integers(2, 9)))
  for _ in range(rng.integers(1, 4)):
    words.insert(rng.integers(0, len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
  return " ".join(words)


def write_sst2_like(folder, train_rows=200, dev_rows=40, seed=0):
  """train.tsv (label, sentence) and dev.tsv (label, content), as SST-2 names them.

  dev.tsv also uses the word 'zyzzyva', which train.tsv never does.
  """
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  for name, rows, column in (("train.tsv", train_rows, "sentence"), ("dev.tsv", dev_rows, "content")):
    lines = [f"label\t{column}"]
    for i in range(rows):
      label = int(rng.integers(0, 2))
      extra = " zyzzyva" if name == "dev.tsv" and i % 2 else ""
      lines.append(f"{label}\t{sentence(label, rng).upper() if i % 5 == 0 else sentence(label, rng)}{extra}")
    with open(os.path.join(folder, name), "w") as f:
      f.write("\n".join(lines) + "\n")
  return str(folder)


def text_config(folder, **overrides):
  """The `data` block of configs/sst2_quick.py, pointed at `folder`."""
  config = sst2_quick.get_config().data
  config.train_file.path = os.path.join(folder, "train.tsv")
  config.test_file.path = os.path.join(folder, "dev.tsv")
  config.update(dict(vocab_size=40, max_length=12, val_size=20))
  config.update(overrides)
  return config


@pytest.fixture
def tsv_folder(tmp_path):
  return write_sst2_like(tmp_path / "sst2")


# --- Dataset spec ------------------------------------------------------------------------------

def test_splits_read_each_files_own_columns(tsv_folder, tmp_path):
  splits = from_config.splits(text_config(tsv_folder), workdir=str(tmp_path / "run"))
  assert splits.class_names == ["negative", "positive"]
  assert splits.train[0].shape == (180, 12) and splits.train[0].dtype == np.int32
  assert len(splits.val[1]) == 20 and splits.test[0].shape == (40, 12)
  assert splits.input_shape == (12,)
  with open(os.path.join(tsv_folder, "dev.tsv")) as f:
    dev_labels = [int(line.split("\t")[0]) for line in f.readlines()[1:]]
  np.testing.assert_array_equal(splits.test[1], dev_labels)  # dev.tsv, in file order, is test


def test_validation_split_is_deterministic(tsv_folder, tmp_path):
  a = from_config.splits(text_config(tsv_folder), workdir=str(tmp_path / "a"))
  b = from_config.splits(text_config(tsv_folder), workdir=str(tmp_path / "b"))
  c = from_config.splits(text_config(tsv_folder, seed=1), workdir=str(tmp_path / "c"))
  np.testing.assert_array_equal(a.val[0], b.val[0])
  assert not np.array_equal(a.val[0], c.val[0])


def test_sentence_validation_keeps_phrases_of_held_out_sentences_out_of_training():
  sentences = ["a great film", "the plot is dull", "what a great cast"]
  phrases = ["great film", "a great", "great", "plot is dull", "dull", "A Great"]
  texts = sentences + phrases
  labels = np.arange(len(texts))
  for seed in range(4):
    (train_x, train_y), (val_x, val_y) = split_validation_by_sentence(texts, labels, 1, seed)
    (held,) = val_x
    assert held in sentences and val_y[0] == texts.index(held)
    kept = set(sentences) - {held}
    expected = {t for t in texts if t != held and (
        t in kept or any(f" {t.lower()} " in f" {k} " for k in kept))}
    assert set(train_x) == expected
    np.testing.assert_array_equal([texts[i] for i in train_y], train_x)
  # 'great film' lies only in 'a great film': out of training exactly when that sentence is held out.
  assert "great film" in expected or held == "a great film"
  with pytest.raises(DatasetError, match="lower val_size"):
    split_validation_by_sentence(texts, labels, 3, 0)


def test_sentence_validation_from_the_config(tsv_folder, tmp_path):
  splits = from_config.splits(text_config(tsv_folder, val_unit="sentence"), str(tmp_path / "a"))
  vocabulary = Vocabulary.load(os.path.join(tmp_path, "a", VOCAB_FILENAME))
  val_texts = {vocabulary.decode(ids) for ids in splits.val[0]}
  assert len(splits.val[1]) == 20 and not val_texts & {vocabulary.decode(i) for i in splits.train[0]}
  with pytest.raises(ConfigError, match="val_unit='phrase'"):
    from_config.splits(text_config(tsv_folder, val_unit="phrase"), str(tmp_path / "b"))


def test_missing_column_names_file_column_and_columns_present(tsv_folder):
  config = text_config(tsv_folder)
  config.test_file.text_column = "sentence"  # dev.tsv calls it 'content'
  with pytest.raises(DatasetError, match=r"dev\.tsv.*no column 'sentence'.*\['label', 'content'\]"):
    from_config.splits(config)


def test_missing_file_and_bad_rows(tsv_folder, tmp_path):
  with pytest.raises(DatasetError, match="nowhere.tsv.*does not exist"):
    read_table(str(tmp_path / "nowhere.tsv"), "label", "sentence")
  bad = tmp_path / "bad.tsv"
  bad.write_text("label\tsentence\n1\tfine\n0\ttoo\tmany\n")
  with pytest.raises(DatasetError, match="line 3 has 3 fields but the header has 2"):
    read_table(str(bad), "label", "sentence")
  odd = tmp_path / "odd.txt"
  odd.write_text("label\tsentence\n1\tfine\n")
  with pytest.raises(DatasetError, match="delimiter.*pass delimiter="):
    read_table(str(odd), "label", "sentence")


def test_csv_with_quotes_and_named_labels(tmp_path):
  path = tmp_path / "reviews.csv"
  path.write_text('text,stars\n"good, really good",pos\nbad,neg\n')
  texts, labels = read_table(str(path), "stars", "text")
  assert texts == ["good, really good", "bad"]
  train, test, names = label_ids(labels, ["neg"])
  assert names == ["neg", "pos"] and train.tolist() == [1, 0] and test.tolist() == [0]
  with pytest.raises(DatasetError, match=r"Labels \['meh'\] are not among the classes"):
    label_ids(labels, ["meh"])


def test_image_augmentation_is_refused_for_text(tsv_folder):
  with pytest.raises(ConfigError, match="data.augment=False"):
    from_config.splits(text_config(tsv_folder, augment=True))


def sst2_like_tables(folder):
  """The train and test tables of `write_sst2_like`: a plain tuple and a `TableSpec`."""
  return ((os.path.join(folder, "train.tsv"), "label", "sentence"),
          TableSpec(os.path.join(folder, "dev.tsv"), label_column="label", text_column="content"))


def test_load_text_splits_takes_plain_arguments_as_the_config_does(tsv_folder, tmp_path):
  """The config route (from_config.splits) is only a translation into the plain call."""
  splits = text_data.load_text_splits(
      *sst2_like_tables(tsv_folder), class_names=("negative", "positive"), vocab_size=40,
      max_length=12, val_size=20, val_unit="row", seed=0, vocab_path=None)
  # vocab_path=None: nothing written, beside the data or anywhere else in tmp_path.
  assert os.listdir(tmp_path) == ["sst2"] and sorted(os.listdir(tmp_path / "sst2")) == [
      "dev.tsv", "train.tsv"]
  via_config = from_config.splits(text_config(tsv_folder, val_unit="row"), str(tmp_path / "run"))
  for part in ("train", "val", "test"):
    for got, want in zip(getattr(splits, part), getattr(via_config, part)):
      np.testing.assert_array_equal(got, want)
  assert splits.class_names == via_config.class_names
  # data.vocab_path, when set, is where the vocabulary goes instead of workdir/vocab.txt.
  mine = str(tmp_path / "mine" / "vocab.txt")
  from_config.splits(text_config(tsv_folder, vocab_path=mine), str(tmp_path / "other"))
  assert os.path.isfile(mine) and not os.path.exists(tmp_path / "other" / "vocab.txt")


@pytest.mark.parametrize("arguments, error, match", [
    (dict(val_unit="phrase"), ValueError, "val_unit='phrase' is not one of"),
    (dict(vocab_size=3), ValueError, "vocab_size=3 leaves no room"),
    (dict(max_length=0), ValueError, "max_length=0 gives sentences no ids"),
    (dict(val_size=-1), ValueError, "val_size=-1 is negative"),
    (dict(train_limit=-5), ValueError, "train_limit=-5 is negative"),
    (dict(val_size=200), DatasetError, "val_size=200 leaves no training data.*lower val_size"),
    (dict(class_names=("negative",)), ValueError, "class_names has 1 names"),
    (dict(train_file="train.tsv"), ValueError, "train_file='train.tsv' is not a table"),
    (dict(test_file={"path": "dev.tsv"}), ValueError, "test_file=.* is not a table"),
])
def test_load_text_splits_errors_name_the_argument(tsv_folder, arguments, error, match):
  train_file, test_file = sst2_like_tables(tsv_folder)
  call = dict(train_file=train_file, test_file=test_file, vocab_size=40, max_length=12, val_size=20)
  call.update(arguments)
  with pytest.raises(error, match=match) as raised:
    text_data.load_text_splits(**call)
  assert "data." not in str(raised.value)  # an argument of the call, not a config key


TEXT_MODULES = ("splits", "text_table", "vocabulary", "sentence_split", "text_augment", "text_data",
                "encode_text")


def tfkd_imports(module):
  """The `tfkd.*` modules that tfkd/<module>.py imports (by its import statements)."""
  path = os.path.join(REPO, "tfkd", f"{module}.py")
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module == "tfkd":
      names.update(f"tfkd.{alias.name}" for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
  return {name for name in names if name.startswith("tfkd.")}


@pytest.mark.parametrize("module", TEXT_MODULES)
def test_text_modules_import_nothing_above_them(module):
  """No data <-> text circle: the text modules never import data (or anything above them)."""
  allowed = {"tfkd.errors"} | {f"tfkd.{m}" for m in TEXT_MODULES}
  assert tfkd_imports(module) <= allowed
  assert not os.path.exists(os.path.join(REPO, "tfkd", "text.py"))


# --- Vocabulary and encoding -------------------------------------------------------------------

def test_vocabulary_from_train_only_saved_and_reused(tsv_folder, tmp_path):
  workdir = str(tmp_path / "run")
  config = text_config(tsv_folder, vocab_size=100)
  splits = from_config.splits(config, workdir)
  vocabulary = Vocabulary.load(os.path.join(workdir, "vocab.txt"))
  assert vocabulary.tokens[:3] == ["<pad>", "<unk>", "<mask>"]
  assert "zyzzyva" not in vocabulary.tokens          # only dev.tsv has it
  assert "good" in vocabulary.tokens and "GOOD" not in vocabulary.tokens  # lower-cased
  # A changed training file does not change the ids of a workdir that has its vocabulary.
  with open(config.train_file.path, "w") as f:
    f.write("label\tsentence\n" + "".join(f"{i % 2}\tnew words {i} film\n" for i in range(100)))
  again = from_config.splits(config, workdir)
  assert Vocabulary.load(os.path.join(workdir, "vocab.txt")) == vocabulary
  np.testing.assert_array_equal(again.test[0], splits.test[0])
  # A fresh workdir rebuilds from the new file: the reuse above was the file's doing.
  rebuilt = from_config.splits(config, str(tmp_path / "fresh"))
  assert not np.array_equal(rebuilt.test[0], again.test[0])


def test_vocabulary_ranks_by_count_then_alphabetically():
  vocabulary = Vocabulary.build(["b a a d", "c B A", "<mask> d"], size=10)
  assert vocabulary.tokens == ["<pad>", "<unk>", "<mask>", "a", "b", "d", "c"]


def test_vocabulary_size_is_capped_and_larger_saved_vocabulary_refused(tsv_folder, tmp_path):
  texts = read_table(os.path.join(tsv_folder, "train.tsv"), "label", "sentence")[0]
  assert len(Vocabulary.build(texts, size=10)) == 10
  path = str(tmp_path / "vocab.txt")
  Vocabulary.build(texts, size=30).save(path)
  with pytest.raises(ValueError, match="more than vocab_size=10"):
    load_or_build_vocabulary(path, texts, vocab_size=10)


def test_encode_pads_truncates_and_marks_unknown_tokens():
  vocabulary = Vocabulary(["<pad>", "<unk>", "<mask>", "film", "good"])
  ids = vocabulary.encode(["Good film", "good zyzzyva film good film"], max_length=4)
  np.testing.assert_array_equal(ids, [[4, 3, 0, 0], [4, 1, 3, 4]])
  assert ids.dtype == np.int32
  assert vocabulary.decode(ids[0]) == "good film"


def test_encode_command_line(tmp_path):
  vocab = str(tmp_path / "vocab.txt")
  Vocabulary(["<pad>", "<unk>", "<mask>", "film", "good"]).save(vocab)
  out = str(tmp_path / "ids.npy")
  result = subprocess.run(
      [sys.executable, "-m", "tfkd.encode_text", f"--vocab={vocab}", "--max_length=5",
       f"--output={out}", "a good film", "Film"],
      cwd=REPO, capture_output=True, text=True, check=True)
  assert result.stdout.split("\n")[:2] == ["1 4 3 0 0", "3 0 0 0 0"]
  np.testing.assert_array_equal(np.load(out), [[1, 4, 3, 0, 0], [3, 0, 0, 0, 0]])
  # A missing vocabulary's one-line error: tests/test_bad_inputs.py.


# --- Transfer set ------------------------------------------------------------------------------

def sample_ids(rows=400, max_length=20, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, max_length + 1, rows)
  ids = rng.integers(3, 50, (rows, max_length)).astype(np.int32)
  ids[np.arange(max_length)[None, :] >= lengths[:, None]] = PAD_ID
  return ids


def test_augmentation_is_deterministic_and_seeded():
  ids = sample_ids()
  a = augment_token_ids(ids, copies=2, seed=3)
  b = augment_token_ids(ids, copies=2, seed=3)
  c = augment_token_ids(ids, copies=2, seed=4)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (800, 20) and a.dtype == np.int32
  assert not np.array_equal(a, c)


def test_masking_replaces_tokens_at_the_configured_rate():
  ids = sample_ids()
  real = ids != PAD_ID
  out = augment_token_ids(ids, copies=1, mask_probability=0.3, ngram_probability=0.0)
  assert np.all(out[~real] == PAD_ID)                            # padding stays padding
  masked = out == MASK_ID
  assert np.all(out[real & ~masked] == ids[real & ~masked])      # other tokens unchanged
  assert masked[real].mean() == pytest.approx(0.3, abs=0.03)
  np.testing.assert_array_equal(
      augment_token_ids(ids, mask_probability=0.0, ngram_probability=0.0), ids)


def test_ngram_sampling_keeps_a_contiguous_window():
  ids = sample_ids()
  out = augment_token_ids(ids, copies=1, mask_probability=0.0, ngram_probability=1.0,
                          ngram_range=(2, 4))
  for source, window in zip(ids, out):
    length, kept = int((source != 0).sum()), window[window != 0]
    assert min(2, length) <= len(kept) <= min(4, length)
    assert np.all(window[len(kept):] == 0)
    starts = [s for s in range(length - len(kept) + 1)
              if np.array_equal(source[s:s + len(kept)], kept)]
    assert starts, (source, window)


def test_transfer_set_is_labelled_minus_one():
  ids, labels = sample_ids(rows=50), np.arange(50, dtype=np.int32) % 2
  settings = dict(copies=3, mask_probability=0.1, ngram_probability=0.25, ngram_range=(1, 5),
                  seed=0)
  x, y = with_transfer_set(ids, labels, **settings)
  assert x.shape == (200, 20) and np.all(y[50:] == -1)
  np.testing.assert_array_equal(x[:50], ids)
  np.testing.assert_array_equal(y[:50], labels)
  with pytest.raises(ValueError, match="not a probability"):
    augment_token_ids(ids, mask_probability=1.5)
  with pytest.raises(ValueError, match="copies=0 for non-text"):
    with_transfer_set(np.zeros((4, 8, 8, 3), np.uint8), labels[:4], **settings)
  x, y = with_transfer_set(np.zeros((4, 8, 8, 3), np.uint8), labels[:4], copies=0)
  assert x.shape == (4, 8, 8, 3) and len(y) == 4  # copies=0 adds nothing, to any data


def test_long_copies_add_copies_of_the_long_sentences_after_the_others():
  ids, labels = sample_ids(rows=50), np.arange(50, dtype=np.int32) % 2
  lengths = (ids != PAD_ID).sum(axis=1)
  long_rows = np.flatnonzero(lengths >= 12)
  assert 0 < len(long_rows) < 50
  plain = dict(mask_probability=0.0, ngram_probability=0.0)
  x, y = with_transfer_set(ids, labels, copies=1, long_copies=2, long_min_tokens=12, **plain)
  assert len(x) == 50 + 50 + 2 * len(long_rows) and np.all(y[50:] == -1)
  np.testing.assert_array_equal(x[100:], np.concatenate([ids[long_rows]] * 2))
  np.testing.assert_array_equal(copy_rows(lengths, 1, 2, 12)[50:], np.tile(long_rows, 2))
  # The ordinary copies are the same with or without long ones: their cached logits stay valid.
  augmented = augment_token_ids(ids, 2, seed=5)
  np.testing.assert_array_equal(
      augment_token_ids(ids, 2, seed=5, long_copies=3, long_min_tokens=12)[:100], augmented)
  only_long, _ = with_transfer_set(ids, labels, copies=0, long_copies=1, long_min_tokens=12)
  assert len(only_long) == 50 + len(long_rows)


@pytest.mark.parametrize("arguments, match", [
    (dict(copies=-1), "copies=-1 is not a whole number"),
    (dict(copies=1, long_copies=-2), "long_copies=-2 is not a whole number"),
    (dict(copies=1.5), "copies=1.5 is not a whole number"),
    (dict(copies=2, mask_probability=1.5), "mask_probability=1.5 is not a probability"),
    (dict(copies=2, ngram_probability=-0.1), "ngram_probability=-0.1 is not a probability"),
    (dict(copies=2, ngram_range=(3, 1)), r"ngram_range=\(3, 1\) must be \(low, high\)"),
])
def test_transfer_set_errors_name_the_argument(arguments, match):
  ids, labels = sample_ids(rows=8), np.zeros(8, np.int32)
  with pytest.raises(ValueError, match=match) as raised:
    with_transfer_set(ids, labels, **arguments)
  assert "data." not in str(raised.value)  # an argument of the call, not a config key


# --- Models and TFLite -------------------------------------------------------------------------

MICRO_OPS = {"GATHER", "EXPAND_DIMS", "RESHAPE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD",
             "REDUCE_MAX", "MEAN", "MAX_POOL_2D", "CONCATENATION", "FULLY_CONNECTED", "SQUEEZE"}


def tflite_ops(model_bytes):
  lite = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True)
  return {op["op_name"] for op in lite._get_ops_details()}  # pylint: disable=protected-access


@pytest.mark.parametrize("config_name", ["sst2_full", "sst2_minilm"])
def test_student_int8_fits_1mb_and_runs_on_tflite_micro(config_name):
  """A full-size SST-2 student (Kim's CNN; the dilated one) in int8: size, ops, TFLM = LiteRT."""
  config = importlib.import_module(f"configs.{config_name}").get_config()
  tf_keras.utils.set_random_seed(0)
  student = models.build_model(config.student.model, 2, (config.data.max_length,),
                               **config.student.kwargs)
  ids = sample_ids(rows=64, max_length=config.data.max_length)
  ids[ids != 0] = np.random.default_rng(1).integers(3, config.data.vocab_size, (ids != 0).sum())
  model_bytes = convert.convert(student, "int8", ids[:32])
  assert len(model_bytes) <= 1_000_000
  assert tflite_ops(model_bytes) <= MICRO_OPS
  lite = Interpreter(model_content=model_bytes)
  lite.allocate_tensors()
  assert lite.get_input_details()[0]["dtype"] == np.int32
  assert lite.get_output_details()[0]["dtype"] == np.int8
  # LiteRT's reference kernels round as TFLM's do; its default (XNNPACK) ones may be 1 LSB off.
  reference = Interpreter(model_content=model_bytes,
                          experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
  expected = interpreter.predict(reference, ids[32:], dequantize=False)
  default = interpreter.predict(model_bytes, ids[32:], dequantize=False)
  assert np.abs(default.astype(int) - expected).max() <= 1
  micro = runtime.Interpreter.from_bytes(model_bytes, arena_size=64 * 1024)
  for row, want in zip(ids[32:], expected):
    micro.set_input(row[None], 0)
    micro.invoke()
    np.testing.assert_array_equal(micro.get_output(0)[0], want)
  # The int8 model follows its float model.
  float_logits = student.predict(ids[32:], verbose=0)
  int8_logits = interpreter.predict(model_bytes, ids[32:])
  assert np.abs(float_logits - int8_logits).max() < 0.1 * np.abs(float_logits).max() + 0.05


@pytest.mark.parametrize("name, kwargs", [
    ("text_bilstm", dict(embedding_dim=8, units=8, hidden=8)),
    ("text_transformer", dict(embedding_dim=8, layers_count=1, heads=2, ffn_dim=16)),
    ("text_cnn", dict(embedding_dim=8, filters=4, kernel_sizes=(2, 3))),
    ("text_cnn", dict(embedding_dim=8, filters=4, kernel_sizes=(2, 3), hidden=6)),
    ("text_dcnn", dict(embedding_dim=8, filters=4, dilations=(1, 2))),
    ("text_ensemble", dict(members=("text_bilstm", "text_cnn"), member_kwargs=(
        dict(embedding_dim=8, units=4, hidden=4), dict(embedding_dim=8, filters=4, kernel_sizes=(2,))))),
])
def test_text_models_save_load_and_convert_to_float_tflite(name, kwargs, tmp_path):
  model = models.build_model(name, 3, (10,), normalization=None, vocab_size=30, **kwargs)
  ids = sample_ids(rows=8, max_length=10) % 30
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = tf_keras.models.load_model(path)
  np.testing.assert_allclose(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0), atol=1e-5)
  float_logits = interpreter.predict(convert.convert(model, "float32"), ids)
  np.testing.assert_allclose(float_logits, model.predict(ids, verbose=0), atol=1e-4)
  if name != "text_ensemble":  # the ensemble is a logits-only teacher
    assert model.get_layer("features") is not None


def test_text_models_need_vocab_size_and_token_ids():
  # tfkd.text_models raises ValueError naming the argument (from_config adds the config block).
  with pytest.raises(ValueError, match="needs vocab_size"):
    models.build_model("text_cnn", 2, (12,))
  with pytest.raises(ValueError, match=r"token ids, input_shape=\(max_length,\)"):
    models.build_model("text_cnn", 2, (32, 32, 3), vocab_size=10)


@pytest.mark.parametrize("padding", ["same", "valid", "causal"])
def test_dilated_conv1d_equals_keras_conv1d_and_converts_to_one_conv(padding):
  values = tf.constant(np.random.default_rng(0).normal(size=(3, 11, 4)), tf.float32)
  ours = text_models.DilatedConv1D(5, 3, dilation_rate=2, padding=padding, activation="relu")
  keras_conv = tf_keras.layers.Conv1D(5, 3, dilation_rate=2, padding=padding, activation="relu")
  ours.build(values.shape)
  keras_conv.build(values.shape)
  keras_conv.set_weights(ours.get_weights())
  for training in (False, True):  # inference runs a dilated conv2d, training Conv1D itself
    gradients = []
    for layer in (ours, keras_conv):
      with tf.GradientTape() as tape:
        tape.watch(values)
        outputs = layer(values, training=training)
        loss = tf.reduce_sum(outputs * tf.range(outputs.shape[1], dtype=tf.float32)[:, None])
      gradients.append(tape.gradient(loss, [values] + layer.trainable_weights))
      np.testing.assert_allclose(outputs, keras_conv(values), atol=1e-5)
    for ours_gradient, keras_gradient in zip(*gradients):
      np.testing.assert_allclose(ours_gradient, keras_gradient, atol=1e-4)
  # Keras' dilation converts to SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, which TFLM computes
  # unlike LiteRT in int8; this layer's is CONV_2D's own dilation factor.
  inputs = tf_keras.Input((11, 4))
  ops = tflite_ops(convert.convert(tf_keras.Model(inputs, ours(inputs)), "float32"))
  assert "CONV_2D" in ops and not ops & {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}


def test_dilated_student_is_pruned_and_its_sparsity_reaches_the_int8_file():
  student = models.build_model("text_dcnn", 2, (12,), vocab_size=40, embedding_dim=8, filters=8)
  ids = sample_ids(rows=64, max_length=12) % 40
  labels = np.random.default_rng(0).integers(0, 2, 64)
  pruned = compress.prune(student, compress.pruning_schedule(0.5, total_steps=8, frequency=1))
  wrapped = {layer.layer.name for layer in pruned.layers if isinstance(layer, PruneLowMagnitude)}
  assert {"conv1_d1", "conv2_d2", "conv3_d4"} <= wrapped
  pruned.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  pruned.fit(ids, labels, batch_size=8, epochs=1, callbacks=compress.pruning_callbacks(),
             verbose=0)
  stripped = compress.strip_pruning(pruned)
  for name in ("conv1_d1", "conv2_d2", "conv3_d4"):
    assert np.mean(stripped.get_layer(name).get_weights()[0] == 0) == pytest.approx(0.5, abs=0.02)
  kernels = sparsity.tflite_kernels(convert.convert(stripped, "int8", ids), ("CONV_2D",))
  assert len(kernels) == 3 and all(np.mean(k.values == 0) >= 0.48 for k in kernels)


def test_masked_pooling_ignores_padding():
  values = np.array([[[1.0], [5.0], [-3.0]]], np.float32)
  mask = np.array([[[1.0], [0.0], [1.0]]], np.float32)
  assert text_models.MaskedMaxPooling()([values, mask]).numpy().tolist() == [[1.0]]
  assert text_models.MaskedMeanPooling()([values, mask]).numpy().tolist() == [[-1.0]]


# --- End to end --------------------------------------------------------------------------------

@pytest.mark.slow
def test_pipeline_end_to_end_on_a_tiny_tsv(tmp_path):
  folder = write_sst2_like(tmp_path / "sst2", train_rows=300, dev_rows=40)
  config = sst2_quick.get_config()
  config.data = text_config(folder, vocab_size=40, max_length=12, val_size=40)
  config.teacher.model = "text_bilstm"
  config.teacher.kwargs = ConfigDict(dict(vocab_size=40, embedding_dim=16, units=8, hidden=8))
  config.student.kwargs = ConfigDict(dict(vocab_size=40, embedding_dim=8, filters=8,
                                          kernel_sizes=(2, 3)))
  config.teacher.epochs = 1
  config.train.epochs = 1
  config.train.batch_size = 32
  config.distill.check_teacher = False  # a 1-epoch teacher is near chance: the pipeline is under test
  config.export.representative_size = 50
  config.report.latency_runs = 5
  config.report.latency_spread_s = 0.0
  config.report.warmup_runs = 1
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)
  assert os.path.exists(os.path.join(workdir, "vocab.txt"))
  with open(os.path.join(workdir, "report.md")) as f:
    report = f.read()
  assert "distilled student, int8 TFLite" in report and "teacher (Keras float)" in report
  with open(os.path.join(workdir, "report.json")) as f:
    rows = {r["label"]: r for r in json.load(f)["rows"]}
  assert rows["distilled student, int8 TFLite"]["file_bytes"] < 20_000
  assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows.values())
  # Text reports carry the per-class metrics too, named by data.class_names.
  assert "| true \\ predicted | negative | positive |" in report
  assert all(sum(r["metrics"]["per_class"]["support"]) == 40 for r in rows.values())
  # The distill stage trained on train + transfer set with as many batches as scratch did.
  # The stream is endless; fit takes steps_per_epoch batches of it per epoch.
  run = Run(config, workdir)
  train, _ = run.datasets(32, "distill", distillation=True)
  labels = np.concatenate([y.numpy() for _, y in train.take(run.steps_per_epoch(32))])
  assert len(labels) == run.steps_per_epoch(32) * 32 and (labels == -1).any()
  assert run.steps_per_epoch(32) == len(run.splits.train[1]) // 32   # the scratch stage's count


def test_text_ensemble_averages_its_members_and_refuses_unknown_members():
  model = models.build_model("text_ensemble", 2, (6,), vocab_size=20, member_kwargs=(
      dict(embedding_dim=4, units=4, hidden=4), dict(embedding_dim=4, filters=4, kernel_sizes=(2,))))
  ids = sample_ids(rows=4, max_length=6) % 20
  members = [l for l in model.layers if l.name.startswith("member")]
  expected = np.mean([m.predict(ids, verbose=0) for m in members], axis=0)
  np.testing.assert_allclose(model.predict(ids, verbose=0), expected, atol=1e-6)
  with pytest.raises(ValueError, match="text_lstm"):
    models.build_model("text_ensemble", 2, (6,), vocab_size=20, members=("text_lstm",))
