"""Shared fixtures: small datasets and models made on the fly (nothing is committed)."""

import os

import numpy as np
import pytest

CLASSES = ("circle", "square", "stripes")


def make_image(label: int, rng, size: int = 16) -> np.ndarray:
  """A noisy image whose colour depends on the class, so tiny models can learn it."""
  image = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
  image[..., label % 3] += 150
  return image


def write_image_folder(root, per_class=(12, 4), size=16, seed=0):
  """Writes root/{train,test}/<class>/<i>.jpg and returns root."""
  # Imported here: pytest-xdist's controller process loads this file too, and runs no test.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  for split, count in zip(("train", "test"), per_class):
    for label, name in enumerate(CLASSES):
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for i in range(count):
        jpeg = tf.io.encode_jpeg(make_image(label, rng, size), quality=95)
        tf.io.write_file(os.path.join(folder, f"{i:04d}.jpg"), jpeg)
  return str(root)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
  return write_image_folder(tmp_path_factory.mktemp("images"), per_class=(40, 10))


def pytest_collection_modifyitems(items):
  """Starts the `slow` tests first, alternately at the head of each process's share.

  `make test` runs two processes with `--dist worksteal`, which hands each a contiguous half of
  this list; a minute-long test that starts near the end keeps one process busy while the other
  has nothing left to take.
  """
  slow = [item for item in items if item.get_closest_marker("slow")]
  fast = [item for item in items if not item.get_closest_marker("slow")]
  head = max(0, len(items) // 2 - len(slow[0::2]))
  items[:] = slow[0::2] + fast[:head] + slow[1::2] + fast[head:]

