"""Views keyed by (seed, epoch, index), and the teacher-logit cache built on them: the same view
everywhere, cached-view losses equal to live-teacher losses, fingerprint refusal, resume."""

import os

import numpy as np
import pytest
import tf_keras

from tfkd import losses, models, training, view_cache, views
from tfkd.distiller import Distiller
from tfkd.errors import DatasetError

N, SIZE, CLASSES = 24, 12, 3


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  return rng.integers(0, 255, (N, SIZE, SIZE, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory, images):
  tf_keras.utils.set_random_seed(1)
  model = models.build_model("resnet8", CLASSES, (SIZE, SIZE, 3), filters=(4, 8, 8),
                             normalization=([120.0] * 3, [5000.0] * 3))
  path = str(tmp_path_factory.mktemp("teacher") / "teacher.keras")
  training.save_model_atomic(model, path)
  return path


def one_epoch(dataset, steps):
  """(indices, features) of one epoch of a `views.train_dataset` whose labels are the indices."""
  indices, features = [], []
  for batch_x, batch_y in dataset.take(steps):
    features.append(batch_x[0] if isinstance(batch_x, tuple) else batch_x)
    indices.append(batch_y)
  return np.concatenate(indices), np.concatenate(features)


def test_augmentation_crops_the_padded_image_and_flips(images):
  pad = views.crop_padding(images.shape[1:])
  assert pad == 1  # an eighth of 12 px, at least 1 (4 px at 32x32)
  params = views.view_params(seed=0, epoch=0, num_examples=N, pad=pad)
  out = views.view_images(images, params, range(N)).numpy()
  padded = np.pad(images.astype(np.float32), [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
  for i in range(N):
    row, col, flip = params[i].numpy()
    window = padded[i, row:row + SIZE, col:col + SIZE]
    np.testing.assert_array_equal(out[i], window[:, ::-1] if flip else window)
  assert len({tuple(p) for p in params.numpy()}) > N // 4  # views differ between examples (18 kinds)
  assert views.crop_padding((32, 32)) == 4 and views.crop_padding((8, 8, 1)) == 1


def test_a_view_depends_on_seed_epoch_and_index_only(images):
  """The same example gets the same view in any pipeline: other batch size, another start."""
  labels = np.arange(N)
  small = views.train_dataset(images, labels, batch_size=4, seed=7)
  large = views.train_dataset(images, labels, batch_size=8, seed=7, start_epoch=1)
  epoch0_idx, epoch0 = one_epoch(small, N // 4)
  epoch1_idx, epoch1 = one_epoch(small.skip(N // 4), N // 4)
  resumed_idx, resumed = one_epoch(large, N // 8)
  assert sorted(epoch0_idx) == list(range(N)) and list(epoch0_idx) != list(range(N))
  by_index = lambda idx, x: x[np.argsort(idx)]
  np.testing.assert_array_equal(by_index(epoch1_idx, epoch1), by_index(resumed_idx, resumed))
  assert not np.array_equal(by_index(epoch0_idx, epoch0), by_index(epoch1_idx, epoch1))
  # And the cache's order-by-index views are the same views.
  cache_views = np.concatenate(list(views.epoch_views(images, seed=7, epoch=1, augment=True,
                                                      batch_size=10)))
  np.testing.assert_array_equal(cache_views, by_index(epoch1_idx, epoch1))
  other_seed = np.concatenate(list(views.epoch_views(images, 8, 1, True)))
  assert not np.array_equal(other_seed, cache_views)


def test_a_view_seed_shares_the_views_between_seeds(images):
  """Seeds 0 and 1 with view_seed 5: each example's view is seed 5's, the orders differ."""
  labels = np.arange(N)
  by_index = lambda idx, x: x[np.argsort(idx)]
  shared = np.concatenate(list(views.epoch_views(images, seed=5, epoch=1, augment=True)))
  orders = []
  for seed in (0, 1):
    dataset = views.train_dataset(images, labels, batch_size=4, seed=seed, view_seed=5)
    idx, x = one_epoch(dataset.skip(N // 4), N // 4)   # epoch 1
    np.testing.assert_array_equal(by_index(idx, x), shared)
    orders.append(list(idx))
  assert orders[0] != orders[1]
  own_views = one_epoch(views.train_dataset(images, labels, 4, seed=1).skip(N // 4), N // 4)
  assert not np.array_equal(by_index(*own_views), shared)  # without view_seed: seed 1's views


def build_cache(cache_dir, teacher_file, images, epochs=2, seed=3, storage="float16", on_epoch=None):
  fingerprint = view_cache.make_fingerprint([teacher_file], None, images, np.arange(N) % CLASSES,
                                            augment=True, seed=seed, epochs=epochs,
                                            storage=storage, top_k=2 if storage == "top_k" else 0)
  teacher = tf_keras.models.load_model(teacher_file)
  view_cache.build(cache_dir, fingerprint, [teacher], images, batch_size=10, on_epoch=on_epoch)
  return fingerprint


def test_cached_view_loss_equals_the_live_teacher_loss(tmp_path, teacher_file, images):
  labels = np.arange(N) % CLASSES
  fingerprint = build_cache(str(tmp_path), teacher_file, images, epochs=2, seed=3)
  logits = view_cache.load(str(tmp_path), fingerprint, CLASSES)
  assert logits.shape == (2, N, CLASSES) and logits.dtype == np.float16
  teacher = tf_keras.models.load_model(teacher_file)
  student = models.build_model("resnet8", CLASSES, (SIZE, SIZE, 3), filters=(4, 4, 4),
                               normalization=([120.0] * 3, [5000.0] * 3))
  live = Distiller(teacher, student, losses.LogitsDistillation(4.0), student_loss_weight=0.2)
  cached = Distiller(None, student, losses.LogitsDistillation(4.0), student_loss_weight=0.2)
  for model in (live, cached):
    model.compile(metrics=["accuracy"])
  # Epochs 2 and 3 cycle the 2 cached epochs; each batch's logits belong to its own views.
  batches = views.train_dataset(images, labels, 8, seed=3, start_epoch=2, teacher_logits=logits)
  for (x, batch_logits), y in batches.take(2 * N // 8):
    with_cache = cached.test_on_batch((x, batch_logits), y, return_dict=True)
    with_teacher = live.test_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(with_cache["distillation_loss"], with_teacher["distillation_loss"],
                               rtol=2e-3, atol=1e-4)   # float16 storage
    np.testing.assert_allclose(with_cache["loss"], with_teacher["loss"], rtol=2e-3, atol=1e-4)


def test_a_cache_made_for_something_else_is_refused(tmp_path, teacher_file, images):
  build_cache(str(tmp_path), teacher_file, images, epochs=1, seed=3)
  other = view_cache.make_fingerprint([teacher_file], None, images, np.arange(N) % CLASSES,
                                      augment=True, seed=4, epochs=1)
  with pytest.raises(DatasetError, match=r"other \['seed'\].*stored: \[3\].*delete"):
    view_cache.load(str(tmp_path), other, CLASSES)
  changed = images.copy()
  changed[0, 0, 0, 0] ^= 1   # one pixel of the training data
  other = view_cache.make_fingerprint([teacher_file], None, changed, np.arange(N) % CLASSES,
                                      augment=True, seed=3, epochs=1)
  with pytest.raises(DatasetError, match=r"other \['data_sha256'\]"):
    view_cache.load(str(tmp_path), other, CLASSES)
  assert not view_cache.is_complete(str(tmp_path), other)


def test_a_cache_of_more_epochs_serves_a_run_asking_for_fewer(tmp_path, teacher_file, images):
  """E = 1 from a 2-epoch cache: its first epoch, nothing labelled again; E = 3 is refused."""
  two = view_cache.load(str(tmp_path / "a"), build_cache(str(tmp_path / "a"), teacher_file, images),
                        CLASSES)
  stamps = {f: os.path.getmtime(tmp_path / "a" / f) for f in os.listdir(tmp_path / "a")}
  fewer = view_cache.make_fingerprint([teacher_file], None, images, np.arange(N) % CLASSES,
                                      augment=True, seed=3, epochs=1)
  assert view_cache.is_complete(str(tmp_path / "a"), fewer)
  view_cache.build(str(tmp_path / "a"), fewer, [tf_keras.models.load_model(teacher_file)], images)
  np.testing.assert_array_equal(view_cache.load(str(tmp_path / "a"), fewer, CLASSES), two[:1])
  assert {f: os.path.getmtime(tmp_path / "a" / f) for f in os.listdir(tmp_path / "a")} == stamps
  more = dict(fewer, epochs=3)
  assert not view_cache.is_complete(str(tmp_path / "a"), more)
  with pytest.raises(DatasetError, match=r"other \['epochs'\].*stored: \[2\]"):
    view_cache.load(str(tmp_path / "a"), more, CLASSES)


def test_an_interrupted_cache_build_resumes_where_it_stopped(tmp_path, teacher_file, images):
  def stop_after_first(epoch):
    if epoch == 0:
      raise KeyboardInterrupt
  cache_dir = str(tmp_path / "cache")
  with pytest.raises(KeyboardInterrupt):
    build_cache(cache_dir, teacher_file, images, epochs=3, on_epoch=stop_after_first)
  assert sorted(os.listdir(cache_dir)) == ["epoch_00000.npz", "fingerprint.json"]
  done = []
  fingerprint = build_cache(cache_dir, teacher_file, images, epochs=3, on_epoch=done.append)
  assert done == [1, 2]   # epoch 0 was not labelled again
  fresh_dir = str(tmp_path / "fresh")
  build_cache(fresh_dir, teacher_file, images, epochs=3)
  np.testing.assert_array_equal(view_cache.load(cache_dir, fingerprint, CLASSES),
                                view_cache.load(fresh_dir, fingerprint, CLASSES))
  assert not [f for f in os.listdir(cache_dir) if "partial" in f]


def test_top_k_storage_keeps_the_teachers_top_classes(tmp_path, teacher_file, images):
  fingerprint = build_cache(str(tmp_path / "topk"), teacher_file, images, epochs=1, storage="top_k")
  full_fp = build_cache(str(tmp_path / "full"), teacher_file, images, epochs=1)
  top = view_cache.load(str(tmp_path / "topk"), fingerprint, CLASSES)[0].astype(np.float32)
  full = view_cache.load(str(tmp_path / "full"), full_fp, CLASSES)[0].astype(np.float32)
  softmax = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
  p_top, p_full = softmax(top), softmax(full)
  best = np.argsort(-p_full, axis=-1)[:, :2]
  np.testing.assert_allclose(np.take_along_axis(p_top, best, -1),
                             np.take_along_axis(p_full, best, -1), atol=3e-3)
  # Read back as log-probabilities: the rest of the mass spread evenly over the other classes.
  np.testing.assert_allclose(np.exp(top).sum(-1), 1.0, atol=3e-3)
  others = np.ones_like(p_full, bool)
  np.put_along_axis(others, best, False, -1)
  rest = 1.0 - np.take_along_axis(p_full, best, -1).sum(-1)
  np.testing.assert_allclose(np.exp(top)[others].reshape(len(top), -1),
                             np.repeat(rest[:, None] / (CLASSES - 2), CLASSES - 2, 1), atol=3e-3)


def test_logits_from_another_framework_fill_the_cache(tmp_path, images):
  path = str(tmp_path / "logits.npy")
  logits = np.random.default_rng(0).normal(size=(2, N, CLASSES)).astype(np.float32)
  np.save(path, logits)
  fingerprint = view_cache.make_fingerprint([path], None, images, np.arange(N) % CLASSES,
                                            augment=True, seed=0, epochs=2)
  view_cache.import_logits(str(tmp_path / "cache"), fingerprint, logits)
  np.testing.assert_allclose(view_cache.load(str(tmp_path / "cache"), fingerprint, CLASSES),
                             logits, rtol=1e-3, atol=1e-3)
  with pytest.raises(DatasetError, match=r"do not fit a cache of 2 epochs of 24 views"):
    view_cache.import_logits(str(tmp_path / "other"), fingerprint, logits[:1])


def test_the_pipeline_labels_views_once_and_every_distilling_stage_reads_them(image_folder, tmp_path):
  from configs import cifar10_quick
  from tfkd import pipeline
  config = cifar10_quick.get_config()
  config.data.path, config.data.image_size, config.data.val_size = image_folder, (16, 16), 12
  config.teacher.model, config.teacher.epochs = "resnet8", 1
  config.train.epochs, config.train.batch_size = 3, 16
  config.data.augment = True
  config.distill.cached_teacher, config.distill.cache_epochs = True, 2
  config.distill.check_teacher = False  # a 1-epoch teacher's BatchNorm has not settled
  config.stages = ("teacher", "teacher_views", "distill")
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)
  cache_dir = os.path.join(workdir, "teacher_views")
  assert sorted(os.listdir(cache_dir)) == ["epoch_00000.npz", "epoch_00001.npz", "fingerprint.json"]
  stamps = {f: os.path.getmtime(os.path.join(cache_dir, f)) for f in os.listdir(cache_dir)}
  assert os.path.exists(os.path.join(workdir, "distill", "model.keras"))
  # Another distillation of the same run (e.g. a new seed of the student) reuses the cache.
  training_dir = os.path.join(workdir, "distill")
  for name in os.listdir(training_dir):
    os.remove(os.path.join(training_dir, name))
  config.stages = ("distill",)
  pipeline.run_pipeline(config, workdir)
  assert {f: os.path.getmtime(os.path.join(cache_dir, f)) for f in os.listdir(cache_dir)} == stamps
  # A run asking for another number of cached epochs is refused, not silently served.
  config.distill.cache_epochs = 3
  os.remove(os.path.join(training_dir, "model.keras"))
  with pytest.raises(DatasetError, match=r"other \['epochs'\]"):
    pipeline.run_pipeline(config, workdir)
  # A run of another seed with the same views, in another workdir, reads this cache: the
  # teacher labels nothing again, and the logits label that run's batches.
  config.distill.cache_epochs, config.seed = 2, 1
  config.data.view_seed, config.distill.cache_dir = 0, cache_dir
  config.teacher.path = os.path.join(workdir, "teacher", "model.keras")
  config.stages = ("teacher_views",)
  other = str(tmp_path / "seed1")
  run = pipeline.run_pipeline(config, other)
  assert {f: os.path.getmtime(os.path.join(cache_dir, f)) for f in os.listdir(cache_dir)} == stamps
  assert not os.path.exists(os.path.join(other, "teacher_views"))
  teacher = tf_keras.models.load_model(config.teacher.path)
  train, _ = run.datasets(16, "distill", distillation=True, teacher_logits=run.teacher_view_logits())
  (x, cached), _ = next(iter(train))
  np.testing.assert_allclose(cached, teacher(x, training=False), atol=0.02, rtol=0.01)
  # Without the shared view seed, seed 1's views are not the cached ones: refused.
  config.data.view_seed = -1
  with pytest.raises(DatasetError, match=r"other \['seed'\]"):
    pipeline.run_pipeline(config, other)


def test_a_batch_larger_than_the_training_split_is_a_config_error(image_folder, tmp_path):
  from configs import cifar10_quick
  from tfkd import pipeline
  from tfkd.errors import ConfigError
  config = cifar10_quick.get_config()
  config.data.path, config.data.image_size, config.data.val_size = image_folder, (16, 16), 12
  config.train.batch_size, config.stages = 512, ("scratch",)
  config.data.adapt = False  # else the batch shrinks to fit (tests/test_first_run.py)
  with pytest.raises(ConfigError, match=r"config.train: batch_size=512 is larger than the 108"):
    pipeline.run_pipeline(config, str(tmp_path / "run"))
