"""A validation split of whole sentences, for datasets with a row for every phrase (SST-2).

SST-2's training file has a row for every phrase of each sentence's parse
tree. Random rows as validation sit inside training sentences, so they read
~93% where unseen dev sentences read ~83%, and rank nothing. Holding out whole
sentences, and the rows found only inside them, gives a split that reads like
dev.

Example:
  (train_texts, train_y), (val_texts, val_y) = split_validation_by_sentence(
      texts, labels, val_size=800, seed=0)
"""

from typing import Sequence

import numpy as np
from absl import logging

from tfkd.errors import DatasetError
from tfkd.vocabulary import tokenize


def split_validation_by_sentence(texts: Sequence[str], labels: np.ndarray, val_size: int,
                                 seed: int, lowercase: bool = True):
  """Holds out whole sentences, and every training row found only inside them.

  A *sentence* is a row that is not a contiguous run of tokens of a longer
  row; `val_size` of them (a seeded draw) become the validation split, and a
  row leaves training when every sentence holding it is held out. Rows also
  found in a training sentence stay, as dev sentences share phrases with
  training.

  Args:
    texts: training rows.
    labels: their class ids.
    val_size: sentences to hold out (0 = no validation split).
    seed: seed of the draw (and of the training rows' order).
    lowercase: whether tokens are compared lower-cased (as the vocabulary does).

  Returns:
    ((train_texts, train_labels), (val_texts, val_labels) or None), like
    `tfkd.splits.split_validation`.

  Raises:
    DatasetError: `val_size` would hold out every sentence.

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
  # Longest rows first: a row already held by a longer one is a phrase, not a sentence.
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
                       "not part of a longer row): lower val_size.")
  held = rng.permutation(len(sentences))[:val_size]
  held_set = set(held.tolist())
  val_rows = np.asarray([sentences[k] for k in held])
  train_rows = np.asarray([i for i in rng.permutation(len(tokens))
                           if not held_set.issuperset(holders[tokens[i]])])
  logging.info("Validation: %d of %d sentences held out with %d training rows found only inside "
               "them; %d rows left for training.", len(val_rows), len(sentences),
               len(tokens) - len(train_rows) - len(val_rows), len(train_rows))
  return (texts[train_rows], labels[train_rows]), (texts[val_rows], labels[val_rows])
