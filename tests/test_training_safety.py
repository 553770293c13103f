"""No silent wrong result: a diverged stage fails, teachers are checked (softmax, chance, BatchNorm),
`teacher.path` is named in the report, greyscale and small data are read as they are."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bench.synthetic_images import write_folder
from configs import cifar10_quick
from tests.conftest import write_image_folder
from tfkd import from_config, pipeline, report_stage, small_data, teacher_checks, training
from tfkd.errors import DatasetError, TeacherError, TrainingError


class PoisonWeights(tf_keras.callbacks.Callback):
  """Sets the first weight to NaN when epoch `epoch` begins, as a diverging update would."""

  def __init__(self, epoch):
    super().__init__()
    self.epoch = epoch

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == self.epoch:
      weights = self.model.get_weights()
      weights[0] = np.full_like(weights[0], np.nan)
      self.model.set_weights(weights)


def test_a_non_finite_loss_fails_the_stage_and_keeps_the_last_good_epoch(tmp_path):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 2, 32)
  model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
  model.compile("sgd", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  stage_dir = str(tmp_path / "teacher")
  with pytest.raises(TrainingError, match=r"\[teacher\] the training loss became nan in epoch 2/3"
                                          r".*learning rate.*bad data.*resumes from it"):
    training.fit_resumable(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(8), None, 3,
                           stage_dir, callbacks=[PoisonWeights(1)])
  assert training.resume_epoch(stage_dir) == 1           # the backup holds epoch 1, not the NaN one
  assert training.trained_epochs(stage_dir) == 1          # and the history has no NaN row


def test_a_diverging_teacher_is_not_saved_as_done(image_folder, tmp_path):
  config = tiny_config(image_folder)
  config.stages, config.train.learning_rate = ("teacher",), 1e30
  with pytest.raises(TrainingError, match=r"\[teacher\] the training loss became .* in epoch 1/1.*"
                                          r"No epoch finished"):
    pipeline.run_pipeline(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "teacher" / "model.keras")


def tiny_config(path):
  config = cifar10_quick.get_config()
  config.data.path, config.data.val_size = path, 12
  config.teacher.model, config.teacher.epochs = "resnet8", 1
  config.train.epochs, config.train.batch_size = 1, 16
  config.student.kwargs.filters = (4, 8, 8)
  return config


# Teachers: crafted so the right answer is known. The image folder's class is its brightest
# channel, so channel means → Dense(identity) is a perfect classifier.

def channel_teacher(activation=None, kernel=np.eye(3), bias=np.zeros(3), name="channels"):
  inputs = tf_keras.Input((16, 16, 3))
  pooled = tf_keras.layers.GlobalAveragePooling2D()(inputs)
  dense = tf_keras.layers.Dense(3, activation=activation, name="predictions")
  outputs = dense(pooled)
  dense.set_weights([np.asarray(kernel, np.float32) / 50, np.asarray(bias, np.float32)])
  return tf_keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  return rng.integers(0, 255, (16, 16, 16, 3)).astype(np.float32)


def test_softmax_teachers_give_back_their_logits(images):
  plain = channel_teacher()
  logits = plain.predict(images, verbose=0)
  same, how = teacher_checks.as_logits(plain, images)
  assert same is plain and how is None
  # Dense(activation="softmax"), as keras.applications ends: the exact logits.
  recovered, how = teacher_checks.as_logits(channel_teacher("softmax"), images)
  np.testing.assert_allclose(recovered.predict(images, verbose=0), logits, rtol=1e-5, atol=1e-5)
  assert "'predictions'" in how and "exact" in how
  # A Softmax layer: its input.
  layered = tf_keras.Model(plain.inputs, tf_keras.layers.Softmax()(plain.outputs[0]))
  recovered, how = teacher_checks.as_logits(layered, images)
  np.testing.assert_allclose(recovered.predict(images, verbose=0), logits, rtol=1e-5, atol=1e-5)
  # Probabilities from anywhere else: log-probabilities, the logits up to a constant per row.
  opaque = tf_keras.Model(plain.inputs, tf_keras.layers.Lambda(tf.nn.softmax)(plain.outputs[0]))
  recovered, how = teacher_checks.as_logits(opaque, images)
  shift = recovered.predict(images, verbose=0) - logits
  np.testing.assert_allclose(shift, shift[:, :1].repeat(3, axis=1), atol=1e-4)
  assert "sum to 1" in how


def bn_teacher(moving_mean):
  """Flatten → BatchNorm → Dense(identity on pixels 0-2): right with batch statistics."""
  inputs = tf_keras.Input((1, 1, 3))
  normalized = tf_keras.layers.BatchNormalization(name="bn")(tf_keras.layers.Flatten()(inputs))
  dense = tf_keras.layers.Dense(3, name="logits")
  model = tf_keras.Model(inputs, dense(normalized))
  dense.set_weights([np.eye(3, dtype=np.float32), np.zeros(3, np.float32)])
  bn = model.get_layer("bn")
  bn.set_weights([np.ones(3), np.zeros(3), np.asarray(moving_mean, np.float32), np.ones(3)])
  return model


def bright_pixel_data(count=60):
  """Class k: pixel k at 200, the others at 100."""
  y = np.arange(count) % 3
  x = np.full((count, 1, 1, 3), 100, np.uint8)
  x[np.arange(count), 0, 0, y] = 200
  return x, y


def test_a_teacher_with_unsettled_batchnorm_is_refused_and_left_unchanged():
  x, y = bright_pixel_data()
  unsettled = bn_teacher(moving_mean=[0, 150, 300])  # inference mode: always class 0
  before = unsettled.get_weights()
  with pytest.raises(TeacherError, match=r"100.0% on training images in training mode but 33.3% "
                                         r"in inference mode.*BatchNorm.*train.batch_size"):
    teacher_checks.check_teacher(unsettled, "t.keras", 3, x, y)
  for a, b in zip(before, unsettled.get_weights()):
    np.testing.assert_array_equal(a, b)  # the training-mode pass left the moving statistics
  settled = bn_teacher(moving_mean=x.reshape(-1, 3).mean(0))
  measured = teacher_checks.check_teacher(settled, "t.keras", 3, x, y, x[:30], y[:30])
  assert measured["accuracy"] == 1.0 and measured["inference_mode_accuracy"] == 1.0


def test_a_teacher_at_chance_or_for_other_data_is_refused():
  x, y = bright_pixel_data()
  constant = bn_teacher(moving_mean=[0, 0, 0])
  constant.get_layer("logits").set_weights([np.zeros((3, 3), np.float32), np.array([1, 0, 0], np.float32)])
  with pytest.raises(TeacherError, match=r"33.3% on the validation split, near chance \(33.3%"):
    teacher_checks.check_teacher(constant, "t.keras", 3, x, y, x, y)
  with pytest.raises(TeacherError, match=r"predicts 3 classes, but the data .* 4 classes"):
    teacher_checks.check_teacher(constant, "t.keras", 4, x, y)


def test_imported_probabilities_become_logits_and_shuffled_ones_are_refused():
  y = np.arange(30) % 3
  logits = np.eye(3, dtype=np.float32)[y][None] * 5
  probabilities = tf.nn.softmax(logits).numpy()
  recovered, how = teacher_checks.logits_of_file(probabilities, y, "t.npy")
  np.testing.assert_allclose(recovered - recovered.mean(-1, keepdims=True),
                             logits - logits.mean(-1, keepdims=True), atol=1e-4)
  assert "sum to 1" in how
  with pytest.raises(TeacherError, match="agree with 0.0% of the training labels"):
    teacher_checks.logits_of_file(logits, (y + 1) % 3, "t.npy")


def test_teacher_path_distils_from_a_softmax_file_and_names_it(image_folder, tmp_path, caplog):
  caplog.set_level("INFO", logger="absl")
  teacher_file = str(tmp_path / "my_teacher.keras")
  channel_teacher("softmax", name="mine").save(teacher_file)
  config = tiny_config(image_folder)
  config.data.image_size = (16, 16)
  config.teacher.path, config.stages = teacher_file, ("teacher", "distill")
  run = pipeline.run_pipeline(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "teacher")  # no teacher trained
  assert os.path.exists(tmp_path / "run" / "distill" / "model.keras")
  assert "outputs probabilities, not logits" in caplog.text and "accuracy 100.0%" in caplog.text
  assert f"teacher `{teacher_file}` (teacher.path)" in report_stage.distillation_summary(run)
  # A teacher at chance stops the distill stage with the reason.
  channel_teacher("softmax", kernel=np.zeros((3, 3)), bias=[5, 0, 0]).save(teacher_file)
  with pytest.raises(TeacherError, match="near chance"):
    pipeline.run_pipeline(config, str(tmp_path / "run2"))
  assert not os.path.exists(tmp_path / "run2" / "distill" / "model.keras")


# Data as it is: greyscale kept, the images' own size, settings fitted to small data.

def test_greyscale_images_stay_one_channel_at_their_own_size(tmp_path):
  root = write_folder(str(tmp_path / "grey"), train_per_class=2, test_per_class=1, size=8)
  config = cifar10_quick.get_config().data
  config.path, config.val_size = root, 2
  splits = from_config.splits(config)
  assert splits.input_shape == (8, 8, 1) and splits.facts["greyscale"]
  assert not splits.facts["resized"] and splits.facts["sizes"] == [[8, 8]]
  first = sorted(os.listdir(os.path.join(root, "test", "checkerboard")))[0]
  stored = tf.io.decode_png(tf.io.read_file(os.path.join(root, "test", "checkerboard", first))).numpy()
  np.testing.assert_array_equal(splits.test[0][0], stored)  # pixels as stored, not resized
  config.channels = 3
  assert from_config.splits(config).input_shape == (8, 8, 3)
  colour = write_image_folder(tmp_path / "colour", per_class=(3, 1), size=12)
  config.path, config.channels = colour, 0
  assert from_config.splits(config).input_shape == (12, 12, 3)


def test_images_of_several_sizes_need_an_image_size(tmp_path):
  root = write_image_folder(tmp_path / "mixed", per_class=(3, 1), size=12)
  write_image_folder(tmp_path / "mixed_big", per_class=(1, 1), size=16)
  big = os.path.join(tmp_path, "mixed_big", "train", "circle", "0000.jpg")
  os.replace(big, os.path.join(root, "train", "circle", "big.jpg"))
  config = cifar10_quick.get_config().data
  config.path, config.val_size = root, 2
  with pytest.raises(DatasetError, match=r"2 sizes \(height x width: 12x12 .*16x16 .*big.jpg"
                                         r".*set data.image_size"):
    from_config.splits(config)
  config.image_size = (12, 12)
  splits = from_config.splits(config)
  assert splits.input_shape == (12, 12, 3) and splits.facts["resized"]


def test_small_data_rules():
  assert small_data.validation_size(5000, 50000) == (5000, None)
  assert small_data.validation_size(5000, 2000)[0] == 200
  assert small_data.validation_size(0, 100) == (0, None)
  assert small_data.batch_size(128, 50000) == (128, None)
  batch, note = small_data.batch_size(128, 1800)
  assert batch == 32 and "56 steps an epoch, not 14" in note
  assert small_data.batch_size(128, 300)[0] == 16     # never below MIN_BATCH
  assert small_data.batch_size(16, 300) == (16, None)


def test_a_small_dataset_adapts_the_config_and_says_so_in_one_line(tmp_path, caplog):
  caplog.set_level("INFO", logger="absl")
  root = write_folder(str(tmp_path / "grey"), train_per_class=40, test_per_class=1, size=8)
  config = from_config.with_defaults(cifar10_quick.get_config())
  config.data.path = root
  splits = from_config.splits(config.data)
  assert len(splits.val[1]) == 24 and len(splits.train[1]) == 216    # 10% of 240, not 5000
  adapted, notes = from_config.adapted_to_data(config, splits)
  assert adapted.train.batch_size == 16 and adapted.train.learning_rate == pytest.approx(0.1 / 8)
  assert adapted.compress.train.learning_rate == pytest.approx(0.01 / 8)
  assert config.train.batch_size == 128                                 # the input is untouched
  lines = [r.getMessage() for r in caplog.records if "[data] adapted" in r.getMessage()]
  assert len(lines) == 1 and len(notes) == 4 and all(s in lines[0] for s in (
      "data.val_size 5000 → 24", "train.batch_size 128 → 16", "greyscale images kept as 1 channel",
      "random-crop padding 1 px", "data.adapt=False"))
  config.data.adapt = False
  with pytest.raises(DatasetError, match="val_size=5000 leaves no training data"):
    from_config.splits(config.data)
