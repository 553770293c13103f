"""Every converter mode on LiteRT against Keras, and errors that name the ops and layers at fault."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from ml_collections import ConfigDict

from tfkd import from_config
from tflite import convert, graph, interpreter
from tflite.errors import TfliteError

layers = tf_keras.layers

INPUT_TYPES = {"float32": np.float32, "float16": np.float32, "dynamic": np.float32,
               "int8": np.int8, "uint8": np.uint8, "int16x8": np.int16}


@pytest.fixture(scope="module")
def trained(image_folder):
  """A small CNN trained on the synthetic colour classes (3 classes, 16x16 images)."""
  splits = from_config.splits(ConfigDict(dict(source="folder", path=image_folder, image_size=(16, 16),
                                              channels=0, val_size=0, adapt=False, seed=0,
                                              train_limit=0)))
  tf_keras.utils.set_random_seed(0)
  inputs = tf_keras.Input((16, 16, 3))
  x = layers.Rescaling(1 / 255.0)(inputs)
  x = layers.Conv2D(8, 3, activation="relu", name="conv")(x)
  x = layers.DepthwiseConv2D(3, activation="relu", name="depthwise")(x)
  x = layers.GlobalAveragePooling2D()(x)
  model = tf_keras.Model(inputs, layers.Dense(3, name="logits")(x))
  model.compile(tf_keras.optimizers.Adam(0.02),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
  (train_x, train_y), (test_x, test_y) = splits.train, splits.test
  model.fit(train_x.astype(np.float32), train_y, epochs=25, batch_size=32, verbose=0)
  keras_accuracy = model.evaluate(test_x.astype(np.float32), test_y, verbose=0)[1]
  return model, splits, keras_accuracy


@pytest.mark.parametrize("mode", convert.MODES)
def test_every_mode_runs_on_litert_close_to_keras(trained, mode):
  model, splits, keras_accuracy = trained
  test_x, test_y = splits.test
  tflite_bytes = convert.convert(model, mode, representative_data=splits.train[0][:60])
  assert keras_accuracy >= 0.9  # the comparison below only means something for a model that learned
  loaded = interpreter.load(tflite_bytes)
  assert loaded.get_input_details()[0]["dtype"] == INPUT_TYPES[mode]
  # One signature named after the Keras input and output, as from_keras_model would write it.
  assert loaded.get_signature_list() == {"serving_default": {"inputs": [model.input_names[0]],
                                                             "outputs": ["logits"]}}
  accuracy = interpreter.evaluate_accuracy(tflite_bytes, test_x, test_y)
  assert abs(accuracy - keras_accuracy) <= 0.07
  # Predictions, not just the score, agree with Keras.
  keras_top1 = np.argmax(model.predict(test_x.astype(np.float32), verbose=0), -1)
  assert np.mean(np.argmax(interpreter.predict(tflite_bytes, test_x), -1) == keras_top1) >= 0.9
  if mode in convert.FULL_INTEGER_MODES:
    assert convert.float_operators(tflite_bytes) == []


def lambda_model(function, name):
  inputs = tf_keras.Input((8, 8, 3))
  x = layers.Conv2D(4, 3, name="conv")(inputs)
  x = layers.Lambda(function, name=name)(x)
  return tf_keras.Model(inputs, layers.Dense(2, name="logits")(layers.Flatten()(x)))


CALIBRATION = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)


def test_op_without_tflite_kernel_is_named_with_its_layer():
  # tf.math.erf has no TFLite builtin: the converter refuses the model in every mode.
  model = lambda_model(tf.math.erf, "erf_layer")
  with pytest.raises(convert.ConversionError,
                     match=r"no builtin kernel for: Erf \(layers: Lambda\(erf_layer\)\)"):
    convert.convert(model, "float32")


def test_op_without_integer_kernel_is_named_with_its_layer():
  # ATAN2 converts, but only in float: full-integer conversion must not pass it off as int8.
  model = lambda_model(lambda t: tf.math.atan2(t, t + 1.0), "angle")
  with pytest.raises(convert.ConversionError,
                     match=r"left ops without an integer kernel in float: ATAN2 \(layers: Lambda\(angle\)\)"
                     ) as error:
    convert.convert(model, "int8", CALIBRATION)
  assert isinstance(error.value, TfliteError) and "allow_float_ops=True" in str(error.value)


def test_allow_float_ops_keeps_a_mixed_model():
  model = lambda_model(lambda t: tf.math.atan2(t, t + 1.0), "angle")
  tflite_bytes = convert.convert(model, "int8", CALIBRATION, allow_float_ops=True)
  assert ("ATAN2", "model/angle/Atan2") in [(op, name.replace(model.name, "model"))
                                            for op, name in convert.float_operators(tflite_bytes)]
  assert "ATAN2" in graph.read(tflite_bytes).op_names()


def test_unknown_mode_is_refused():
  with pytest.raises(convert.ConversionError, match="Unknown TFLite mode 'int4'.*choose from"):
    convert.convert(lambda_model(tf.identity, "same"), "int4")


@pytest.mark.parametrize("mode", convert.FULL_INTEGER_MODES)
def test_full_integer_modes_need_representative_data(mode):
  with pytest.raises(convert.ConversionError, match="needs representative_data"):
    convert.convert(lambda_model(tf.identity, "same"), mode)
