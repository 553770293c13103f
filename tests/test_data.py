"""Dataset loading: class folders, TFDS (mocked offline), splits, augmentation, bad input."""

import os
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from tests.conftest import CLASSES, write_image_folder
from tfkd import data, from_config, splits as splits_lib, views
from tfkd.errors import DatasetError


def folder_config(path, **overrides):
  config = ConfigDict(dict(source="folder", path=path, tfds_name="", tfds_data_dir="",
                           image_size=(16, 16), channels=0, val_size=12, adapt=True, seed=0,
                           train_limit=0))
  config.update(overrides)
  return config


def test_folder_splits(image_folder):
  splits = from_config.splits(folder_config(image_folder))
  assert splits.class_names == list(CLASSES)
  assert splits.train[0].shape == (108, 16, 16, 3) and splits.train[0].dtype == np.uint8
  assert len(splits.val[1]) == 12 and len(splits.test[1]) == 30
  # The images carry their class in the dominant channel: labels must line up.
  assert np.mean(splits.test[0].mean(axis=(1, 2)).argmax(-1) == splits.test[1]) == 1.0


def test_validation_split_is_deterministic(image_folder):
  a = from_config.splits(folder_config(image_folder))
  b = from_config.splits(folder_config(image_folder))
  c = from_config.splits(folder_config(image_folder, seed=1))
  np.testing.assert_array_equal(a.val[0], b.val[0])
  assert not np.array_equal(a.val[0], c.val[0])


def test_split_validation_is_seeded_and_names_val_size():
  x, y = np.arange(20) * 10, np.arange(20)
  (train_x, train_y), (val_x, val_y) = splits_lib.split_validation(x, y, 5, seed=3)
  again = splits_lib.split_validation(x, y, 5, seed=3)
  np.testing.assert_array_equal(val_x, again[1][0])
  assert len(val_y) == 5 and len(train_y) == 15 and set(train_y) | set(val_y) == set(y)
  np.testing.assert_array_equal(train_x, train_y * 10)   # features and labels shuffled together
  assert splits_lib.split_validation(x, y, 0, seed=3)[1] is None
  with pytest.raises(DatasetError, match="val_size=20 leaves no training data.*lower val_size"):
    splits_lib.split_validation(x, y, 20, seed=0)


def test_channel_stats_match_numpy_across_chunks_and_are_computed_once():
  # 1.3M pixel rows: more than one of channel_stats' million-row chunks. An offset of 1e6 with
  # a spread of ~1 is where a one-pass E[x²] - E[x]² would lose the variance.
  rng = np.random.default_rng(0)
  x = (1e6 + rng.normal(size=(130, 100, 100, 3)) * [1.0, 2.0, 0.5]).astype(np.float64)
  splits = splits_lib.Splits(train=(x, np.zeros(130)), val=None, test=(x[:2], np.zeros(2)),
                             class_names=["a", "b"])
  mean, var = splits.channel_stats()
  flat = x.reshape(-1, 3)
  np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(var, flat.var(axis=0), rtol=1e-9)
  x[...] = 0   # read once: the cached statistics do not look at the array again
  assert splits.channel_stats() == (mean, var)


def test_missing_config_key_is_an_error_not_a_default(image_folder):
  """from_config.splits reads config.data keys as attributes: a missing one is never silently 0 or ''."""
  config = folder_config(image_folder)
  del config["train_limit"]
  with pytest.raises(AttributeError, match="train_limit"):
    from_config.splits(config)


def test_images_are_resized(image_folder):
  splits = from_config.splits(folder_config(image_folder, image_size=(8, 8)))
  assert splits.input_shape == (8, 8, 3)


def test_missing_folder(tmp_path):
  with pytest.raises(DatasetError, match="does not exist.*data.path"):
    from_config.splits(folder_config(str(tmp_path / "nowhere")))


def test_empty_folder(tmp_path):
  os.makedirs(tmp_path / "train")
  with pytest.raises(DatasetError, match="no class subfolders"):
    from_config.splits(folder_config(str(tmp_path)))


def test_class_folder_without_images(tmp_path):
  root = write_image_folder(tmp_path, per_class=(3, 2))
  empty = os.path.join(root, "train", "zebra")
  os.makedirs(empty)
  open(os.path.join(empty, "notes.txt"), "w").close()
  with pytest.raises(DatasetError, match="zebra.*has no images"):
    from_config.splits(folder_config(root, val_size=1))


def test_unreadable_image_is_named(tmp_path):
  root = write_image_folder(tmp_path, per_class=(3, 2))
  bad = os.path.join(root, "train", CLASSES[1], "broken.jpg")
  with open(bad, "wb") as f:
    f.write(b"this is not a jpeg")
  with pytest.raises(DatasetError, match="broken.jpg.*Re-encode or delete"):
    from_config.splits(folder_config(root, val_size=1))


def test_test_classes_must_match_train(tmp_path):
  root = write_image_folder(tmp_path, per_class=(3, 2))
  os.rename(os.path.join(root, "test", CLASSES[0]), os.path.join(root, "test", "other"))
  with pytest.raises(DatasetError, match="differ from the training classes"):
    from_config.splits(folder_config(root, val_size=1))


def test_tfds_source_offline():
  with tfds.testing.mock_data(num_examples=20):
    splits = from_config.splits(ConfigDict(dict(source="tfds", tfds_name="cifar10", tfds_data_dir="",
                                              val_size=5, adapt=False, seed=0, train_limit=0)))
  assert splits.train[0].shape == (15, 32, 32, 3) and splits.num_classes == 10
  assert len(splits.test[1]) == 20


def test_train_dataset_batches(image_folder):
  splits = from_config.splits(folder_config(image_folder))
  x, y = next(iter(views.train_dataset(*splits.train, batch_size=16)))
  assert x.shape == (16, 16, 16, 3) and x.dtype == tf.float32 and y.shape == (16,)


def test_colour_to_one_channel_is_luma_and_said():
  colour = np.array([[[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]]], np.uint8)
  with mock.patch.object(data.logging, "info") as info:
    grey = data.to_channels(colour, 1)
  expected = np.round(colour.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
  np.testing.assert_array_equal(grey[..., 0], expected)
  assert "colour images converted to greyscale" in info.call_args[0][0]
  with mock.patch.object(data.logging, "info") as info:
    data.to_channels(np.repeat(expected[..., None], 3, axis=-1), 1)  # grey stored as RGB
  info.assert_not_called()
