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
  """Starts the `slow` tests first, dealt in turn to the head of each process's share.

  `make test` runs its processes with `--dist worksteal`, which hands each a contiguous share
  of this list (as below); a minute-long test that starts near the end keeps one process busy
  while the others have nothing left to take.
  """
  processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set by pytest-xdist
  slow = [item for item in items if item.get_closest_marker("slow")]
  fast = [item for item in items if not item.get_closest_marker("slow")]
  ordered, left = [], len(items)
  for share in range(processes):
    size = left // (processes - share)  # what worksteal's first hand-out gives this process
    left -= size
    head = slow[share::processes]
    ordered += head + fast[:max(0, size - len(head))]
    fast = fast[max(0, size - len(head)):]
  items[:] = ordered + fast
