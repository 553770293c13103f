"""The train / validation / test arrays every data source ends as, and the validation carve-out.

Images (`tfkd.data`) and text (`tfkd.text_data`) both return a `Splits`, so
the stages, the report and the `.tflite` tools never ask where data came from.
This module imports neither of them: both loaders import it.

Example:
  train, val = split_validation(x, y, val_size=5000, seed=0)
  splits = Splits(train=train, val=val, test=(test_x, test_y), class_names=["cat", "dog"])
"""

import dataclasses
from typing import Optional

import numpy as np

from tfkd.errors import DatasetError


@dataclasses.dataclass
class Splits:
  """Train, validation and test arrays of one dataset.

  Attributes:
    train: (features, labels) used for gradient steps.
    val: (features, labels) carved from train, or None when `val_size` is 0.
    test: (features, labels) of the held-out test split.
    class_names: names of the classes, index = label.
    facts: how images were read (`tfkd.data.load_image_folder`'s facts: stored
      sizes, resized or not, channels); empty for other sources.
    notes: settings adapted to this data (`tfkd.small_data`), one phrase each.
    texts: text sources only: the raw texts of 'train', 'val' and 'test', one per
      row (a teacher that reads text, `tfkd.hub_teacher`); empty for other sources.

  Raises:
    DatasetError: fewer than two classes (there is nothing to classify).

  Example:
    splits = Splits(train=(x, y), val=None, test=(test_x, test_y), class_names=["a", "b"])
    splits.num_classes, splits.input_shape   # 2, x.shape[1:]
  """
  train: tuple
  val: Optional[tuple]
  test: tuple
  class_names: list
  facts: dict = dataclasses.field(default_factory=dict)
  notes: list = dataclasses.field(default_factory=list)
  texts: dict = dataclasses.field(default_factory=dict)
  _channel_stats: Optional[tuple] = dataclasses.field(default=None, init=False, repr=False,
                                                      compare=False)

  def __post_init__(self):
    if len(self.class_names) < 2:
      raise DatasetError(f"The dataset has {len(self.class_names)} class(es) "
                         f"({list(self.class_names)}): a classifier needs at least two. Add a "
                         "class folder (or labels of another class) to the training data.")

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def input_shape(self) -> tuple:
    return tuple(self.train[0].shape[1:])

  def channel_stats(self) -> tuple:
    """Per-channel mean and variance of the training images, for `Normalization`.

    Computed once per `Splits` (a search builds every candidate with them), a million rows at
    a time: a float64 copy of 45,000 CIFAR-10 images would take 1.1 GB.
    """
    if self._channel_stats is None:
      x = self.train[0].reshape(-1, self.train[0].shape[-1])
      step = 1 << 20
      chunks = [x[i:i + step] for i in range(0, len(x), step)]  # views: nothing copied yet
      mean = sum(chunk.sum(axis=0, dtype=np.float64) for chunk in chunks) / len(x)
      # Two passes (the squared deviations from the mean), as np.var: exact for large offsets.
      var = sum(np.square(chunk - mean).sum(axis=0) for chunk in chunks) / len(x)
      self._channel_stats = (mean.tolist(), var.tolist())
    return self._channel_stats


def split_validation(x, y, val_size: int, seed: int):
  """Carves a deterministic validation split from shuffled training data.

  The same seed always gives the same split, whatever the file system's order.

  Args:
    x: training features (a numpy array, indexed along its first axis).
    y: their labels.
    val_size: examples to hold out (0 = no validation split).
    seed: seed of the shuffle.

  Returns:
    ((train_x, train_y), (val_x, val_y) or None), both shuffled.

  Raises:
    DatasetError: `val_size` would leave no training data.

  Example:
    (train_x, train_y), (val_x, val_y) = split_validation(x, y, val_size=5000, seed=0)
  """
  if val_size >= len(y):
    raise DatasetError(f"val_size={val_size} leaves no training data ({len(y)} examples): "
                       "lower val_size.")
  order = np.random.default_rng(seed).permutation(len(y))
  x, y = x[order], y[order]
  if not val_size:
    return (x, y), None
  return (x[val_size:], y[val_size:]), (x[:val_size], y[:val_size])


def keep_labels(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """The labels of a class-stratified share of the examples; the others become -1 (unlabelled).

  Each class keeps round(fraction · its count) labels (at least one), drawn with `seed`,
  so the kept share of every class is `fraction` up to rounding and the same seed always
  keeps the same examples.

  Args:
    y: labels, ints >= 0.
    fraction: share of examples that keep their label, in (0, 1].
    seed: seed of the draw.

  Returns:
    A copy of `y` with the unkept labels set to -1 (`y` itself when `fraction` is 1).

  Example:
    keep_labels(np.array([0, 0, 1, 1]), 0.5, seed=0)   # e.g. [0, -1, -1, 1]
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction={fraction} must be in (0, 1]: the share of labels kept.")
  if fraction == 1.0:
    return y
  rng = np.random.default_rng(seed)
  kept = np.full(len(y), -1, dtype=y.dtype)
  for label in np.unique(y):
    members = np.flatnonzero(y == label)
    chosen = rng.choice(members, max(1, round(fraction * len(members))), replace=False)
    kept[chosen] = label
  return kept
