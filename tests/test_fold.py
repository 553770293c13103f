"""The input normalisation folded into the first conv: exact inside, measured at the border."""

import logging

import numpy as np
import pytest
import tf_keras

from tfkd import fold, models
from tflite import convert, graph, micro

layers = tf_keras.layers
RNG = np.random.default_rng(0)
MEAN, STD = np.array([125.3, 123.0, 113.9]), np.array([63.0, 62.1, 66.7])
# Calibration with every pixel value 0..255 present: the int8 input range is exactly [0, 255].
PIXELS = RNG.integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
PIXELS[0, 0, 0], PIXELS[0, 0, 1] = 0, 255


def image_model(name, size=32, mean=MEAN):
  """A registered model with non-trivial batch-norm statistics (a fold into them must show)."""
  tf_keras.utils.set_random_seed(0)
  model = models.build_model(name, 10, (size, size, 3), normalization=(mean, STD ** 2))
  for layer in model.layers:
    if isinstance(layer, layers.BatchNormalization):
      gamma, beta, moving_mean, moving_variance = layer.get_weights()
      layer.set_weights([gamma + RNG.normal(0, .3, gamma.shape), RNG.normal(0, .3, beta.shape),
                         RNG.normal(0, .3, moving_mean.shape),
                         moving_variance * RNG.uniform(.5, 2, moving_variance.shape)])
  return model


def stem_output(model, x):
  """The stem's batch-norm output, the first tensor the fold changes."""
  return tf_keras.Model(model.input, model.get_layer("stem_bn").output)(x).numpy()


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn"])
def test_fold_is_exact_inside_and_the_border_moves_by_the_padded_taps(name):
  model = image_model(name, size=12)
  x = RNG.uniform(0, 255, (4, 12, 12, 3)).astype(np.float32)
  folded = fold.fold_input_normalization(model, border="zeros")
  assert [l.name for l in folded.layers] == [l.name for l in model.layers if l.name != "normalize"]
  original, got = stem_output(model, x), stem_output(folded, x)
  np.testing.assert_allclose(got[:, 1:-1, 1:-1], original[:, 1:-1, 1:-1], atol=1e-4, rtol=1e-4)
  # At the border the folded conv pads raw 0 where the original padded the mean: the output moves
  # by -γ/√(v+ε) · Σ over padded taps of kernel·mean/std (NumPy reference, 3x3 'same' conv).
  kernel = model.get_layer("stem_conv").get_weights()[0]
  gamma, _, _, variance = model.get_layer("stem_bn").get_weights()
  padded_sum = np.zeros((12, 12, kernel.shape[-1]))
  for a in range(3):
    for b in range(3):
      outside = np.zeros((12, 12), bool)
      outside[[0, -1][a // 2] if a != 1 else slice(0, 0), :] = True
      outside[:, [0, -1][b // 2] if b != 1 else slice(0, 0)] = True
      padded_sum[outside] += kernel[a, b].T @ (MEAN / STD)
  expected = -gamma / np.sqrt(variance + 1e-3) * padded_sum
  np.testing.assert_allclose(got - original, np.broadcast_to(expected, got.shape), atol=1e-3)
  assert np.abs(expected).max() > 0.5   # the effect the bench measures on accuracy is real


def test_mean_border_is_exact_everywhere_when_the_channel_means_agree():
  model = image_model("resnet8", size=12, mean=np.full(3, 120.0))
  x = RNG.uniform(0, 255, (4, 12, 12, 3)).astype(np.float32)
  folded = fold.fold_input_normalization(model)   # border="mean"
  assert folded.get_layer("stem_conv").padding == "valid"
  assert folded.get_layer("stem_conv_pad").value == 120.0
  np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), atol=1e-4, rtol=1e-4)
  # With unequal means the border is off by (value - mean_c), not by mean_c as with zeros.
  model = image_model("resnet8", size=12)
  errors = {border: np.abs(stem_output(fold.fold_input_normalization(model, border), x)
                           - stem_output(model, x)).max() for border in fold.BORDERS}
  assert errors["mean"] < errors["zeros"] / 10


@pytest.mark.parametrize("conv", [
    lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", use_bias=True,
                                   bias_initializer="he_normal", name="first"),
    lambda: layers.Conv2D(4, 3, strides=2, padding="valid", use_bias=False, name="first")])
def test_valid_convs_fold_exactly_into_their_bias(conv):
  """A depthwise conv with a bias and a plain conv without one (the fold adds a bias)."""
  inputs = tf_keras.Input((9, 9, 3))
  x = layers.Normalization(mean=MEAN, variance=STD ** 2, name="normalize")(inputs)
  model = tf_keras.Model(inputs, layers.Dense(2)(layers.Flatten()(conv()(x))))
  folded = fold.fold_input_normalization(model, border="mean", strict=True)
  assert folded.get_layer("first").use_bias and len(folded.layers) == len(model.layers) - 1
  x = RNG.uniform(0, 255, (3, 9, 9, 3)).astype(np.float32)
  np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), atol=1e-4, rtol=1e-4)


def test_the_trained_model_is_left_unchanged():
  model = image_model("resnet8", size=12)
  names, weights = [l.name for l in model.layers], [w.copy() for w in model.get_weights()]
  fold.fold_input_normalization(model)
  assert [l.name for l in model.layers] == names
  for before, after in zip(weights, model.get_weights()):
    np.testing.assert_array_equal(before, after)


def test_models_without_the_pattern_come_back_unchanged_or_raise_when_strict(caplog):
  caplog.set_level(logging.INFO, logger="absl")  # other tests may have set absl's own level
  inputs = tf_keras.Input((4, 4, 3))
  x = layers.Normalization(mean=MEAN, variance=STD ** 2, name="normalize")(inputs)
  # The normalised pixels feed two layers: the fold has no single conv to go into.
  twice = tf_keras.Model(inputs, layers.Add()([layers.Conv2D(3, 1)(x), x]))
  plain = tf_keras.Sequential([tf_keras.Input((4,)), layers.Dense(2)])
  for model, why in ((twice, "not one Conv2D"), (plain, "not a functional model")):
    assert fold.fold_input_normalization(model) is model
    assert why in caplog.text
    with pytest.raises(ValueError, match=why):
      fold.fold_input_normalization(model, strict=True)
  with pytest.raises(ValueError, match="border"):
    fold.fold_input_normalization(twice, border="edge")


@pytest.fixture(scope="module")
def resnet8_int8():
  model = models.build_model("resnet8", 10, (32, 32, 3), normalization=(MEAN, STD ** 2))
  folded = {border: fold.fold_input_normalization(model, border) for border in fold.BORDERS}
  return {border: convert.convert(variant, "int8", PIXELS)
          for border, variant in {"unfolded": model, **folded}.items()}


def test_int8_export_takes_raw_pixels_and_has_no_normalization_ops(resnet8_int8):
  unfolded = graph.read(resnet8_int8["unfolded"])
  assert unfolded.op_names()[:2] == ["SUB", "MUL"]
  for border, first_ops in (("mean", ["PADV2", "CONV_2D"]), ("zeros", ["CONV_2D", "CONV_2D"])):
    folded = graph.read(resnet8_int8[border])
    assert "SUB" not in folded.op_names() and "MUL" not in folded.op_names()
    assert folded.op_names()[:2] == first_ops
    pixels = folded.tensors[folded.inputs[0]]
    # int8 input = pixel - 128, exactly, for 8-bit images.
    assert pixels.dtype == "INT8" and pixels.scale == (1.0,) and pixels.zero_point == (-128,)


def test_folded_resnet8_needs_a_smaller_tflm_arena(resnet8_int8):
  arenas = {name: micro.find_arena_size(model) for name, model in resnet8_int8.items()}
  assert arenas["mean"].head == arenas["zeros"].head == arenas["unfolded"].head  # peak elsewhere
  assert arenas["zeros"].size < arenas["mean"].size < arenas["unfolded"].size
