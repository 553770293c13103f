"""A teacher saved by Keras 3 (today's `tf.keras`) loads as a tf_keras model that computes the same."""

import os

import numpy as np
import pytest
import tf_keras

import tfkd  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
import keras
from tests.test_training_safety import tiny_config
from tfkd import keras3_files, model_files, pipeline, teacher_checks
from tfkd.errors import ModelFileError

PIXELS = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)


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


def test_keras_applications_and_nested_sequential_models_are_rebuilt(tmp_path):
  backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                            classes=10)
  nested = keras.Sequential([keras.Input((32, 32, 3)), backbone, keras.layers.Dense(3)])
  path = str(tmp_path / "nested.keras")
  nested.save(path)
  rebuilt = model_files.load_model(path)
  pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  np.testing.assert_allclose(rebuilt(pixels).numpy(), numpy(nested(pixels)), atol=1e-5)
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


@keras.saving.register_keras_serializable(package="tfkd_tests")
class Doubling(keras.layers.Layer):
  def call(self, inputs):
    return 2 * inputs


def test_element_wise_operations_between_layers_are_rebuilt_and_others_refused(tmp_path):
  inputs = keras.Input((4,))
  first, second = keras.layers.Dense(4)(inputs), keras.layers.Dense(4)(inputs)
  original = keras.Model(inputs, first + 2 * second)  # keras.ops Add and Multiply, no layers
  path = str(tmp_path / "ops.keras")
  original.save(path)
  rows = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
  np.testing.assert_allclose(model_files.load_model(path)(rows).numpy(), numpy(original(rows)),
                             atol=1e-6)
  keras.Model(inputs, keras.ops.sort(first)).save(path)
  with pytest.raises(ModelFileError, match=r"operation 'sort' .*Sort\) .*not one of the "
                                           r"element-wise operations"):
    model_files.load_model(path)


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
