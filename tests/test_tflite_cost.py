"""Parameters, MACs and the peak-activation lower bound against counts done by hand."""

import numpy as np
import pytest
import tf_keras

from tflite import convert, cost, graph
from tflite.errors import TfliteError

layers = tf_keras.layers


@pytest.fixture(scope="module")
def conv_dense_model():
  # Random biases: the converter shares equal constants and drops all-zero biases.
  bias = dict(bias_initializer="random_normal")
  inputs = tf_keras.Input((8, 8, 3))
  x = layers.Conv2D(4, 3, padding="same", **bias)(inputs)     # 8x8x4 outputs, 3x3x3 window
  x = layers.DepthwiseConv2D(3, padding="same", **bias)(x)     # 8x8x4 outputs, 3x3 window
  x = layers.Conv2D(6, 1, strides=2, **bias)(x)                # 4x4x6 outputs, 1x1x4 window
  return tf_keras.Model(inputs, layers.Dense(5, **bias)(layers.Flatten()(x)))   # 96 → 5


# Hand count: conv 8·8·4·(3·3·3) + depthwise 8·8·4·(3·3) + 1x1 conv 4·4·6·4 + dense 96·5.
HAND_MACS = {"CONV_2D": 8 * 8 * 4 * 27 + 4 * 4 * 6 * 4, "DEPTHWISE_CONV_2D": 8 * 8 * 4 * 9,
             "FULLY_CONNECTED": 96 * 5}
# Hand count: kernels plus biases.
HAND_PARAMETERS = (3 * 3 * 3 * 4 + 4) + (3 * 3 * 4 + 4) + (4 * 6 + 6) + (96 * 5 + 5)


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_macs_and_parameters_match_a_hand_count(conv_dense_model, mode):
  calibration = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype(np.float32)
  tflite_bytes = convert.convert(conv_dense_model, mode, calibration)
  result = cost.model_cost(tflite_bytes)
  assert result["macs_by_op"] == HAND_MACS
  assert result["macs"] == sum(HAND_MACS.values()) == 10_080
  assert result["parameters"] == HAND_PARAMETERS == conv_dense_model.count_params()


def test_peak_activation_of_a_chain_matches_a_hand_count():
  inputs = tf_keras.Input((8, 8, 3))
  x = layers.Conv2D(4, 1)(inputs)
  x = layers.MaxPooling2D(2)(x)
  model = tf_keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
  g = graph.read(convert.convert(model, "float32"))
  assert g.op_names() == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
  f32 = 4
  live = [(8 * 8 * 3 + 8 * 8 * 4) * f32,   # conv: its input and output
          (8 * 8 * 4 + 4 * 4 * 4) * f32,   # pool: conv output (read now) and pool output
          (4 * 4 * 4 + 64) * f32,          # reshape: pool output and flattened copy
          (64 + 2) * f32]                  # dense: flattened input and logits
  assert cost.live_bytes_per_op(g) == live
  assert cost.peak_activation_bytes(g) == max(live) == 1792


def test_skip_connection_keeps_its_tensor_live():
  # x → c1 → c2 → add(c1, c2): c1 stays live through c2 for the add.
  inputs = tf_keras.Input((8, 8, 4))
  c1 = layers.Conv2D(4, 1)(inputs)
  c2 = layers.Conv2D(4, 1)(c1)
  g = graph.read(convert.convert(tf_keras.Model(inputs, layers.Add()([c1, c2])), "float32"))
  tensor = 8 * 8 * 4 * 4
  assert cost.live_bytes_per_op(g) == [2 * tensor, 2 * tensor, 3 * tensor]


def test_reading_something_that_is_not_tflite_fails_clearly(tmp_path):
  path = tmp_path / "model.keras"
  path.write_bytes(b"PK\x03\x04 not a flatbuffer")
  with pytest.raises(ValueError, match="model.keras' is not a TFLite model") as error:
    cost.model_cost(str(path))
  assert isinstance(error.value, TfliteError)
