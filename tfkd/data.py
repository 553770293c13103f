"""Image datasets as in-memory splits (class folders, TFDS), and evaluation batches.

Every source ends, through `tfkd.from_config.splits`, as the same
`tfkd.splits.Splits`: uint8 images (or int32 token ids) and int labels for
train, a deterministic validation split carved from train, and test. Small image sets such as CIFAR-10 fit in memory (60k x
32x32x3 = 184 MB), so decoding them once is the cache: every epoch after that
reads memory, and the same arrays feed representative data for int8
conversion and the interpreter evaluations.

Pixels stay in [0, 255]. Normalisation is the model's first layer (see
`tfkd.models`), so an exported `.tflite` takes raw pixels and an int8 model's
input quantisation is exact for 8-bit images.

A run config's `data` block becomes these calls in `tfkd.from_config.splits`
(text goes to `tfkd.text_data`).

Training batches (shuffled, augmented) are made by `tfkd.views.train_dataset`.

Example:
  (train_x, train_y), (test_x, test_y), classes = load_image_folder("data/cifar10", (32, 32))
  test_ds = eval_dataset(test_x, test_y, batch_size=500)
"""

import os
import re
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from tfkd.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def list_image_folder(split_dir: str, class_names: Optional[Sequence[str]] = None):
  """Lists the image files of a `<split>/<class>/<image>` folder.

  Args:
    split_dir: folder holding one subfolder per class.
    class_names: expected classes (e.g. those of train when listing test); by
      default the sorted subfolder names, as `image_dataset_from_directory` does.

  Returns:
    (paths, labels, class_names), paths sorted within each class.
  """
  if not os.path.isdir(split_dir):
    raise DatasetError(
        f"Dataset folder {split_dir!r} does not exist: point data.path at a folder "
        "holding train/<class>/*.jpg and test/<class>/*.jpg.")
  found = sorted(d for d in os.listdir(split_dir)
                 if os.path.isdir(os.path.join(split_dir, d)))
  if not found:
    raise DatasetError(
        f"Dataset folder {split_dir!r} has no class subfolders: put each class's "
        "images in a subfolder named after the class.")
  if class_names is not None and list(found) != list(class_names):
    raise DatasetError(
        f"Classes in {split_dir!r} ({found}) differ from the training classes "
        f"({list(class_names)}): give both splits the same class subfolders.")
  paths, labels = [], []
  for label, name in enumerate(found):
    class_dir = os.path.join(split_dir, name)
    files = sorted(f for f in os.listdir(class_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
    dangling = [f for f in files if not os.path.isfile(os.path.join(class_dir, f))]
    if dangling:  # a broken symlink (or a folder named like an image): never skipped silently
      raise DatasetError(
          f"Class folder {class_dir!r} lists {len(dangling)} image name(s) that are not readable "
          f"files (broken symlinks?): {dangling[:10]}. Fix the links or delete them.")
    if not files:
      raise DatasetError(
          f"Class folder {class_dir!r} has no images ({', '.join(IMAGE_EXTENSIONS)}): "
          "add images or remove the folder.")
    paths += [os.path.join(class_dir, f) for f in files]
    labels += [label] * len(files)
  return paths, np.asarray(labels, np.int32), found


def load_image_folder(path: str, image_size: Sequence[int] = (32, 32)):
  """Reads `path/train/<class>/*` and `path/test/<class>/*` into uint8 arrays.

  Images of another size are resized to `image_size`; greyscale ones are made RGB.

  Returns:
    ((train_x, train_y), (test_x, test_y), class_names).
  """
  if not os.path.isdir(path):
    raise DatasetError(
        f"Dataset folder {path!r} does not exist: set data.path (or --config.data.path) "
        "to a folder with train/ and test/ class subfolders.")
  train_paths, train_y, class_names = list_image_folder(os.path.join(path, "train"))
  test_paths, test_y, _ = list_image_folder(os.path.join(path, "test"), class_names)
  return ((decode_images(train_paths, image_size), train_y),
          (decode_images(test_paths, image_size), test_y), class_names)


def _decode(path, image_size):
  image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  image = tf.image.resize(image, image_size, method="bilinear")
  return tf.cast(tf.round(image), tf.uint8)


def _op_message(error: tf.errors.OpError) -> str:
  """A TensorFlow op error's message without the op and device decoration around it."""
  message = error.message.splitlines()[0] if error.message else type(error).__name__
  return re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", message)


def decode_images(paths: Sequence[str], image_size: Sequence[int]) -> np.ndarray:
  """Decodes image files in parallel into a uint8 array [N, H, W, 3].

  Raises:
    DatasetError naming every file that cannot be read or decoded (none is skipped).
  """
  image_size = tuple(image_size)
  ds = (tf.data.Dataset.from_tensor_slices(list(paths))
        .map(lambda p: _decode(p, image_size), num_parallel_calls=tf.data.AUTOTUNE,
             deterministic=True)
        .batch(2048))
  try:
    return np.concatenate([b.numpy() for b in ds]) if paths else np.zeros((0, *image_size, 3), np.uint8)
  except tf.errors.OpError:  # undecodable, unreadable or vanished files: named below
    pass
  # Slow path, only after a failure: find which files are bad, so the error names them.
  bad = []
  for p in paths:
    try:
      _decode(p, image_size)
    except tf.errors.OpError as e:
      bad.append(f"{p} ({_op_message(e)})")
  raise DatasetError(
      f"{len(bad)} image file(s) cannot be read or decoded: {'; '.join(bad[:10])}"
      f"{' ...' if len(bad) > 10 else ''}. Re-encode or delete them and run again.")


def load_tfds(name: str, data_dir: Optional[str] = None, train_split="train", test_split="test"):
  """Reads an image classification dataset from TensorFlow Datasets.

  With internet access TFDS downloads and prepares the data into `data_dir` the
  first time; without it, `data_dir` must already hold the prepared dataset.

  Returns:
    ((train_x, train_y), (test_x, test_y), class_names).
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
  except Exception as e:  # TFDS raises many types for network and lookup failures.
    raise DatasetError(
        f"TFDS could not load {name!r} (data_dir={data_dir!r}): {e}. Prepare it where "
        "there is internet (`tfds build` with the same data_dir) or use "
        "data.source='folder'.") from e
  def to_arrays(split):
    batches = list(tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True).batch(4096)))
    return (np.concatenate([b[0] for b in batches]),
            np.concatenate([b[1] for b in batches]).astype(np.int32))

  class_names = builder.info.features["label"].names
  return to_arrays(train_split), to_arrays(test_split), list(class_names)


def eval_dataset(x, y, batch_size: int) -> tf.data.Dataset:
  """Batched, prefetched evaluation data (every example, in order)."""
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
  to_float = lambda a, b: (tf.cast(a, tf.float32) if a.dtype == tf.uint8 else a, b)
  return ds.map(to_float).prefetch(tf.data.AUTOTUNE)


def evenly_spaced(x: np.ndarray, count: int) -> np.ndarray:
  """`count` rows of `x` spread evenly over it, first and last included (all rows if fewer).

  The calibration sample of int8 conversion: spread over the whole training split, it
  covers every class of a class-ordered folder without drawing random numbers.
  """
  return x[np.linspace(0, len(x) - 1, min(count, len(x))).astype(int)]
