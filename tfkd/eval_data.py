"""One split of a dataset, read with `tfkd.data` for evaluating a `.tflite` model.

The command-line tools (`tfkd.evaluate`, `tfkd.benchmark`, `bench.edge`)
describe a dataset by a path and a source; this module turns that into the
`config.data` block `tfkd.from_config.splits` reads, so training and on-device
evaluation share one loader. Image size comes from the model's input. It lives
in tfkd, not `tflite`, because `tflite` knows nothing of tfkd's data sources.

Example:
  config = data_config("folder", "../shared/data/cifar10-jpeg", model_input_shape("m.tflite"))
  test_x, test_y = load_split(config, "test")
"""

import os
from typing import Optional

from ml_collections import ConfigDict

from tfkd import config_checks, data, from_config
from tfkd.errors import ConfigError, ModelMismatchError
from tflite import interpreter

SPLITS = ("train", "val", "test")


def model_input_shape(model_path: str) -> tuple:
  """The input shape of a `.tflite` model without the batch dimension.

  Example:
    model_input_shape("runs/x/export/distill_int8.tflite")   # (32, 32, 3)
  """
  return tuple(int(d) for d in interpreter.load(model_path).get_input_details()[0]["shape"][1:])


def data_config(source: str, path: str, input_shape, val_size: int = 0, seed: int = 0,
                tfds_data_dir: str = "") -> ConfigDict:
  """A `config.data` block for a dataset named on the command line.

  Args:
    source: 'folder' or 'tfds' (text datasets need a whole data block: pass a
      run config instead, see `tfkd.evaluate`).
    path: the folder, or the TFDS name for 'tfds'.
    input_shape: the model's input shape; images are resized to its height and width
      and given its channels.
    val_size, seed: the validation split carved from train (as the run had it).
    tfds_data_dir: TFDS data_dir ('' = default).

  Returns:
    A ConfigDict for `tfkd.from_config.splits`.

  Example:
    data_config("folder", "../shared/data/cifar10-jpeg", (32, 32, 3)).image_size   # (32, 32)
  """
  image = len(input_shape) == 3
  return ConfigDict(dict(source=source, path=path, tfds_name=path, tfds_data_dir=tfds_data_dir,
                         image_size=tuple(input_shape[:2]) if image else (),
                         channels=int(input_shape[2]) if image else 0, val_size=val_size,
                         adapt=True, seed=seed, train_limit=0, augment=False))


def load_split(config: ConfigDict, split: str, workdir: Optional[str] = None,
               model_path: Optional[str] = None):
  """(x, y) of one split of the dataset `config` describes (`load_named_split` without the names)."""
  return load_named_split(config, split, workdir, model_path)[:2]


def load_named_split(config: ConfigDict, split: str, workdir: Optional[str] = None,
                     model_path: Optional[str] = None):
  """(x, y, class_names) of one split of the dataset `config` describes.

  A class folder's test split with known channels is decoded alone (the training
  folder is only listed, for the class order); every other case goes through
  `tfkd.from_config.splits`.

  Args:
    config: a `config.data` block (from `data_config` or a run config).
    split: 'train', 'val' or 'test'.
    workdir: the run's folder, for sources that keep state there (the text
      source's vocabulary).
    model_path: the `.tflite` model the split is for: its input shape and class
      count are checked against the data (`check_model_fits`).

  Returns:
    (features, labels, class_names): numpy arrays and the classes' names (index = label).

  Raises:
    ConfigError: unknown split, or 'val' without a validation split.
    ModelMismatchError: the model does not fit the data.

  Example:
    x, y, names = load_named_split(data_config("folder", "data/cifar10-jpeg", (32, 32, 3)), "test")
  """
  if split not in SPLITS:
    raise ConfigError(f"Unknown split {split!r} (argument split, flag --split): "
                      f"choose from {SPLITS}.")
  config_checks.validate_data(config)
  if config.source == "folder" and split == "test" and config.channels:
    _, _, class_names = data.list_image_folder(os.path.join(config.path, "train"))
    paths, labels, _ = data.list_image_folder(os.path.join(config.path, "test"), class_names)
    chosen = data.decode_images(paths, config.image_size, config.channels), labels
  else:
    splits = from_config.splits(config, workdir or "")
    chosen, class_names = getattr(splits, split), splits.class_names
    if chosen is None:
      raise ConfigError("The val split is empty: set val_size > 0 (the data.val_size of the run, "
                        "with the same seed) to carve it from train.")
  if model_path:
    check_model_fits(model_path, chosen[0], len(class_names))
  return (*chosen, list(class_names))


def check_model_fits(model_path: str, x, num_classes: Optional[int] = None) -> None:
  """Refuses a `.tflite` classifier whose input or output does not fit the data.

  An accuracy would otherwise be printed for a model that cannot read these
  examples, or that knows other classes (a 3-class model on 10-class data).

  Args:
    model_path: the `.tflite` file.
    x: the examples (first axis: examples).
    num_classes: the data's classes; None checks the input shape only.

  Raises:
    ModelMismatchError: naming the model, both shapes or class counts, and the fix.

  Example:
    check_model_fits("m_int8.tflite", test_x, 10)
  """
  loaded = interpreter.load(model_path)
  expected = tuple(int(d) for d in loaded.get_input_details()[0]["shape"][1:])
  classes = int(loaded.get_output_details()[0]["shape"][-1])
  if tuple(x.shape[1:]) != expected:
    raise ModelMismatchError(
        f"{model_path!r} takes inputs of shape {expected}, but the data's examples have shape "
        f"{tuple(x.shape[1:])}: give it data of the kind it was trained on (images with its "
        "channels, or text through its run config: --config).")
  if num_classes is not None and classes != num_classes:
    raise ModelMismatchError(
        f"{model_path!r} outputs {classes} classes, but the data has {num_classes}: give it "
        "the dataset it was trained on (the same class folders or labels).")
