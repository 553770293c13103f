r"""Text datasets: TSV/CSV files, a vocabulary, token ids, and an augmented transfer set.

A text dataset is two delimited files with a header (train and test), each with
a label column and a text column named by the config, per file (SST-2's
train.tsv calls the text `sentence`, its dev.tsv `content`). They end as the
same `tfkd.data.Splits` as images, with int32 token-id arrays of fixed length
`max_length` as features, so every stage, the report and the exported
`.tflite` (int32 ids in, logits out: the same file runs on LiteRT and TFLite
Micro) work unchanged.

Tokenisation is deliberately simple: optional lower-casing, then whitespace
splitting (SST-2 comes tokenised already). The vocabulary is built from the
training split only, most frequent tokens first, and saved as `vocab.txt`
(one token per line, line number = id) in the workdir; a run that finds the
file loads it instead of rebuilding, so training, evaluation and inference
use identical ids. Ids 0, 1 and 2 are reserved for padding, unknown tokens and
the mask token of the transfer set.

The transfer set (Tang et al. 2019, "Distilling task-specific knowledge from
BERT into simple neural networks") is made of augmented copies of training
sentences, labelled -1 so the `Distiller` trains on them with the teacher's
soft targets alone: each token is replaced by `<mask>` with probability
`mask_probability`, then with probability `ngram_probability` only a random
n-gram (n uniform in `ngram_range`) of the sentence is kept. (The paper's
part-of-speech-guided word swaps are left out: they need a tagger.)

Example:
  splits = load_text_splits(config.data, workdir="runs/sst2")   # writes runs/sst2/vocab.txt
  vocabulary = Vocabulary.load("runs/sst2/vocab.txt")
  ids = vocabulary.encode(["a gorgeous , witty film"], max_length=48)   # int32 [1, 48]

Command line (ids for `tflite.evaluate` or a device):
  python -m tfkd.text encode --vocab=runs/sst2/vocab.txt --max_length=48 "a gorgeous film"
"""

import argparse
import collections
import csv
import os
import sys
from typing import Iterable, List, Optional, Sequence

import numpy as np
from absl import logging

from tfkd.errors import ConfigError, DatasetError

PAD, UNK, MASK = "<pad>", "<unk>", "<mask>"
RESERVED_TOKENS = (PAD, UNK, MASK)
PAD_ID, UNK_ID, MASK_ID = 0, 1, 2
VOCAB_FILENAME = "vocab.txt"


# --- Reading delimited files -------------------------------------------------------------------

def _delimiter(path: str, delimiter: str = "") -> str:
  if delimiter:
    return delimiter
  if path.lower().endswith((".tsv", ".tab")):
    return "\t"
  if path.lower().endswith(".csv"):
    return ","
  raise DatasetError(f"Cannot tell the delimiter of {path!r} from its extension: name it .tsv "
                     "or .csv, or set data.delimiter (e.g. '\\t').")


def read_table(path: str, label_column: str, text_column: str, delimiter: str = ""):
  """Reads the label and text columns of a TSV/CSV file with a header row.

  TSV files are read without quote handling (text may contain quote marks, as
  SST-2's does); CSV files follow the usual CSV quoting rules.

  Args:
    path: the file.
    label_column: header name of the label column.
    text_column: header name of the text column.
    delimiter: field separator; '' infers it from the extension (.tsv or .csv).

  Returns:
    (texts, labels): two lists of strings, in file order.

  Raises:
    DatasetError: the file is missing or empty, a column is missing (the
      message lists the columns present) or a row has the wrong number of fields.

  Example:
    texts, labels = read_table("../shared/data/sst2/dev.tsv", "label", "content")
  """
  if not os.path.isfile(path):
    raise DatasetError(f"Text dataset file {path!r} does not exist: set data.train_file.path / "
                       "data.test_file.path to a TSV or CSV file with a header row.")
  sep = _delimiter(path, delimiter)
  with open(path, newline="", encoding="utf-8") as f:
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    rows = csv.reader(f, delimiter=sep, quoting=quoting)
    header = next(rows, None)
    if not header:
      raise DatasetError(f"Text dataset file {path!r} is empty: it needs a header row naming "
                         f"its columns (e.g. {label_column!r} and {text_column!r}) and data rows.")
    header = [h.strip() for h in header]
    missing = [c for c in (label_column, text_column) if c not in header]
    if missing:
      raise DatasetError(
          f"Text dataset file {path!r} has no column {' or '.join(map(repr, missing))}; its "
          f"columns are {header}. Set data.train_file / data.test_file label_column and "
          "text_column to the names this file uses.")
    label_index, text_index = header.index(label_column), header.index(text_column)
    texts, labels = [], []
    for line, row in enumerate(rows, start=2):
      if not row:
        continue
      if len(row) != len(header):
        raise DatasetError(
            f"{path!r} line {line} has {len(row)} fields but the header has {len(header)}: "
            f"fix the row (a stray {'tab' if sep == chr(9) else repr(sep)} in the text?).")
      labels.append(row[label_index].strip())
      texts.append(row[text_index])
  if not texts:
    raise DatasetError(f"Text dataset file {path!r} has a header but no rows: add examples.")
  return texts, labels


def label_ids(train_labels: Sequence[str], test_labels: Sequence[str],
              class_names: Sequence[str] = ()):
  """Maps label strings to class indices.

  Integer labels (SST-2's 0/1) are their own index; other labels (e.g. 'pos',
  'neg') are indexed in the order of `class_names`, or sorted if none are given.

  Returns:
    (train_ids, test_ids, class_names): int32 arrays and the list of class names.
  """
  everything = list(train_labels) + list(test_labels)
  if all(l.lstrip("-").isdigit() for l in everything):
    train, test = (np.asarray([int(l) for l in ls], np.int32) for ls in (train_labels, test_labels))
    if min(everything, key=int).startswith("-"):
      raise DatasetError(f"Negative label {min(everything, key=int)} in the text dataset: labels "
                         "must be 0..num_classes-1 (or names).")
    count = int(max(train.max(), test.max())) + 1
    names = list(class_names) or [str(i) for i in range(count)]
    if len(names) < count:
      raise ConfigError(f"data.class_names has {len(names)} names but labels go up to "
                        f"{count - 1}: give one name per class.")
    return train, test, names
  names = list(class_names) or sorted(set(train_labels))
  index = {name: i for i, name in enumerate(names)}
  unknown = sorted(set(everything) - set(index))
  if unknown:
    raise DatasetError(f"Labels {unknown[:10]} are not among the classes {names}: fix the "
                       "labels or list every class in data.class_names.")
  return (np.asarray([index[l] for l in train_labels], np.int32),
          np.asarray([index[l] for l in test_labels], np.int32), names)


# --- Tokens and vocabulary ---------------------------------------------------------------------

def tokenize(text: str, lowercase: bool = True) -> List[str]:
  """Splits text on whitespace, lower-cased first unless `lowercase` is False.

  Example:
    tokenize("A Gorgeous , witty film")  # ['a', 'gorgeous', ',', 'witty', 'film']
  """
  return (text.lower() if lowercase else text).split()


class Vocabulary:
  """Tokens ↔ ids. Ids 0, 1, 2 are `<pad>`, `<unk>` and `<mask>`.

  Args:
    tokens: every token, index = id, starting with `RESERVED_TOKENS`.
    lowercase: whether `encode` lower-cases text first (must match the build).

  Example:
    vocabulary = Vocabulary.build(train_texts, size=15000)
    vocabulary.save("runs/sst2/vocab.txt")
    ids = Vocabulary.load("runs/sst2/vocab.txt").encode(["a witty film"], max_length=48)
  """

  def __init__(self, tokens: Sequence[str], lowercase: bool = True):
    if tuple(tokens[:len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
      raise DatasetError(f"A vocabulary must start with {list(RESERVED_TOKENS)}, this one starts "
                         f"with {list(tokens[:3])}: rebuild it (delete the vocab file).")
    self.tokens = list(tokens)
    self.lowercase = lowercase
    self._ids = {t: i for i, t in enumerate(self.tokens)}

  def __len__(self) -> int:
    return len(self.tokens)

  def __eq__(self, other) -> bool:
    return isinstance(other, Vocabulary) and self.tokens == other.tokens

  @classmethod
  def build(cls, texts: Iterable[str], size: int, lowercase: bool = True) -> "Vocabulary":
    """The `size - 3` most frequent tokens of `texts` after the reserved ones.

    Ties are broken alphabetically, so the same texts always give the same ids.

    Args:
      texts: training sentences (never evaluation ones).
      size: at most this many tokens, reserved ones included.
      lowercase: lower-case before counting.
    """
    if size <= len(RESERVED_TOKENS):
      raise ConfigError(f"data.vocab_size={size} leaves no room for words after the "
                        f"{len(RESERVED_TOKENS)} reserved tokens: use a few thousand.")
    counts = collections.Counter(t for text in texts for t in tokenize(text, lowercase))
    for token in RESERVED_TOKENS:
      counts.pop(token, None)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    words = [token for token, _ in ranked[:size - len(RESERVED_TOKENS)]]
    return cls(list(RESERVED_TOKENS) + words, lowercase)

  def save(self, path: str) -> None:
    """Writes one token per line (atomically)."""
    from tfkd.training import write_atomic  # pylint: disable=import-outside-toplevel
    write_atomic(path, "".join(t + "\n" for t in self.tokens))

  @classmethod
  def load(cls, path: str, lowercase: bool = True) -> "Vocabulary":
    """Reads a file written by `save`."""
    if not os.path.isfile(path):
      raise DatasetError(f"Vocabulary file {path!r} does not exist: pass the vocab.txt that a "
                         "training run wrote in its workdir.")
    with open(path, encoding="utf-8") as f:
      return cls([line.rstrip("\n") for line in f], lowercase)

  def encode(self, texts: Iterable[str], max_length: int) -> np.ndarray:
    """Token ids of each text, truncated or padded (with 0) at the end to `max_length`.

    Returns:
      int32 array [len(texts), max_length]; unknown tokens are `UNK_ID`.
    """
    texts = list(texts)
    ids = np.full((len(texts), max_length), PAD_ID, np.int32)
    for row, text in enumerate(texts):
      tokens = tokenize(text, self.lowercase)[:max_length]
      ids[row, :len(tokens)] = [self._ids.get(t, UNK_ID) for t in tokens]
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    """The tokens of one row of ids, padding dropped (for reading augmented examples)."""
    return " ".join(self.tokens[i] for i in ids if i != PAD_ID)


def load_or_build_vocabulary(path: Optional[str], train_texts: Sequence[str], size: int,
                             lowercase: bool = True) -> Vocabulary:
  """Loads the vocabulary at `path` if it exists, else builds it from `train_texts` and saves it.

  Loading rather than rebuilding keeps ids identical across reruns, evaluation
  and inference, even if the training file or the config changed since.

  Args:
    path: vocab file (usually `workdir/vocab.txt`); None builds without saving.
    train_texts: the training split's texts.
    size: vocabulary size when building.
    lowercase: lower-case text before looking tokens up.
  """
  if path and os.path.isfile(path):
    vocabulary = Vocabulary.load(path, lowercase)
    logging.info("Loaded the %d-token vocabulary %s.", len(vocabulary), path)
    if len(vocabulary) > size:
      raise ConfigError(f"The vocabulary {path!r} has {len(vocabulary)} tokens, more than "
                        f"data.vocab_size={size} the models are built for: raise data.vocab_size "
                        "or use a new workdir.")
    return vocabulary
  vocabulary = Vocabulary.build(train_texts, size, lowercase)
  if path:
    vocabulary.save(path)
    logging.info("Built a %d-token vocabulary from %d training texts: %s.", len(vocabulary),
                 len(train_texts), path)
  return vocabulary


# --- The dataset spec --------------------------------------------------------------------------

def vocabulary_path(config, workdir: Optional[str]) -> Optional[str]:
  """`config.vocab_path` if set, else `workdir/vocab.txt`, else None (not saved)."""
  if config.get("vocab_path"):
    return config.vocab_path
  return os.path.join(workdir, VOCAB_FILENAME) if workdir else None


def split_validation_by_sentence(texts: Sequence[str], labels: np.ndarray, val_size: int,
                                 seed: int, lowercase: bool = True):
  """Holds out whole sentences, and every training row found only inside them.

  SST-2's training file has a row for every phrase of each sentence's parse
  tree. Random rows as validation sit inside training sentences, so they read
  ~93% where unseen dev sentences read ~83%, and rank nothing. Here a
  *sentence* is a row that is not a contiguous run of tokens of a longer row;
  `val_size` of them (a seeded draw) become the validation split, and a row
  leaves training when every sentence holding it is held out. Rows also found
  in a training sentence stay, as dev sentences share phrases with training.

  Args:
    texts: training rows.
    labels: their class ids.
    val_size: sentences to hold out (0 = no validation split).
    seed: seed of the draw (and of the training rows' order).
    lowercase: whether tokens are compared lower-cased (as the vocabulary does).

  Returns:
    ((train_texts, train_labels), (val_texts, val_labels) or None), like
    `tfkd.data.split_validation`.

  Example:
    train, val = split_validation_by_sentence(texts, labels, val_size=800, seed=0)
  """
  rng = np.random.default_rng(seed)
  texts, labels = np.asarray(texts, dtype=object), np.asarray(labels)
  if not val_size:
    order = rng.permutation(len(labels))
    return (texts[order], labels[order]), None
  tokens = [tuple(tokenize(t, lowercase)) for t in texts]
  rows = set(tokens)
  holders = {}  # row tokens -> indices (into `sentences`) of the sentences holding them
  sentences = []
  for row in sorted(range(len(tokens)), key=lambda i: -len(tokens[i])):
    if tokens[row] in holders:
      continue
    n = len(tokens[row])
    runs = {tokens[row][a:b] for a in range(n) for b in range(a + 1, n + 1)} | {tokens[row]}
    for run in runs & rows:
      holders.setdefault(run, []).append(len(sentences))
    sentences.append(row)
  if val_size >= len(sentences):
    raise DatasetError(f"val_size={val_size} holds out every sentence ({len(sentences)} rows are "
                       "not part of a longer row): lower data.val_size.")
  held = rng.permutation(len(sentences))[:val_size]
  held_set = set(held.tolist())
  val_rows = np.asarray([sentences[k] for k in held])
  train_rows = np.asarray([i for i in rng.permutation(len(tokens))
                           if not held_set.issuperset(holders[tokens[i]])])
  logging.info("Validation: %d of %d sentences held out with %d training rows found only inside "
               "them; %d rows left for training.", len(val_rows), len(sentences),
               len(tokens) - len(train_rows) - len(val_rows), len(train_rows))
  return (texts[train_rows], labels[train_rows]), (texts[val_rows], labels[val_rows])


def load_text_splits(config, workdir: Optional[str] = None):
  """Loads a text dataset spec as `Splits` of int32 token ids.

  Args:
    config: `config.data` with `source='text'`, `train_file` and `test_file`
      (each with `path`, `label_column`, `text_column`), `delimiter` ('' = by
      extension), `class_names` (() = from the labels), `vocab_size`,
      `max_length`, `lowercase`, `vocab_path` ('' = workdir/vocab.txt),
      `val_size`, `val_unit` ('row', the default, or 'sentence': see
      `split_validation_by_sentence`), `seed`, `train_limit` and `augment` (must be False: that is
      image augmentation; text uses the transfer set).
    workdir: the run's folder, where the vocabulary is saved or found.

  Returns:
    `tfkd.data.Splits` whose features are int32 [N, max_length].
  """
  from tfkd import data  # pylint: disable=import-outside-toplevel  (data dispatches here)
  if config.get("augment"):
    raise ConfigError("data.augment=True is image augmentation (crop and flip) and cannot apply "
                      "to text: set data.augment=False; text is augmented by data.transfer_set.")
  val_unit = config.get("val_unit", "row")
  if val_unit not in ("row", "sentence"):
    raise ConfigError(f"data.val_unit={val_unit!r} is not one of 'row' (val_size random rows) or "
                      "'sentence' (val_size whole sentences, their phrases kept out of training).")
  delimiter = config.get("delimiter", "")
  train_spec, test_spec = config.train_file, config.test_file
  train_texts, train_labels = read_table(train_spec.path, train_spec.label_column,
                                         train_spec.text_column, delimiter)
  test_texts, test_labels = read_table(test_spec.path, test_spec.label_column,
                                       test_spec.text_column, delimiter)
  train_y, test_y, class_names = label_ids(train_labels, test_labels, config.get("class_names", ()))
  # The validation split is carved before the vocabulary is built, so it is as unseen as test.
  if val_unit == "sentence":
    train, val = split_validation_by_sentence(train_texts, train_y, config.val_size, config.seed,
                                              config.get("lowercase", True))
  else:
    train, val = data.split_validation(np.asarray(train_texts, dtype=object), train_y,
                                       config.val_size, config.seed)
  if config.get("train_limit", 0):
    train = (train[0][:config.train_limit], train[1][:config.train_limit])
  vocabulary = load_or_build_vocabulary(vocabulary_path(config, workdir), train[0],
                                        config.vocab_size, config.get("lowercase", True))
  encode = lambda texts: vocabulary.encode(texts, config.max_length)
  splits = data.Splits(train=(encode(train[0]), train[1]),
                       val=None if val is None else (encode(val[0]), val[1]),
                       test=(encode(test_texts), test_y), class_names=class_names)
  logging.info("Text: %d train, %d val, %d test examples, %d classes, %d tokens, max_length %d "
               "(%.1f%% of test tokens unknown).", len(splits.train[1]),
               0 if val is None else len(val[1]), len(test_y), len(class_names), len(vocabulary),
               config.max_length, 100 * unknown_rate(splits.test[0]))
  return splits


def unknown_rate(ids: np.ndarray) -> float:
  """Share of the non-padding ids that are `<unk>`."""
  tokens = ids[ids != PAD_ID]
  return float(np.mean(tokens == UNK_ID)) if tokens.size else 0.0


# --- The augmented transfer set ----------------------------------------------------------------

def augment_token_ids(ids: np.ndarray, copies: int = 1, mask_probability: float = 0.1,
                      ngram_probability: float = 0.25, ngram_range: Sequence[int] = (1, 5),
                      seed: int = 0) -> np.ndarray:
  """Augmented copies of tokenised sentences (Tang et al. 2019, without POS swaps).

  For each copy of each sentence: every token becomes `<mask>` with probability
  `mask_probability`; then, with probability `ngram_probability`, only an
  n-gram of it is kept (n uniform in `ngram_range`, at most the sentence's
  length; start uniform), moved to the front and padded. The same seed always
  gives the same result.

  Args:
    ids: int32 [N, max_length], padding (0) at the end of each row.
    copies: augmented copies of each sentence.
    mask_probability: chance that a token is masked.
    ngram_probability: chance that a copy is cut down to an n-gram.
    ngram_range: (smallest, largest) n.
    seed: random seed.

  Returns:
    int32 [N * copies, max_length]: every sentence's first copy, then every second copy, ...

  Example:
    transfer_x = augment_token_ids(train_x, copies=2, seed=0)   # label these -1
  """
  for name, p in (("mask_probability", mask_probability), ("ngram_probability", ngram_probability)):
    if not 0.0 <= p <= 1.0:
      raise ConfigError(f"data.transfer_set.{name}={p} is not a probability: use a value in [0, 1].")
  low, high = int(ngram_range[0]), int(ngram_range[1])
  if not 1 <= low <= high:
    raise ConfigError(f"data.transfer_set.ngram_range={tuple(ngram_range)} must be (low, high) "
                      "with 1 <= low <= high, e.g. (1, 5).")
  rng = np.random.default_rng(seed)
  ids = np.asarray(ids, np.int32)
  max_length = ids.shape[1]
  source = np.tile(ids, (copies, 1))
  lengths = np.tile((ids != PAD_ID).sum(axis=1), copies)
  real = source != PAD_ID
  masked = np.where(real & (rng.random(source.shape) < mask_probability), MASK_ID, source)
  # n-gram sampling: a window of n tokens from a random start, shifted to the front.
  cut = (rng.random(len(source)) < ngram_probability) & (lengths > 0)
  n = np.minimum(rng.integers(low, high + 1, len(source)), np.maximum(lengths, 1))
  start = np.floor(rng.random(len(source)) * (lengths - n + 1)).astype(np.int64)
  start = np.where(cut, start, 0)
  keep = np.where(cut, n, lengths)
  positions = np.minimum(start[:, None] + np.arange(max_length)[None, :], max_length - 1)
  window = np.take_along_axis(masked, positions, axis=1)
  return np.where(np.arange(max_length)[None, :] < keep[:, None], window, PAD_ID).astype(np.int32)


def with_transfer_set(x: np.ndarray, y: np.ndarray, config):
  """Training data plus its augmented transfer set, the latter labelled -1.

  Args:
    x, y: training token ids and labels.
    config: `config.data.transfer_set` (`copies`, `mask_probability`,
      `ngram_probability`, `ngram_range`, `seed`); `copies=0` adds nothing.

  Returns:
    (x, y) with `len(x) * (1 + copies)` rows.
  """
  if not config or not config.get("copies", 0):
    return x, y
  if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
    raise ConfigError(f"data.transfer_set augments token ids [N, max_length], not features of "
                      f"shape {x.shape[1:]} ({x.dtype}): set data.transfer_set.copies=0 for "
                      "non-text data.")
  augmented = augment_token_ids(x, config.copies, config.mask_probability,
                                config.ngram_probability, config.ngram_range, config.seed)
  logging.info("Transfer set: %d augmented sentences (labelled -1) join %d training sentences.",
               len(augmented), len(y))
  return (np.concatenate([x, augmented]),
          np.concatenate([y, np.full(len(augmented), -1, np.int32)]).astype(np.int32))


# --- Command line ------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> None:
  """`python -m tfkd.text encode --vocab=... [--max_length=48] [--output=ids.npy] "text" ...`.

  Prints one line of space-separated ids per sentence (sentences from the
  arguments, or one per line on stdin); `--output` also saves them as .npy.
  """
  parser = argparse.ArgumentParser(prog="python -m tfkd.text",
                                   description="Turn raw sentences into a model's token ids.")
  commands = parser.add_subparsers(dest="command", required=True)
  encode = commands.add_parser("encode", help="sentences → int32 token ids")
  encode.add_argument("--vocab", required=True, help="vocab.txt written by a training run")
  encode.add_argument("--max_length", type=int, default=48,
                      help="the model's input length (config.data.max_length)")
  encode.add_argument("--no_lowercase", action="store_true",
                      help="keep case (if the run set data.lowercase=False)")
  encode.add_argument("--output", default="", help="also save the ids to this .npy file")
  encode.add_argument("sentences", nargs="*", help="sentences (default: lines of stdin)")
  args = parser.parse_args(argv)
  sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin]
  try:
    ids = Vocabulary.load(args.vocab, not args.no_lowercase).encode(sentences, args.max_length)
  except DatasetError as e:
    parser.error(str(e))
  if args.output:
    np.save(args.output, ids)
  for row in ids:
    print(" ".join(map(str, row)))


if __name__ == "__main__":
  main()
