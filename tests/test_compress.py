"""Pruning, 2:4 sparsity, QAT and prune-preserving QAT under distillation, measured in the .tflite.

The measuring itself (`tflite.sparsity`) is tested on hand-pruned kernels in
tests/test_tflite_sparsity.py; here it checks that tfmot's zeros reach the file.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from configs import cifar10_compress
from tests.conftest import make_image
from tests.test_tflite_sparsity import assert_exported_2_by_4, assert_exported_sparsity
from tfkd import compress, losses, models, pipeline, training
from tfkd.distiller import Distiller
from tfkd.errors import ConfigError
from tflite import convert, graph, interpreter, sparsity

SHAPE, CLASSES, BATCH = (16, 16, 3), 3, 32
NORMALIZATION = ([100.0] * 3, [900.0] * 3)


def images(n, seed):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, CLASSES, n)
  return np.stack([make_image(label, rng) for label in y]).astype(np.float32), y


def resnet(name, filters=(8, 8, 16)):
  return models.resnet(8, CLASSES, SHAPE, filters=filters, normalization=NORMALIZATION, name=name)


def trained(model, x, y, epochs):
  model.compile(tf_keras.optimizers.Adam(0.01),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
  model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0)
  return model


@pytest.fixture(scope="module")
def setup():
  """Tiny data, a trained teacher and a trained (dense) student."""
  tf_keras.utils.set_random_seed(0)
  x, y = images(128, seed=0)
  test_x, test_y = images(64, seed=1)
  teacher = trained(resnet("teacher", filters=(8, 16, 16)), x, y, epochs=3)
  student = trained(resnet("student"), x, y, epochs=3)
  return dict(x=x, y=y, test_x=test_x, test_y=test_y, teacher=teacher, student=student)


def distill(teacher, student, x, y, epochs, callbacks=(), learning_rate=0.01):
  distiller = Distiller(teacher, student, losses.LogitsDistillation(2.0), student_loss_weight=0.5)
  distiller.compile(tf_keras.optimizers.SGD(learning_rate, momentum=0.9), metrics=["accuracy"])
  distiller.fit(x, y, batch_size=BATCH, epochs=epochs, callbacks=list(callbacks), verbose=0)
  return distiller


class SparsityPerEpoch(tf_keras.callbacks.Callback):
  """Records the pruned student's kernel sparsity and pruning step after each epoch."""

  def __init__(self, student):
    super().__init__()
    self.student, self.sparsity, self.steps = student, [], []

  def on_epoch_end(self, epoch, logs=None):
    self.sparsity.append(compress.keras_sparsity(self.student))
    wrapper = next(l for l in self.student.layers if l.name.startswith("prune_low_magnitude"))
    self.steps.append(int(wrapper.pruning_step.numpy()))


def polynomial_sparsity(step, target, end_step, frequency):
  """tfmot's PolynomialDecay (from 0, power 3) at the last mask update at or before `step`."""
  updated = min(end_step, frequency * (step // frequency))
  return target * (1 - (1 - updated / end_step) ** 3)


@pytest.fixture(scope="module")
def dense_int8(setup):
  return convert.convert(setup["student"], "int8", setup["x"][:32])


@pytest.fixture(scope="module")
def pruned(setup):
  """The student pruned to 75% inside a Distiller: 4 epochs of 4 steps, target at step 12."""
  schedule = compress.pruning_schedule(0.75, total_steps=16, end_fraction=0.75, frequency=2)
  student = compress.prune(setup["student"], schedule)
  callback = compress.pruning_callbacks()[0]
  record = SparsityPerEpoch(student)
  distill(setup["teacher"], student, setup["x"], setup["y"], epochs=4, callbacks=[callback, record])
  stripped = compress.strip_pruning(student)
  int8 = convert.convert(stripped, "int8", setup["x"][:32])
  return dict(student=student, callback=callback, record=record, stripped=stripped, int8=int8)


def test_pruning_callback_finds_the_student_inside_the_distiller(pruned):
  conv_and_dense = [l for l in pruned["stripped"].layers
                    if isinstance(l, (tf_keras.layers.Conv2D, tf_keras.layers.Dense))]
  assert len(pruned["callback"].prunable_layers) == len(conv_and_dense) == 10
  # The step advanced once per batch (it stays -1 if the callback never found the layers).
  assert pruned["record"].steps == [4, 8, 12, 16]
  expected = [polynomial_sparsity(s, 0.75, end_step=12, frequency=2) for s in (4, 8, 12, 16)]
  np.testing.assert_allclose(pruned["record"].sparsity, expected, atol=0.01)
  assert pruned["record"].sparsity[0] < pruned["record"].sparsity[1] < pruned["record"].sparsity[2]


def test_input_model_is_not_changed_by_pruning(setup, pruned):
  kernel = setup["student"].get_layer("stem_conv").kernel.numpy()
  assert np.mean(kernel == 0) < 0.05
  assert not any("prune" in l.name for l in pruned["stripped"].layers)


def test_exported_tflite_has_the_configured_sparsity(pruned, dense_int8):
  assert_exported_sparsity(pruned["int8"], pruned["stripped"], dense_int8)


def test_2_by_4_pattern_is_in_the_exported_kernels(setup, dense_int8):
  student = compress.prune(setup["student"], m_by_n=(2, 4))
  distill(setup["teacher"], student, setup["x"][:64], setup["y"][:64], epochs=1,
          callbacks=compress.pruning_callbacks())
  int8 = convert.convert(compress.strip_pruning(student), "int8", setup["x"][:32])
  assert_exported_2_by_4(int8, dense_int8)


def output_range(wrapper):
  variables = wrapper._output_quantizer_vars  # pylint: disable=protected-access
  return float(variables["min_var"].numpy()), float(variables["max_var"].numpy())


def test_qat_ranges_start_calibrated(setup):
  student, x = setup["student"], setup["x"][:64]
  assert output_range(compress.quantize(student).get_layer("s1b1_b_bn")) == (-6.0, 6.0)  # tfmot's
  qat = compress.quantize(student, calibration_data=x)
  for name in ("stem_relu", "s1b1_b_bn", "s3b1_out", "features"):
    float_output = tf_keras.Model(student.inputs, student.get_layer(name).output).predict(x, verbose=0)
    expected = (min(float_output.min(), 0.0), max(float_output.max(), 0.0))
    np.testing.assert_allclose(output_range(qat.get_layer(name)), expected, rtol=1e-5, atol=1e-6)
  logits = qat.get_layer("logits")._quantize_activations[0]._post_activation_vars  # pylint: disable=protected-access
  expected = student.predict(x, verbose=0)
  assert float(logits["max_var"].numpy()) == pytest.approx(max(expected.max(), 0.0), rel=1e-5)


def test_qat_int8_model_matches_the_keras_qat_model(setup, dense_int8):
  qat = compress.quantize(setup["student"], calibration_data=setup["x"][:64])
  assert [l.name for l in qat.layers[:3]] == ["pixels", "normalize", "stem_conv"]
  distill(setup["teacher"], qat, setup["x"], setup["y"], epochs=1, learning_rate=0.001)
  int8 = convert.convert(qat, "int8", setup["x"][:32])
  # The same integer graph as post-training int8: no float round trip at the input.
  assert graph.read(int8).op_names() == graph.read(dense_int8).op_names()
  assert interpreter.load(int8).get_input_details()[0]["dtype"] == np.int8
  keras_logits = qat.predict(setup["test_x"], verbose=0)
  int8_logits = interpreter.predict(int8, setup["test_x"])
  assert np.mean(keras_logits.argmax(1) == int8_logits.argmax(1)) >= 0.95
  keras_accuracy = np.mean(keras_logits.argmax(1) == setup["test_y"])
  assert np.mean(int8_logits.argmax(1) == setup["test_y"]) == pytest.approx(keras_accuracy, abs=0.04)
  assert np.abs(keras_logits - int8_logits).mean() < 0.05 * np.abs(keras_logits).max()


def test_prune_preserving_qat_keeps_the_zeros(setup, pruned, tmp_path):
  results = {}
  for preserve in (True, False):
    qat = compress.quantize(pruned["stripped"], preserve_sparsity=preserve)
    distill(setup["teacher"], qat, setup["x"], setup["y"], epochs=1, learning_rate=0.05)
    results[preserve] = sparsity.tflite_sparsity(convert.convert(qat, "int8", setup["x"][:32]))
    if preserve:
      path = str(tmp_path / "prune_qat.h5")
      with compress.quantize_scope():
        training.save_model_atomic(qat, path)
      reloaded = compress.load_model(path)
      np.testing.assert_allclose(reloaded.predict(setup["test_x"], verbose=0),
                                 qat.predict(setup["test_x"], verbose=0), atol=1e-5)
  assert results[True]["sparsity"] == pytest.approx(0.75, abs=0.02)
  # Plain QAT lets the gradients refill zeros (those that move less than half an int8
  # step still round back to zero, hence the modest drop after one short epoch).
  assert results[False]["sparsity"] < results[True]["sparsity"] - 0.05


def model_with_prelu():
  inputs = tf_keras.Input(SHAPE)
  x = tf_keras.layers.Normalization(mean=NORMALIZATION[0], variance=NORMALIZATION[1])(inputs)
  x = tf_keras.layers.Conv2D(8, 3, name="conv")(x)
  x = tf_keras.layers.PReLU(name="prelu_a")(x)
  x = tf_keras.layers.Conv2D(8, 3, name="conv2")(x)
  x = tf_keras.layers.PReLU(name="prelu_b")(x)
  x = tf_keras.layers.GlobalAveragePooling2D()(x)
  return tf_keras.Model(inputs, tf_keras.layers.Dense(CLASSES, name="logits")(x), name="prelu_net")


def test_unsupported_layers_are_named():
  model = model_with_prelu()
  schedule = compress.pruning_schedule(0.5, 10)
  with pytest.raises(compress.UnsupportedLayerError,
                     match=r"PReLU\(prelu_a\).*PReLU\(prelu_b\).*compress.unsupported='skip'"):
    compress.prune(model, schedule, unsupported="error")
  pruned = compress.prune(model, schedule, unsupported="skip")
  names = [l.name for l in pruned.layers]
  assert "prune_low_magnitude_conv" in names and "prelu_a" in names and "prelu_b" in names
  with pytest.raises(compress.UnsupportedLayerError,
                     match=r"QAT cannot quantise.*\['PReLU\(prelu_a\)', 'PReLU\(prelu_b\)'\]"):
    compress.quantize(model)


def test_bad_settings_are_refused(setup):
  with pytest.raises(ConfigError, match="'skip' or 'error'"):
    compress.prune(setup["student"], compress.pruning_schedule(0.5, 10), unsupported="ignore")
  with pytest.raises(ConfigError, match=r"sparsity 1.5 is not in \(0, 1\)"):
    compress.pruning_schedule(1.5, 100)
  with pytest.raises(ConfigError, match="needs a schedule"):
    compress.prune(setup["student"])

  class Subclassed(tf_keras.Model):
    def call(self, x):
      return x

  with pytest.raises(compress.UnsupportedLayerError, match="subclassed.*functional API"):
    compress.quantize(Subclassed())


def test_schedule_reaches_its_target_on_a_pruning_step():
  schedule = compress.pruning_schedule(0.75, total_steps=1000, end_fraction=0.7, frequency=100)
  config = schedule.get_config()["config"]
  assert config["end_step"] == 700 and config["frequency"] == 100
  should_prune, sparsity = schedule(np.int64(700))
  assert bool(should_prune) and float(sparsity) == pytest.approx(0.75)
  # Fewer steps than the frequency: the schedule shrinks to fit.
  small = compress.pruning_schedule(0.5, total_steps=10, frequency=100)
  assert small.get_config()["config"]["end_step"] == 7


def training_data(x, y):
  return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True)


class Interrupt(tf_keras.callbacks.Callback):
  def on_epoch_end(self, epoch, logs=None):
    if epoch == 1:
      raise KeyboardInterrupt


def test_pruning_resumes_after_an_interruption(setup, tmp_path):
  """BackupAndRestore brings back masks and the pruning step: the schedule does not restart."""
  stage_dir = str(tmp_path / "prune")
  x, y = setup["x"][:64], setup["y"][:64]  # 2 steps per epoch, 4 epochs

  def fit(extra_callbacks):
    schedule = compress.pruning_schedule(0.75, total_steps=8, end_fraction=1.0, frequency=2)
    student = compress.prune(setup["student"], schedule)
    distiller = Distiller(setup["teacher"], student, losses.LogitsDistillation(2.0))
    distiller.compile(tf_keras.optimizers.SGD(0.01), metrics=["accuracy"])
    data = training_data(x, y)
    training.fit_resumable(distiller, data, None, 4, stage_dir,
                           callbacks=compress.pruning_callbacks() + extra_callbacks)
    return student

  with pytest.raises(KeyboardInterrupt):
    fit([Interrupt()])
  record = []
  student = fit([tf_keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, l: record.append(e))])
  assert record == [2, 3]
  wrapper = student.get_layer("prune_low_magnitude_stem_conv")
  assert int(wrapper.pruning_step.numpy()) == 8
  assert compress.keras_sparsity(student) == pytest.approx(0.75, abs=0.01)


def compress_config(image_folder):
  config = cifar10_compress.get_config()
  config.data.path = image_folder
  config.data.image_size = (16, 16)
  config.data.val_size = 12
  config.data.augment = False
  config.train.batch_size = 16
  config.compress.train.epochs = 1
  config.compress.qat.epochs = 1
  config.compress.prune.frequency = 2
  config.export.representative_size = 20
  config.report.latency_runs = 3
  config.report.latency_spread_s = 0.0
  config.report.warmup_runs = 1
  config.stages = ("prune", "qat", "prune_qat", "report")
  config.distill.check_teacher = False  # the tiny teacher's BatchNorm has not settled
  return config


def test_pipeline_stages_export_measure_and_skip(setup, image_folder, tmp_path):
  workdir = str(tmp_path / "run")
  for stage in ("teacher", "distill"):
    training.save_model_atomic(setup[stage if stage == "teacher" else "student"],
                               os.path.join(workdir, stage, "model.keras"))
  pipeline.run_pipeline(compress_config(image_folder), workdir)
  assert os.path.exists(os.path.join(workdir, "qat", "model.h5"))
  rows = {r["label"]: r for r in json.load(open(os.path.join(workdir, "report.json")))["rows"]}
  assert set(rows) == {"teacher (Keras float)", "distilled student (Keras float)",
                       "pruned student (75% sparse), int8 TFLite (post-training)",
                       "QAT student, int8 TFLite", "pruned (75% sparse) + QAT student, int8 TFLite"}
  for label in ("pruned student (75% sparse), int8 TFLite (post-training)",
                "pruned (75% sparse) + QAT student, int8 TFLite"):
    assert rows[label]["sparsity"] == pytest.approx(0.75, abs=0.02)
  assert rows["QAT student, int8 TFLite"]["sparsity"] < 0.1
  for row in rows.values():
    if row["model"].endswith(".tflite"):
      assert 0 < row["gzip_bytes"] < row["file_bytes"] and row["latency_ms"] > 0
  assert "| gzip bytes | weight sparsity |" in open(os.path.join(workdir, "report.md")).read()

  # Done stages are skipped on a rerun.
  stamps = {s: os.path.getmtime(os.path.join(workdir, "export", f"{s}_int8.tflite"))
            for s in ("prune", "qat", "prune_qat")}
  config = compress_config(image_folder)
  config.stages = ("prune", "qat", "prune_qat")
  pipeline.run_pipeline(config, workdir)
  assert stamps == {s: os.path.getmtime(os.path.join(workdir, "export", f"{s}_int8.tflite"))
                    for s in stamps}


def test_compression_stages_need_their_inputs(image_folder, tmp_path):
  config = compress_config(image_folder)
  config.stages = ("prune_qat",)
  with pytest.raises(ConfigError, match=r"prune/model.keras: run the 'prune' stage first"):
    pipeline.run_pipeline(config, str(tmp_path / "empty"))
  # A config without a compress block takes configs/defaults.py's; the stage still needs its inputs.
  del config["compress"]
  config.stages = ("prune",)
  with pytest.raises(ConfigError, match=r"distill/model.keras: run the 'distill' stage first"):
    pipeline.run_pipeline(config, str(tmp_path / "empty"))
