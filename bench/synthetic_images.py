r"""A class folder of small greyscale pattern images, to try tfkd on a dataset unlike CIFAR-10.

Six classes a small CNN can learn but not trivially: horizontal stripes,
vertical stripes, diagonal stripes (either direction), a checkerboard, a
bright square and a frame, each with a random phase or position, random
contrast and Gaussian noise. Written as greyscale PNGs in
`<out>/{train,test}/<class>/`; nothing goes into the repository.

Usage (the own-data run of BENCHMARKS.md, section 9):
  .venv/bin/python -m bench.synthetic_images --out=/tmp/patterns8 --size=8 \
      --train_per_class=267 --test_per_class=67      # 2,004 images
"""

import os

import numpy as np
from absl import flags

from tflite import cli

CLASSES = ("checkerboard", "diagonal", "frame", "horizontal", "square", "vertical")


def pattern(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
  """One clean pattern in [0, 1], [size, size] float32."""
  rows, cols = np.mgrid[0:size, 0:size]
  period = int(rng.choice([2, 3, 4])) if size >= 8 else 2
  phase = int(rng.integers(0, period))
  if name == "horizontal":
    image = ((rows + phase) % period) < period / 2
  elif name == "vertical":
    image = ((cols + phase) % period) < period / 2
  elif name == "diagonal":
    direction = cols if rng.random() < 0.5 else -cols
    image = ((rows + direction + phase) % period) < period / 2
  elif name == "checkerboard":
    block = max(1, period // 2)
    image = ((rows // block + cols // block + phase) % 2) == 0
  elif name == "square":
    side = int(rng.integers(2, max(3, size // 2) + 1))
    top, left = rng.integers(0, size - side + 1, 2)
    image = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
  elif name == "frame":
    margin = int(rng.integers(0, max(1, size // 4) + 1))
    inside = (rows >= margin) & (rows < size - margin) & (cols >= margin) & (cols < size - margin)
    edge = (rows == margin) | (rows == size - 1 - margin) | (cols == margin) | (cols == size - 1 - margin)
    image = inside & edge
  else:
    raise ValueError(f"Unknown pattern {name!r}: choose from {CLASSES}.")
  return image.astype(np.float32)


def noisy_image(name: str, size: int, rng: np.random.Generator, noise: float = 40.0) -> np.ndarray:
  """A pattern with random brightness, contrast and noise, uint8 [size, size]."""
  low = rng.uniform(0, 90)
  high = rng.uniform(low + 70, 255)
  image = low + (high - low) * pattern(name, size, rng) + rng.normal(0, noise, (size, size))
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_folder(root: str, train_per_class: int, test_per_class: int, size: int = 8,
                 seed: int = 0, noise: float = 40.0) -> str:
  """Writes `root/{train,test}/<class>/<i>.png` (greyscale) and returns `root`.

  Example:
    write_folder("/tmp/patterns8", train_per_class=267, test_per_class=67)
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (PNG encoding)
  rng = np.random.default_rng(seed)
  for split, count in (("train", train_per_class), ("test", test_per_class)):
    for name in CLASSES:
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for i in range(count):
        png = tf.io.encode_png(noisy_image(name, size, rng, noise)[..., None])
        tf.io.write_file(os.path.join(folder, f"{i:05d}.png"), png)
  return root


_OUT = flags.DEFINE_string("out", None, "Folder to write (train/ and test/ class subfolders).")
_SIZE = flags.DEFINE_integer("size", 8, "Image side in pixels.")
_TRAIN = flags.DEFINE_integer("train_per_class", 267, "Training images per class.")
_TEST = flags.DEFINE_integer("test_per_class", 67, "Test images per class.")
_NOISE = flags.DEFINE_float("noise", 40.0, "Standard deviation of the Gaussian pixel noise.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every random choice.")


def main(argv):
  del argv
  write_folder(_OUT.value, _TRAIN.value, _TEST.value, _SIZE.value, _SEED.value, _NOISE.value)
  print(f"{(_TRAIN.value + _TEST.value) * len(CLASSES)} images of {_SIZE.value}x{_SIZE.value} "
        f"in {_OUT.value}")


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  cli.run(main)
