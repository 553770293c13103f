"""The augmented transfer set: masked and n-gram-cut copies of training token ids, labelled -1.

Following Tang et al. (2019, "Distilling task-specific knowledge from BERT
into simple neural networks"), the distill stage adds augmented copies of the
training sentences, labelled -1 so the `Distiller` trains on them with the
teacher's soft targets alone: each token is replaced by `<mask>` with
probability `mask_probability`, then with probability `ngram_probability` only
a random n-gram (n uniform in `ngram_range`) of the sentence is kept. (The
paper's part-of-speech-guided word swaps are left out: they need a tagger.)

`augmented_texts` makes the same copies as text, from the training rows' own
words, for a teacher that reads text (`tfkd.hub_teacher`): position for
position what the student sees, except that a word the student's vocabulary
lacks is the word itself there, not `<unk>`.

Example:
  x, y = with_transfer_set(train_x, train_y, copies=4, seed=0)   # 5x the rows, the new ones -1
"""

from typing import Sequence

import numpy as np
from absl import logging

from tfkd.vocabulary import MASK_ID, PAD_ID, tokenize

TRANSFER_LABEL = -1  # the Distiller gives these no hard-label loss


def copy_rows(lengths: np.ndarray, copies: int, long_copies: int = 0,
              long_min_tokens: int = 15) -> np.ndarray:
  """Which row each augmented copy is made from, in the transfer set's order.

  Every row `copies` times (every row's first copy, then every second copy, ...),
  then every row of at least `long_min_tokens` tokens `long_copies` times more.

  Args:
    lengths: tokens of each row.
    copies, long_copies, long_min_tokens: as `augment_token_ids`.

  Returns:
    int64 row indices, one per augmented copy.
  """
  rows = np.tile(np.arange(len(lengths)), copies)
  if long_copies:
    rows = np.concatenate([rows, np.tile(np.flatnonzero(lengths >= long_min_tokens), long_copies)])
  return rows


def augment_token_ids(ids: np.ndarray, copies: int = 1, mask_probability: float = 0.1,
                      ngram_probability: float = 0.25, ngram_range: Sequence[int] = (1, 5),
                      seed: int = 0, long_copies: int = 0, long_min_tokens: int = 15) -> np.ndarray:
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
    long_copies: more copies of each sentence of at least `long_min_tokens`
      tokens, after the others: the transfer set leans towards long sentences
      (SST-2's training rows are mostly short phrases, its dev rows sentences).
    long_min_tokens: the length that counts as long.

  Returns:
    int32 [N * copies + long rows * long_copies, max_length]: every sentence's
    first copy, then every second copy, ..., then the long sentences' copies
    (`copy_rows` gives each copy's source row).

  Raises:
    ValueError: a probability outside [0, 1] or an `ngram_range` that is not
      (low, high) with 1 <= low <= high.

  Example:
    transfer_x = augment_token_ids(train_x, copies=2, seed=0)   # label these -1
  """
  for name, p in (("mask_probability", mask_probability), ("ngram_probability", ngram_probability)):
    if not 0.0 <= p <= 1.0:
      raise ValueError(f"{name}={p} is not a probability: use a value in [0, 1].")
  low, high = int(ngram_range[0]), int(ngram_range[1])
  if not 1 <= low <= high:
    raise ValueError(f"ngram_range={tuple(ngram_range)} must be (low, high) with "
                      "1 <= low <= high, e.g. (1, 5).")
  ids = np.asarray(ids, np.int32)
  rows = copy_rows((ids != PAD_ID).sum(axis=1), copies, long_copies, long_min_tokens)
  ordinary = len(ids) * copies
  # The long copies draw from their own stream: the ordinary copies (and a teacher's cached
  # logits of them) stay the same whatever long_copies is.
  return np.concatenate([
      _mask_and_cut(ids[rows[:ordinary]], np.random.default_rng(seed), mask_probability,
                    ngram_probability, low, high),
      _mask_and_cut(ids[rows[ordinary:]], np.random.default_rng([seed, 1]), mask_probability,
                    ngram_probability, low, high)])


def _mask_and_cut(source: np.ndarray, rng: np.random.Generator, mask_probability: float,
                  ngram_probability: float, low: int, high: int) -> np.ndarray:
  """`augment_token_ids`' masking and n-gram cut of each row of `source`, drawn from `rng`."""
  max_length = source.shape[1]
  lengths = (source != PAD_ID).sum(axis=1)
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


def with_transfer_set(x: np.ndarray, y: np.ndarray, copies: int, mask_probability: float = 0.1,
                      ngram_probability: float = 0.25, ngram_range: Sequence[int] = (1, 5),
                      seed: int = 0, long_copies: int = 0, long_min_tokens: int = 15):
  """Training data plus its augmented transfer set, the latter labelled -1.

  Args:
    x: training token ids, int [N, max_length].
    y: their labels.
    copies: augmented copies per sentence; 0 (and `long_copies` 0) adds nothing
      (and accepts any `x`).
    mask_probability, ngram_probability, ngram_range, seed, long_copies,
      long_min_tokens: see `augment_token_ids`.

  Returns:
    (x, y) with the originals first, then their augmented copies.

  Raises:
    ValueError: `copies` or `long_copies` is not a whole number >= 0, `x` is not
      token ids, or an augmentation setting is out of range (the message names the argument).

  Example:
    x, y = with_transfer_set(train_x, train_y, copies=4, mask_probability=0.1,
                             ngram_probability=0.25, ngram_range=(1, 5), seed=0)
  """
  for name, count in (("copies", copies), ("long_copies", long_copies)):
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
      raise ValueError(f"{name}={count!r} is not a whole number >= 0: pass the augmented copies "
                        "per sentence, or 0 for none.")
  if not copies and not long_copies:
    return x, y
  if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
    raise ValueError(f"with_transfer_set augments token ids [N, max_length], not features of "
                      f"shape {x.shape[1:]} ({x.dtype}): pass copies=0 for non-text data.")
  augmented = augment_token_ids(x, copies, mask_probability, ngram_probability, ngram_range, seed,
                                long_copies, long_min_tokens)
  logging.info("Transfer set: %d augmented sentences (labelled -1) join %d training sentences.",
               len(augmented), len(y))
  return (np.concatenate([x, augmented]),
          np.concatenate([y, np.full(len(augmented), TRANSFER_LABEL, np.int32)]).astype(np.int32))


def augmented_texts(texts: Sequence[str], ids: np.ndarray, copies: int, mask_token: str,
                    mask_probability: float = 0.1, ngram_probability: float = 0.25,
                    ngram_range: Sequence[int] = (1, 5), seed: int = 0,
                    lowercase: bool = True, long_copies: int = 0,
                    long_min_tokens: int = 15) -> list:
  """The copies `augment_token_ids(ids, ...)` makes, as text of the original words.

  `augment_token_ids` draws its masks and n-grams from the rows' lengths alone, so
  augmenting each token's position instead of its id picks the same positions;
  the words at those positions come from `texts`. A vocabulary of any size thus
  gives the same texts, and a text teacher labels the words, not `<unk>`.

  Args:
    texts: the training rows' raw texts, one per row of `ids`.
    ids: their token ids, int [N, max_length] (`Vocabulary.encode` of `texts`).
    copies: augmented copies per row.
    mask_token: the teacher's mask token, e.g. '[MASK]'.
    mask_probability, ngram_probability, ngram_range, seed, long_copies,
      long_min_tokens: as `augment_token_ids`.
    lowercase: as the vocabulary (`data.lowercase`).

  Returns:
    One string per augmented copy, in `augment_token_ids`' row order.

  Example:
    augmented_texts(["a witty film"], ids, copies=1, mask_token="[MASK]")  # e.g. ['a [MASK] film']
  """
  ids = np.asarray(ids)
  if len(texts) != len(ids):
    raise ValueError(f"texts has {len(texts)} rows but ids {len(ids)}: pass the texts the ids "
                      "were encoded from, in the same order.")
  first_position = MASK_ID + 1  # positions shifted past the reserved ids
  positions = np.where(ids != PAD_ID, np.arange(ids.shape[1])[None, :] + first_position, PAD_ID)
  augmented = augment_token_ids(positions, copies, mask_probability, ngram_probability,
                                ngram_range, seed, long_copies, long_min_tokens)
  rows = copy_rows((ids != PAD_ID).sum(axis=1), copies, long_copies, long_min_tokens)
  words = [tokenize(text, lowercase) for text in texts]
  return [" ".join(mask_token if p == MASK_ID else words[row][p - first_position]
                   for p in augmented_row if p != PAD_ID)
          for row, augmented_row in zip(rows, augmented)]
