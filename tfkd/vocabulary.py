"""Tokens and the vocabulary: text to fixed-length int32 token ids, and back.

Tokenisation is deliberately simple: optional lower-casing, then whitespace
splitting (SST-2 comes tokenised already). A vocabulary is built from training
texts only, most frequent tokens first, and saved as `vocab.txt` (one token per
line, line number = id); `load_or_build_vocabulary` loads that file when it
exists instead of rebuilding, so training, evaluation and inference use
identical ids. Ids 0, 1 and 2 are reserved for padding, unknown tokens and the
mask token of the transfer set (`tfkd.text_augment`).

Example:
  vocabulary = load_or_build_vocabulary("runs/sst2/vocab.txt", train_texts, vocab_size=15000)
  ids = vocabulary.encode(["a gorgeous , witty film"], max_length=48)   # int32 [1, 48]
"""

import collections
import io
import os
from typing import Iterable, List, Optional, Sequence

import numpy as np
from absl import logging

from tfkd.errors import DatasetError
from tfkd.text_table import read_utf8
from tflite import files

PAD, UNK, MASK = "<pad>", "<unk>", "<mask>"
RESERVED_TOKENS = (PAD, UNK, MASK)
PAD_ID, UNK_ID, MASK_ID = 0, 1, 2
VOCAB_FILENAME = "vocab.txt"


def tokenize(text: str, lowercase: bool = True) -> List[str]:
  """Splits text on whitespace, lower-cased first unless `lowercase` is False.

  Args:
    text: one sentence.
    lowercase: lower-case before splitting.

  Returns:
    The tokens, in order.

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

    Returns:
      The `Vocabulary`.

    Example:
      Vocabulary.build(["b a a d", "c B A"], size=10).tokens   # reserved, 'a', 'b', 'c', 'd'
    """
    if size <= len(RESERVED_TOKENS):
      raise ValueError(f"size={size} leaves no room for words after the "
                        f"{len(RESERVED_TOKENS)} reserved tokens: use a few thousand.")
    counts = collections.Counter(t for text in texts for t in tokenize(text, lowercase))
    for token in RESERVED_TOKENS:
      counts.pop(token, None)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    words = [token for token, _ in ranked[:size - len(RESERVED_TOKENS)]]
    return cls(list(RESERVED_TOKENS) + words, lowercase)

  def save(self, path: str) -> None:
    """Writes one token per line, atomically: a killed run never leaves half a vocabulary."""
    files.write_atomic(path, "".join(t + "\n" for t in self.tokens))

  @classmethod
  def load(cls, path: str, lowercase: bool = True) -> "Vocabulary":
    """Reads a file written by `save`.

    Args:
      path: the vocab file.
      lowercase: whether `encode` lower-cases (as the run that built it did).

    Returns:
      The `Vocabulary`.

    Example:
      vocabulary = Vocabulary.load("runs/sst2/vocab.txt")
    """
    if not os.path.isfile(path):
      raise DatasetError(f"Vocabulary file {path!r} does not exist: pass the vocab.txt that a "
                         "training run wrote in its workdir.")
    text = io.StringIO(read_utf8(path, "Vocabulary file"), newline=None)  # as open() reads lines
    return cls([line.rstrip("\n") for line in text], lowercase)

  def encode(self, texts: Iterable[str], max_length: int) -> np.ndarray:
    """Token ids of each text, truncated or padded (with 0) at the end to `max_length`.

    Args:
      texts: sentences.
      max_length: ids per sentence (the model's input length).

    Returns:
      int32 array [len(texts), max_length]; unknown tokens are `UNK_ID`.

    Example:
      vocabulary.encode(["good film"], max_length=4)   # [[4, 3, 0, 0]]
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


def load_or_build_vocabulary(path: Optional[str], train_texts: Sequence[str], vocab_size: int,
                             lowercase: bool = True) -> Vocabulary:
  """Loads the vocabulary at `path` if it exists, else builds it from `train_texts` and saves it.

  Loading rather than rebuilding keeps ids identical across reruns, evaluation
  and inference, even if the training file or the settings changed since.

  Args:
    path: vocab file (usually `workdir/vocab.txt`); None builds without saving.
    train_texts: the training split's texts.
    vocab_size: vocabulary size when building; a loaded one may not be larger.
    lowercase: lower-case text before looking tokens up.

  Returns:
    The `Vocabulary`.

  Raises:
    ValueError: the saved vocabulary has more than `vocab_size` tokens.

  Example:
    vocabulary = load_or_build_vocabulary("runs/sst2/vocab.txt", train_texts, vocab_size=15000)
  """
  if path and os.path.isfile(path):
    vocabulary = Vocabulary.load(path, lowercase)
    logging.info("Loaded the %d-token vocabulary %s.", len(vocabulary), path)
    if len(vocabulary) > vocab_size:
      raise ValueError(f"The vocabulary {path!r} has {len(vocabulary)} tokens, more than "
                        f"vocab_size={vocab_size} the models are built for: raise vocab_size, or "
                        "pass another path to build a new vocabulary (and train new models).")
    return vocabulary
  vocabulary = Vocabulary.build(train_texts, vocab_size, lowercase)
  if path:
    vocabulary.save(path)
    logging.info("Built a %d-token vocabulary from %d training texts: %s.", len(vocabulary),
                 len(train_texts), path)
  return vocabulary


def unknown_rate(ids: np.ndarray) -> float:
  """Share of the non-padding ids that are `<unk>` (0.0 when all are padding).

  Example:
    unknown_rate(np.array([[4, 1, 0]]))   # 0.5
  """
  tokens = ids[ids != PAD_ID]
  return float(np.mean(tokens == UNK_ID)) if tokens.size else 0.0
