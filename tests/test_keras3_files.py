"""A teacher saved by Keras 3 (today's `tf.keras`) loads as a tf_keras model that computes the same."""

import os
import sys

import numpy as np
import pytest
import tf_keras

import tfkd  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
import keras
from bench.common import settle_batch_norm
from tests.test_training_safety import tiny_config
from tfkd import (config_checks, from_config, keras3_files, keras3_layers, keras3_teacher, losses,
                  model_files, pipeline, teacher_checks)
from tfkd.distiller import Distiller
from tfkd.errors import ConfigError, ModelFileError, ModelMismatchError
from tflite import convert, files, interpreter

PIXELS = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
PIXELS_32 = np.random.default_rng(9).uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)


def numpy(outputs):
  return keras.ops.convert_to_numpy(outputs)


def branching_model():
  """Shared layer, BatchNorm, Add, Concatenate, a regularizer and a softmax head."""
  inputs = keras.Input((16, 16, 3), name="pixels")
  x = keras.layers.Rescaling(1 / 255.0)(inputs)
  conv = keras.layers.Conv2D(8, 3, padding="same", name="shared",
                             kernel_regularizer=keras.regularizers.L2(1e-4))
  y = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(conv(x)))
  y = keras.layers.Add()([y, keras.layers.Conv2D(8, 1)(x)])
  y = conv(keras.layers.Conv2D(3, 1)(y))  # the shared layer's second call
  y = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(y),
                                  keras.layers.GlobalMaxPooling2D()(y)])
  outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(
      keras.layers.Dropout(0.2)(y))
  model = keras.Model(inputs, outputs, name="branching")
  bn = model.get_layer("bn")  # moving statistics away from 0 and 1, as after training
  bn.set_weights([w + np.random.default_rng(2).uniform(0.5, 1.5, w.shape) for w in bn.get_weights()])
  return model


def test_a_keras3_functional_model_is_rebuilt_with_its_outputs(tmp_path):
  original = branching_model()
  path = str(tmp_path / "teacher.keras")
  original.save(path)
  assert keras3_files.is_keras3_file(path)
  rebuilt = model_files.load_model(path)
  assert isinstance(rebuilt, tf_keras.Model) and not isinstance(rebuilt, keras.Model)
  assert rebuilt.name == "branching" and rebuilt.count_params() == original.count_params()
  np.testing.assert_allclose(rebuilt(PIXELS, training=False).numpy(),
                             numpy(original(PIXELS, training=False)), atol=1e-6)
  assert rebuilt.get_layer("shared").kernel_regularizer.l2 == pytest.approx(1e-4)
  # Its softmax is dropped like a tf_keras model's: the Keras 3 model's own logits.
  logits_model, how = teacher_checks.as_logits(rebuilt, PIXELS)
  assert "'predictions'" in how
  np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits_model(PIXELS))),
                             numpy(original(PIXELS)), atol=1e-6)
  # The check that guards every rebuilt model fails where a weight differs.
  rebuilt.get_layer("bn").set_weights([w + 1 for w in rebuilt.get_layer("bn").get_weights()])
  with pytest.raises(ModelFileError, match="computes other outputs: they differ by up to"):
    keras3_files.check_same_outputs(original, rebuilt, path)
  # A tf_keras file still loads as before.
  tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(2)]).save(path)
  assert not keras3_files.is_keras3_file(path)
  assert isinstance(model_files.load_model(path), tf_keras.Model)


def test_a_keras3_file_is_rebuilt_once_per_process_and_each_reader_gets_its_own_copy(
    tmp_path, monkeypatch):
  rebuilds = []
  real_rebuild = keras3_files.rebuild
  monkeypatch.setattr(keras3_files, "rebuild",
                      lambda original, path: rebuilds.append(path) or real_rebuild(original, path))
  path = str(tmp_path / "teacher.keras")
  branching_model().save(path)
  first, second = model_files.load_model(path), model_files.load_model(path)
  assert len(rebuilds) == 1 and first is not second and second.name == "branching"
  np.testing.assert_array_equal(first(PIXELS).numpy(), second(PIXELS).numpy())
  # The shared layer stays shared in the copy, and changing one copy leaves the other alone.
  assert len(second.get_layer("shared").inbound_nodes) == 2
  before = first(PIXELS).numpy()
  second.get_layer("bn").set_weights([w + 1 for w in second.get_layer("bn").get_weights()])
  np.testing.assert_array_equal(first(PIXELS).numpy(), before)
  assert np.abs(second(PIXELS).numpy() - before).max() > 1e-3
  # A file saved again is read again; a refusal is remembered with its Keras 3 model.
  os.utime(path, ns=(0, 0))
  model_files.load_model(path)
  assert len(rebuilds) == 2
  custom = str(tmp_path / "custom.keras")
  inputs = keras.Input((4,))
  keras.Model(inputs, keras.layers.Dense(2)(Doubling()(inputs))).save(custom)
  for _ in range(2):
    with pytest.raises(keras3_files.NotRebuildable, match="no tf_keras counterpart") as refused:
      model_files.load_model(custom)
    assert isinstance(refused.value.model, keras.Model)
  assert rebuilds.count(custom) == 1


def test_keras_applications_and_nested_sequential_models_are_rebuilt(tmp_path):
  keras.utils.set_random_seed(0)  # its weights, whichever tests ran before in this process
  backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                            classes=10, classifier_activation=None)
  nested = keras.Sequential([keras.Input((32, 32, 3)), backbone, keras.layers.Dense(3)])
  settle_batch_norm(nested, PIXELS_32)  # else its outputs are all near its Dense's bias
  path = str(tmp_path / "nested.keras")
  nested.save(path)
  rebuilt = model_files.load_model(path)
  pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  expected = numpy(nested(pixels))
  assert np.abs(expected[0] - expected[1]).max() > 0.1
  # Logits up to ~7 through 60 layers: float32 rounding differs by a few 1e-5 between the Kerases.
  np.testing.assert_allclose(rebuilt(pixels).numpy(), expected, rtol=1e-4, atol=1e-4)
  assert isinstance(rebuilt.layers[1], tf_keras.Model) and len(rebuilt.layers[1].layers) == len(backbone.layers)


def test_a_text_model_with_a_wrapped_layer_is_rebuilt(tmp_path):
  ids = keras.Input((12,), dtype="int32")
  x = keras.layers.Embedding(50, 8)(ids)
  x = keras.layers.Bidirectional(keras.layers.LSTM(4))(x)  # a layer config inside a layer's
  original = keras.Model(ids, keras.layers.Dense(2)(x))
  path = str(tmp_path / "text.keras")
  original.save(path)
  tokens = np.random.default_rng(4).integers(0, 50, (3, 12)).astype(np.int32)
  np.testing.assert_allclose(model_files.load_model(path)(tokens).numpy(),
                             numpy(original(tokens)), atol=1e-6)


def rebuilt_and_normal_rows(original, shape, seed=6):
  rebuilt = keras3_files.rebuild(original, original.name)
  rows = np.random.default_rng(seed).normal(size=(4,) + shape).astype(np.float32)
  return rebuilt, rows


@pytest.mark.parametrize("make_layer", [
    lambda: keras.layers.LeakyReLU(negative_slope=0.1),  # tf_keras calls it alpha
    lambda: keras.layers.Activation("hard_silu"),  # MobileNetV3's: not in tf_keras
    lambda: keras.layers.Dense(3, activation="hard_sigmoid"),  # tf_keras's is another function
    lambda: keras.layers.TimeDistributed(keras.layers.Dense(3)),  # Keras 3 keys inside a wrapper
    lambda: keras.layers.LSTM(3, recurrent_activation="hard_sigmoid"),
], ids=["LeakyReLU", "hard_silu", "hard_sigmoid", "TimeDistributed", "LSTM"])
def test_layers_whose_configs_differ_between_the_kerases_are_rebuilt(make_layer):
  inputs = keras.Input((5, 4))
  original = keras.Model(inputs, keras.layers.Dense(2)(make_layer()(inputs)))
  rebuilt, rows = rebuilt_and_normal_rows(original, (5, 4))
  np.testing.assert_allclose(rebuilt(rows).numpy(), numpy(original(rows)), atol=1e-5)


@pytest.mark.parametrize("name", sorted(keras3_layers.ACTIVATIONS))
def test_each_activation_twin_computes_what_keras3_does(name):
  x = np.linspace(-6, 6, 96, dtype=np.float32).reshape(2, 48)  # an even last axis, for glu
  twin = tf_keras.activations.get(keras3_layers.ACTIVATIONS[name])
  np.testing.assert_allclose(twin(x).numpy(), numpy(keras.activations.get(name)(x)), atol=1e-6)


def test_attention_and_augmentation_layers_follow_the_model_calls_training_flag():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.RandomFlip()(inputs)  # Keras 3 saves these calls with training=True
  x = keras.layers.RandomContrast(0.5)(keras.layers.RandomRotation(0.2)(x))
  x = keras.layers.Reshape((8, 12))(keras.layers.Resizing(8, 4)(x))
  x = keras.layers.MultiHeadAttention(2, 4)(x, x)
  original = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x)))
  rebuilt, rows = rebuilt_and_normal_rows(original, (8, 8, 3))
  inference = numpy(original(rows, training=False))
  np.testing.assert_allclose(rebuilt(rows, training=False).numpy(), inference, atol=1e-5)
  assert np.abs(rebuilt(rows, training=True).numpy() - inference).max() > 1e-3  # augmented
  with pytest.raises(ModelFileError, match=r"sets lora_\w+=2, a Keras 3 option tf_keras"):
    keras3_files.to_tf_keras(keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, lora_rank=2)]))


def test_the_check_compares_near_zero_inputs_where_pixels_saturate():
  inputs = keras.Input((4,))
  head = keras.layers.Dense(3, activation="hard_sigmoid", name="head")
  original = keras.Model(inputs, head(inputs))
  head.set_weights([np.full((4, 3), 0.1, np.float32), np.zeros(3, np.float32)])
  rebuilt = keras3_files.to_tf_keras(original)
  rebuilt.get_layer("head").activation = tf_keras.activations.hard_sigmoid  # tf_keras's meaning
  pixels = np.random.default_rng(7).uniform(100, 255, (8, 4)).astype(np.float32)  # sums >= 40
  np.testing.assert_allclose(rebuilt(pixels).numpy(), numpy(original(pixels)), atol=1e-6)  # both 0/1
  with pytest.raises(ModelFileError, match="computes other outputs"):
    keras3_files.check_same_outputs(original, rebuilt, "model.keras")


def test_keras_applications_own_layers_are_rebuilt_and_the_result_saves(tmp_path):
  """ConvNeXt's LayerScale and StochasticDepth, Inception-ResNet-v2's scaled residual: Keras 3 file
  → tf_keras → tf_keras file → the same outputs (whole applications: bench/keras3_applications.py)."""
  from keras.src.applications import convnext, inception_resnet_v2  # their layers are not public
  inputs = keras.Input((6,))
  branch = convnext.LayerScale(0.5, 6)(keras.layers.Dense(6)(inputs))
  x = inception_resnet_v2.CustomScaleLayer(0.2)([inputs, convnext.StochasticDepth(0.3)(branch)])
  original = keras.Model(inputs, keras.layers.Dense(2)(x))
  original.layers[2].set_weights([np.linspace(-1, 1, 6).astype(np.float32)])  # gamma
  path, saved = str(tmp_path / "keras3.keras"), str(tmp_path / "tf_keras.keras")
  original.save(path)
  model_files.load_model(path).save(saved)
  assert not keras3_files.is_keras3_file(saved)
  rows = np.random.default_rng(8).uniform(0, 255, (2, 6)).astype(np.float32)
  expected = numpy(original(rows))
  assert np.abs(expected[0] - expected[1]).max() > 0.1  # outputs that tell models apart
  np.testing.assert_allclose(model_files.load_model(saved)(rows).numpy(), expected, atol=1e-4)


@keras.saving.register_keras_serializable(package="tfkd_tests")
class Doubling(keras.layers.Layer):
  def call(self, inputs):
    return 2 * inputs


def test_operations_between_layers_are_rebuilt_and_saved(tmp_path):
  inputs = keras.Input((6, 4))
  first, second = keras.layers.Dense(4)(inputs), keras.layers.Dense(4)(inputs)
  pooled = keras.ops.concatenate([keras.ops.mean(first, axis=1), first[:, 0],  # ops, no layers
                                  keras.ops.reshape(second, (-1, 24))[:, ::4],
                                  keras.ops.sort(second[..., 1]),
                                  keras.ops.split(first[:, 1], 2, axis=-1)[1]], axis=-1)  # 2 outputs
  original = keras.Model(inputs, 2 * pooled + keras.ops.max(first, axis=(1, 2), keepdims=True)[:, 0])
  path, saved = str(tmp_path / "ops.keras"), str(tmp_path / "rebuilt.keras")
  original.save(path)
  rows = np.random.default_rng(5).normal(size=(3, 6, 4)).astype(np.float32)
  rebuilt = model_files.load_model(path)
  assert {type(layer).__name__ for layer in rebuilt.layers} == {"InputLayer", "Dense", "KerasOperation"}
  rebuilt.save(saved)
  for model in (rebuilt, model_files.load_model(saved)):
    np.testing.assert_allclose(model(rows).numpy(), numpy(original(rows)), atol=1e-6)


class TwoDense(keras.Model):
  def __init__(self):
    super().__init__()
    self.first, self.second = keras.layers.Dense(4), keras.layers.Dense(2)

  def call(self, inputs):
    return self.second(self.first(inputs))


def test_what_cannot_be_rebuilt_is_refused_with_the_other_ways(tmp_path):
  inputs = keras.Input((4,))
  custom = str(tmp_path / "custom.keras")
  keras.Model(inputs, keras.layers.Dense(2)(Doubling(name="doubling")(inputs))).save(custom)
  with pytest.raises(ModelFileError, match=r"'doubling' is a Doubling .*no tf_keras counterpart"
                                           r".*distill.teacher_logits_path"):
    model_files.load_model(custom)
  unbuilt = keras.Sequential([keras.layers.Dense(2)])  # never built: no input shape
  with pytest.raises(ModelFileError, match="never built"):
    keras3_files.to_tf_keras(unbuilt)
  with pytest.raises(ModelFileError, match="subclassed TwoDense.*Python code, not a config"):
    keras3_files.to_tf_keras(TwoDense())
  lambda_file = str(tmp_path / "lambda.keras")
  keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(lambda_file)
  with pytest.raises(ModelFileError, match="Lambda layer of Python code"):
    model_files.load_model(lambda_file)


def test_a_keras3_model_converts_to_int8_and_an_unbuilt_one_is_refused_with_the_fix():
  keras.utils.set_random_seed(0)  # int8 rounding of an untrained model varies with its weights
  model, pixels = branching_model(), PIXELS_32[:, :16, :16]
  settle_batch_norm(model, pixels)
  expected = numpy(model(pixels, training=False))
  np.testing.assert_allclose(interpreter.predict(convert.convert(model), pixels), expected,
                             atol=1e-5)
  int8 = convert.convert(model, "int8", pixels)
  assert interpreter.load(int8).get_input_details()[0]["dtype"] == np.int8
  np.testing.assert_array_equal(interpreter.predict(int8, pixels).argmax(1), expected.argmax(1))
  np.testing.assert_allclose(interpreter.predict(int8, pixels), expected, atol=0.04)
  with pytest.raises(convert.ConversionError, match="could not export.*call it on a batch first"):
    convert.convert(TwoDense(), "float32")


def test_a_keras3_teacher_file_distils(image_folder, tmp_path, caplog):
  """The image folder's class is its brightest channel: channel means → identity is perfect."""
  caplog.set_level("INFO", logger="absl")
  inputs = keras.Input((16, 16, 3))
  dense = keras.layers.Dense(3, activation="softmax", name="predictions")
  teacher = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
  dense.set_weights([np.eye(3, dtype=np.float32) / 50, np.zeros(3, np.float32)])
  teacher_file = str(tmp_path / "keras3_teacher.keras")
  teacher.save(teacher_file)
  config = tiny_config(image_folder)
  config.data.image_size = (16, 16)
  config.teacher.path, config.stages = teacher_file, ("teacher", "distill")
  pipeline.run_pipeline(config, str(tmp_path / "run"))
  assert os.path.exists(tmp_path / "run" / "distill" / "model.keras")
  assert "outputs probabilities, not logits" in caplog.text and "accuracy 100.0%" in caplog.text


@keras.saving.register_keras_serializable(package="tfkd_tests")
class MeanColour(keras.Model):
  """A subclassed Keras 3 classifier (no config of layers to rebuild): channel means → softmax."""

  def __init__(self, activation="softmax", **kwargs):
    super().__init__(**kwargs)
    self.activation = activation
    self.pool, self.head = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation)

  def call(self, inputs):
    return self.head(self.pool(inputs))

  def get_config(self):
    return {**super().get_config(), "activation": self.activation}


def mean_colour_file(path, activation="softmax"):
  """A MeanColour teacher saved by Keras 3: perfect on the image folder (brightest channel)."""
  teacher = MeanColour(activation, name="mean_colour")
  teacher(PIXELS)
  teacher.head.set_weights([np.eye(3, dtype=np.float32) / 50, np.zeros(3, np.float32)])
  teacher.save(str(path))
  return teacher, str(path)


def test_a_keras3_teacher_teaches_live_as_its_tf_keras_twin_would_and_stays_frozen(tmp_path):
  _, path = mean_colour_file(tmp_path / "logits.keras", activation=None)
  with pytest.raises(keras3_files.NotRebuildable) as raised:
    model_files.load_model(path)
  live = keras3_teacher.Keras3Teacher(raised.value.model, path)
  frozen = [w.copy() for w in live.get_weights()]
  # The same function in tf_keras: channel means, then the teacher's Dense weights.
  inputs = tf_keras.Input((16, 16, 3))
  twin = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(
      tf_keras.layers.GlobalAveragePooling2D()(inputs)))
  twin.set_weights(live.get_weights())
  student = tf_keras.Sequential([tf_keras.Input((16, 16, 3)), tf_keras.layers.Conv2D(4, 3),
                                 tf_keras.layers.GlobalAveragePooling2D(), tf_keras.layers.Dense(3)])
  students = [student, tf_keras.models.clone_model(student)]
  students[1].set_weights(student.get_weights())
  start = student.get_weights()
  x, y = PIXELS_32[:, :16, :16], np.arange(16) % 3
  logs = []
  for teacher, pupil in zip([live, twin], students):
    distiller = Distiller(teacher, pupil, losses.LogitsDistillation(4.0), student_loss_weight=0.3)
    distiller.compile(tf_keras.optimizers.SGD(1e-4))
    logs.append([distiller.train_on_batch(x, y, return_dict=True) for _ in range(2)])
  for step_live, step_twin in zip(*logs):
    assert step_live["distillation_loss"] > 0
    assert step_live == pytest.approx(step_twin, rel=1e-5)
  for moved, same in zip(*(s.get_weights() for s in students)):
    np.testing.assert_allclose(moved, same, rtol=1e-5, atol=1e-7)
  assert any(not np.allclose(a, b) for a, b in zip(student.get_weights(), start))
  for after, before in zip(live.get_weights(), frozen):  # the Keras 3 teacher did not move
    np.testing.assert_array_equal(after, before)
  with pytest.raises(ModelMismatchError, match=r"Losses read layers \['pool'\] of 'mean_colour', "
                                               r"but it is not a tf_keras model.*logit losses"):
    Distiller(live, student, losses.FeatureDistillation("pool", "conv2d"))


def test_a_keras3_only_teacher_teaches_live_and_labels_the_cached_views(image_folder, tmp_path, caplog):
  caplog.set_level("INFO", logger="absl")
  teacher, teacher_file = mean_colour_file(tmp_path / "subclassed.keras")
  config = tiny_config(image_folder)
  config.data.image_size = (16, 16)
  config.teacher.path, config.stages = teacher_file, ("teacher", "distill", "export", "report")
  config.export.modes, config.report.edge = ("float32",), False
  config.report.latency_runs, config.report.warmup_runs, config.report.latency_spread_s = 3, 1, 0.0
  live_config = config.copy_and_resolve_references()
  live_config.stages = ("teacher", "distill")
  pipeline.run_pipeline(live_config, str(tmp_path / "live"))
  assert "Keras 3 runs it live" in caplog.text
  assert os.path.exists(tmp_path / "live" / "distill" / "model.keras")
  config.distill.cached_teacher, config.distill.cache_epochs = True, 1
  pipeline.run_pipeline(config, str(tmp_path / "cached"))
  assert "has no tf_keras twin" in caplog.text and "outputs probabilities, not logits" in caplog.text
  assert "accuracy 100.0%" in caplog.text  # the teacher check, through Keras 3
  report = files.read_json(str(tmp_path / "cached" / "report.json"))
  teacher_row, = [r for r in report["rows"] if r["label"].startswith("teacher")]
  assert teacher_row["accuracy"] == 1.0 and teacher_row["latency_ms"] > 0
  # Its latency is its own: Keras 3 exported it for the converter, and LiteRT computes its outputs.
  tflite_file = str(tmp_path / "cached" / "export" / "teacher_float32.tflite")
  np.testing.assert_allclose(interpreter.predict(tflite_file, PIXELS), numpy(teacher(PIXELS)),
                             atol=1e-6)


def test_a_keras3_teacher_without_a_twin_compresses_to_int8_and_is_refused_for_the_rest(
    image_folder, tmp_path):
  config = tiny_config(image_folder)
  config.data.image_size = (16, 16)
  config.stages = ("teacher", "teacher_compress")
  config.distill.cached_teacher, config.distill.cache_epochs = True, 1
  config.teacher.compress = "int8"
  teacher, config.teacher.path = mean_colour_file(tmp_path / "logits.keras", activation=None)
  run = tmp_path / "int8"
  pipeline.run_pipeline(config, str(run))
  int8_file, = [str(p) for p in run.glob("teacher_compress/*/*.tflite")]
  logits = interpreter.predict(int8_file, PIXELS_32[:, :16, :16])
  np.testing.assert_allclose(logits, numpy(teacher(PIXELS_32[:, :16, :16])), rtol=0.05)  # int8
  _, config.teacher.path = mean_colour_file(tmp_path / "softmax.keras")
  with pytest.raises(ModelFileError, match=r"ends in a softmax .* every probability under 1/256"):
    pipeline.run_pipeline(config, str(tmp_path / "softmax"))
  for how in ("float16", "prune"):
    config.teacher.compress = how
    with pytest.raises(ModelFileError, match=f"teacher.compress='{how}' .* no tf_keras twin"):
      pipeline.run_pipeline(config, str(tmp_path / how))


CUSTOM_LAYERS_MODULE = """
import keras

@keras.saving.register_keras_serializable(package="tfkd_test_user")
class Brighter(keras.layers.Layer):
  def call(self, inputs):
    return inputs * 2.0
"""


def test_teacher_import_modules_registers_a_users_layers_before_teachers_load(
    image_folder, tmp_path, monkeypatch):
  (tmp_path / "tfkd_test_user_layers.py").write_text(CUSTOM_LAYERS_MODULE)
  monkeypatch.chdir(tmp_path)  # where a user runs tfkd from, beside their module
  monkeypatch.setattr(sys, "path", list(sys.path))
  monkeypatch.delitem(sys.modules, "tfkd_test_user_layers", raising=False)
  config = from_config.with_defaults(tiny_config(image_folder))
  config.teacher.import_modules = ("tfkd_test_user_layers",)
  config_checks.validate(config)
  layers = sys.modules["tfkd_test_user_layers"]
  inputs = keras.Input((4,))
  keras.Model(inputs, keras.layers.Dense(2)(layers.Brighter()(inputs))).save("custom.keras")
  with pytest.raises(keras3_files.NotRebuildable, match="Brighter from tfkd_test_user_layers"):
    model_files.load_model("custom.keras")  # loaded by Keras 3: a cached teacher can use it
  config.teacher.import_modules = ("tfkd_test_no_such_module",)
  with pytest.raises(ConfigError, match=r"'tfkd_test_no_such_module' cannot be imported .*Fix: run "
                                        r"from the folder that holds it"):
    config_checks.validate(config)
