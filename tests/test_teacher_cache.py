"""Cached teacher logits: computing, saving, loading, the checks, and the distill stage using them."""

import os

import numpy as np
import pytest
import tf_keras

from configs import cifar10_quick
from tfkd import from_config, losses, models, pipeline, teacher_cache, training, views
from tfkd.errors import ConfigError, DatasetError


def small_resnet(name, classes=3, filters=(4, 8, 8)):
  return models.resnet(8, classes, (16, 16, 3), filters=filters,
                       normalization=([100.0] * 3, [900.0] * 3), name=name)


def test_compute_teacher_logits_averages_weighted_teachers():
  x = np.random.default_rng(0).integers(0, 255, (20, 16, 16, 3)).astype(np.uint8)
  first, second = small_resnet("first"), small_resnet("second", filters=(8, 8, 8))
  got = teacher_cache.compute_teacher_logits([first, second], x, [1.0, 3.0], batch_size=8)
  pixels = x.astype(np.float32)
  expected = 0.25 * first.predict(pixels, verbose=0) + 0.75 * second.predict(pixels, verbose=0)
  assert got.shape == (20, 3) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_saved_logits_load_back(tmp_path):
  logits = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
  path = str(tmp_path / "logits.npy")
  teacher_cache.save_teacher_logits(path, logits)
  np.testing.assert_array_equal(teacher_cache.load_teacher_logits(path, 10, 4), logits[None])
  assert not os.path.exists(path + ".partial")


@pytest.mark.parametrize("array, match", [
    (np.zeros((9, 4)), "has 9 rows but the training split has 10 examples"),
    (np.zeros((10, 5)), "has 5 columns but the dataset has 4 classes"),
    (np.zeros((2, 10, 4, 1)), r"shape \(2, 10, 4, 1\), not \[examples, classes\]"),
    (np.zeros((2, 9, 4)), "has 9 rows but the training split has 10 examples"),
    (np.full((10, 4), np.nan), "NaN or infinite"),
])
def test_bad_logits_files_are_refused(tmp_path, array, match):
  path = str(tmp_path / "logits.npy")
  np.save(path, array)
  with pytest.raises(DatasetError, match=match):
    teacher_cache.load_teacher_logits(path, 10, 4)


def test_missing_or_unreadable_logits_files_are_refused(tmp_path):
  with pytest.raises(DatasetError, match="does not exist.*one row of logits per training example"):
    teacher_cache.load_teacher_logits(str(tmp_path / "none.npy"), 10, 4)
  path = tmp_path / "text.npy"
  path.write_text("not numpy")
  with pytest.raises(DatasetError, match="not a readable .npy array"):
    teacher_cache.load_teacher_logits(str(path), 10, 4)


def test_caching_is_refused_with_layer_losses_and_misaligned_logits():
  teacher_cache.check_cacheable([losses.LogitsDistillation()])   # logits only: fine
  with pytest.raises(ValueError, match=r"\['FeatureDistillation'\] read teacher layers"):
    teacher_cache.check_cacheable([losses.LogitsDistillation(),
                                   losses.FeatureDistillation("stage3", "stage3")])
  with pytest.raises(ValueError, match=r"teacher_logits of shape \(1, 3, 3\) for 4 training examples"):
    views.train_dataset(np.zeros((4, 2)), np.zeros(4), 2, augment=False,
                        teacher_logits=np.zeros((1, 3, 3)))


def test_a_logits_file_of_unaugmented_inputs_is_refused_for_augmented_training(tmp_path):
  path = str(tmp_path / "logits.npy")
  np.save(path, np.zeros((10, 4), np.float32))
  assert teacher_cache.load_teacher_logits(path, 10, 4).shape == (1, 10, 4)
  with pytest.raises(DatasetError, match="un-augmented inputs.*data.augment=False"):
    teacher_cache.load_teacher_logits(path, 10, 4, augmented=True)
  np.save(path, np.zeros((3, 10, 4), np.float32))   # 3 epochs of views
  assert teacher_cache.load_teacher_logits(path, 10, 4, augmented=True).shape == (3, 10, 4)


def test_cached_batches_keep_logits_with_their_examples():
  n = 40
  x = np.repeat(np.arange(n, dtype=np.float32)[:, None], 2, axis=1)   # row i holds i
  y = np.arange(n) % 3
  logits = np.stack([np.arange(n) * 10.0, -np.arange(n), np.zeros(n)], axis=1)
  seen = []
  batches = views.train_dataset(x, y, 8, augment=False, seed=3, teacher_logits=logits[None])
  for (features, batch_logits), labels in batches.take(n // 8):   # one epoch
    index = features.numpy()[:, 0].astype(int)
    np.testing.assert_array_equal(batch_logits.numpy(), logits[index])
    np.testing.assert_array_equal(labels.numpy(), y[index])
    seen += index.tolist()
  assert sorted(seen) == list(range(n)) and seen != list(range(n))   # all of them, shuffled


def test_label_agreement():
  logits = np.eye(3)[[0, 1, 2, 0]]
  assert teacher_cache.label_agreement(logits, np.array([0, 1, 0, -1])) == pytest.approx(2 / 3)


# The distill stage with cached logits.

def tiny_config(path):
  config = cifar10_quick.get_config()
  config.data.path = path
  config.data.image_size = (16, 16)
  config.data.val_size = 12
  config.data.augment = False
  config.teacher.model = "resnet8"
  config.teacher.epochs = 1
  config.train.epochs = 1
  config.train.batch_size = 16
  config.stages = ("teacher", "distill")
  config.distill.check_teacher = False  # a 1-epoch teacher's BatchNorm has not settled
  return config


def test_distill_stage_caches_the_ensemble_of_teachers(image_folder, tmp_path):
  config = tiny_config(image_folder)
  extra = str(tmp_path / "extra.keras")
  splits = from_config.splits(config.data)
  second = models.build_model("ds_cnn", 3, (16, 16, 3), normalization=splits.channel_stats())
  training.save_model_atomic(second, extra)
  config.distill.extra_teachers = (extra,)
  config.distill.teacher_weights = (1.0, 3.0)
  config.distill.cached_teacher = True
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)

  assert os.path.exists(os.path.join(workdir, "distill", "model.keras"))
  # No augmentation here, so the cached views are the training images themselves (float16).
  cached = np.load(os.path.join(workdir, "teacher_views", "epoch_00000.npz"))["logits"]
  train_x = splits.train[0].astype(np.float32)
  first = tf_keras.models.load_model(os.path.join(workdir, "teacher", "model.keras"))
  expected = 0.25 * first.predict(train_x, verbose=0) + 0.75 * second.predict(train_x, verbose=0)
  np.testing.assert_allclose(cached.astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_distill_stage_learns_from_a_logits_file_without_a_teacher(image_folder, tmp_path):
  config = tiny_config(image_folder)
  splits = from_config.splits(config.data)
  path = str(tmp_path / "logits.npy")
  np.save(path, 5.0 * np.eye(3)[splits.train[1]])   # e.g. written by another framework
  config.distill.teacher_logits_path = path
  config.stages = ("distill",)
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)
  assert os.path.exists(os.path.join(workdir, "distill", "model.keras"))
  assert not os.path.exists(os.path.join(workdir, "teacher"))


@pytest.mark.parametrize("change, error, match", [
    ({"data.augment": True}, DatasetError, "un-augmented inputs"),
    ({"distill.method": "soft+features"}, ConfigError, "read teacher layers"),
    ({"rows": 7}, DatasetError, "has 7 rows but the training split has"),
])
def test_distill_stage_refuses_invalid_caching(image_folder, tmp_path, change, error, match):
  config = tiny_config(image_folder)
  splits = from_config.splits(config.data)
  rows = change.get("rows", len(splits.train[1]))
  path = str(tmp_path / "logits.npy")
  np.save(path, np.zeros((rows, 3), np.float32))
  config.distill.teacher_logits_path = path
  config.stages = ("distill",)
  config.data.augment = change.get("data.augment", False)
  config.distill.method = change.get("distill.method", "soft")
  with pytest.raises(error, match=match):
    pipeline.run_pipeline(config, str(tmp_path / "run"))
