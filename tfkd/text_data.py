r"""Text datasets: a train and a test TSV/CSV file as `Splits` of fixed-length int32 token ids.

The pieces live in their own modules: `tfkd.text_table` reads the files and
maps labels to ids, `tfkd.sentence_split` holds out whole sentences,
`tfkd.vocabulary` builds (or reloads) the vocabulary and encodes, and
`tfkd.text_augment` makes the distill stage's transfer set. This module puts
the first three together in the right order. The result is the same
`tfkd.splits.Splits` as for images, with int32 token ids [N, max_length] as
features, so every stage, the report and the exported `.tflite` (int32 ids in,
logits out: the same file runs on LiteRT and TFLite Micro) work unchanged.

A run config's `data` block reaches here through `tfkd.from_config.splits`,
which turns it into the plain arguments below.

Example:
  splits = load_text_splits(
      ("../shared/data/sst2/train.tsv", "label", "sentence"),
      ("../shared/data/sst2/dev.tsv", "label", "content"),
      class_names=("negative", "positive"), vocab_size=15000, max_length=48,
      val_size=800, val_unit="sentence", vocab_path="runs/sst2/vocab.txt")
"""

from typing import Optional, Sequence, Union

import numpy as np
from absl import logging

from tfkd.sentence_split import split_validation_by_sentence
from tfkd.splits import Splits, split_validation
from tfkd.text_table import TableSpec, label_ids, read_table
from tfkd.vocabulary import RESERVED_TOKENS, load_or_build_vocabulary, unknown_rate

VAL_UNITS = ("row", "sentence")
TableLike = Union[TableSpec, Sequence[str]]


def _table_spec(name: str, spec: TableLike) -> TableSpec:
  """`spec` as a `TableSpec`; `name` is the argument it came in, for the error."""
  # Tuples only: a dict or ConfigDict would unpack its keys, not its values.
  if not isinstance(spec, (tuple, list)) or len(spec) != 3:
    raise ValueError(f"{name}={spec!r} is not a table: pass a TableSpec or a "
                      "(path, label_column, text_column) tuple.")
  return TableSpec(*spec)


def _check_arguments(vocab_size: int, max_length: int, val_size: int, val_unit: str,
                     train_limit: int) -> None:
  """Refuses values no dataset could use, naming the argument."""
  if val_unit not in VAL_UNITS:
    raise ValueError(f"val_unit={val_unit!r} is not one of 'row' (val_size random rows) or "
                      "'sentence' (val_size whole sentences, their phrases kept out of training).")
  if vocab_size <= len(RESERVED_TOKENS):
    raise ValueError(f"vocab_size={vocab_size} leaves no room for words after the "
                      f"{len(RESERVED_TOKENS)} reserved tokens: use a few thousand.")
  if max_length < 1:
    raise ValueError(f"max_length={max_length} gives sentences no ids: use at least the length "
                      "of a typical sentence in tokens (SST-2: 48).")
  for name, value in (("val_size", val_size), ("train_limit", train_limit)):
    if value < 0:
      raise ValueError(f"{name}={value} is negative: use 0 (none / all) or a count.")


def load_text_splits(train_file: TableLike, test_file: TableLike, *, vocab_size: int,
                     max_length: int, class_names: Sequence[str] = (), lowercase: bool = True,
                     val_size: int = 0, val_unit: str = "row", seed: int = 0,
                     train_limit: int = 0, vocab_path: Optional[str] = None,
                     delimiter: str = "") -> Splits:
  """Reads a train and a test file into `Splits` of int32 token ids.

  The validation split is carved from the training file before the vocabulary
  is built, so validation is as unseen as test. The vocabulary comes from the
  training split only, and is reloaded from `vocab_path` when that file exists.

  Args:
    train_file: the training file and its label and text column names, as a
      `TableSpec` or a (path, label_column, text_column) tuple.
    test_file: the same for the test file (its columns may be named differently).
    vocab_size: at most this many tokens, the 3 reserved ones included.
    max_length: ids per sentence: longer ones are cut, shorter ones padded with 0.
    class_names: one name per class, index = label; () = from the labels.
    lowercase: lower-case text before tokenising.
    val_size: rows (or sentences) held out of training for validation; 0 = none.
    val_unit: 'row' (random rows) or 'sentence' (whole sentences and the rows
      found only inside them, see `tfkd.sentence_split`).
    seed: seed of the validation draw and the training order.
    train_limit: keep only the first N shuffled training rows; 0 = all.
    vocab_path: where the vocabulary is saved, or loaded from if it exists;
      None = built every time and not saved.
    delimiter: field separator of both files; '' = from the extension.

  Returns:
    `Splits` whose features are int32 [N, max_length].

  Raises:
    ValueError: an argument no dataset could use (the message names it).
    DatasetError: a file, column, row or label that cannot be read.

  Example:
    splits = load_text_splits(("train.tsv", "label", "sentence"), ("dev.tsv", "label", "content"),
                              vocab_size=15000, max_length=48, val_size=800,
                              vocab_path="runs/sst2/vocab.txt")
  """
  train_file, test_file = _table_spec("train_file", train_file), _table_spec("test_file", test_file)
  _check_arguments(vocab_size, max_length, val_size, val_unit, train_limit)
  train_texts, train_labels = read_table(*train_file, delimiter=delimiter)
  test_texts, test_labels = read_table(*test_file, delimiter=delimiter)
  train_y, test_y, class_names = label_ids(train_labels, test_labels, class_names)
  # The validation split is carved before the vocabulary is built, so it is as unseen as test.
  if val_unit == "sentence":
    train, val = split_validation_by_sentence(train_texts, train_y, val_size, seed, lowercase)
  else:
    train, val = split_validation(np.asarray(train_texts, dtype=object), train_y, val_size, seed)
  if train_limit:
    train = (train[0][:train_limit], train[1][:train_limit])
  vocabulary = load_or_build_vocabulary(vocab_path, train[0], vocab_size, lowercase)
  encode = lambda texts: vocabulary.encode(texts, max_length)
  splits = Splits(train=(encode(train[0]), train[1]),
                  val=None if val is None else (encode(val[0]), val[1]),
                  test=(encode(test_texts), test_y), class_names=class_names,
                  texts={"train": list(train[0]), "val": [] if val is None else list(val[0]),
                         "test": list(test_texts)})
  logging.info("Text: %d train, %d val, %d test examples, %d classes, %d tokens, max_length %d "
               "(%.1f%% of test tokens unknown).", len(splits.train[1]),
               0 if val is None else len(val[1]), len(test_y), len(class_names), len(vocabulary),
               max_length, 100 * unknown_rate(splits.test[0]))
  return splits
