"""Weights read from a `.tflite` (`tflite.sparsity` on `tflite.graph`): zeros, 2:4 pattern, gzip.

The models are pruned by hand (the zeros tfmot's masks would leave: smallest
magnitudes per kernel, or the 2 smallest of every 4 input channels), so the
file must show exactly what was put in; `tests/test_compress.py` checks that
tfmot's pruning reaches the file.
"""

import numpy as np
import pytest
import tf_keras

from tfkd import models
from tflite import convert, graph, sparsity
from tflite.errors import TfliteError

SHAPE, CLASSES = (16, 16, 3), 3
NORMALIZATION = ([100.0] * 3, [900.0] * 3)
CALIBRATION = np.random.default_rng(0).uniform(0, 255, (32, *SHAPE)).astype(np.float32)


def resnet(name):
  """The ResNet-8 of test_compress (9 CONV_2D kernels and 1 FULLY_CONNECTED), untrained."""
  tf_keras.utils.set_random_seed(0)
  return models.resnet(8, CLASSES, SHAPE, filters=(8, 8, 16), normalization=NORMALIZATION,
                       name=name)


def prunable_layers(model):
  return [l for l in model.layers if isinstance(l, (tf_keras.layers.Conv2D, tf_keras.layers.Dense))]


def magnitude_pruned(kernel, share):
  """`kernel` with its `share` smallest-magnitude weights set to zero (tfmot's mask)."""
  flat = kernel.ravel().copy()
  flat[np.argsort(np.abs(flat), kind="stable")[:int(round(share * flat.size))]] = 0
  return flat.reshape(kernel.shape)


def two_of_four_pruned(kernel):
  """`kernel` with the 2 smallest of every 4 consecutive input-channel weights set to zero.

  Input channels are the Keras kernel's axis -2 and TFLite's last axis; like tfmot,
  the axis is padded with zeros to a multiple of 4, so 3 channels lose only 1.
  """
  moved = np.moveaxis(kernel, -2, -1)
  pad = (-moved.shape[-1]) % 4
  groups = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(0, pad)]).reshape(*moved.shape[:-1], -1, 4)
  np.put_along_axis(groups, np.argsort(np.abs(groups), axis=-1)[..., :2], 0, axis=-1)
  return np.moveaxis(groups.reshape(*moved.shape[:-1], -1)[..., :moved.shape[-1]], -1, -2)


def pruned_copy(model, prune_kernel):
  copy = tf_keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  for layer in prunable_layers(copy):
    layer.kernel.assign(prune_kernel(layer.kernel.numpy()))
  return copy


@pytest.fixture(scope="module")
def dense_model():
  return resnet("student")


@pytest.fixture(scope="module")
def dense_int8(dense_model):
  return convert.convert(dense_model, "int8", CALIBRATION)


@pytest.fixture(scope="module")
def pruned(dense_model):
  """The student with 75% of every conv and dense kernel set to zero, exported int8."""
  model = pruned_copy(dense_model, lambda k: magnitude_pruned(k, 0.75))
  return dict(model=model, int8=convert.convert(model, "int8", CALIBRATION))


def assert_exported_sparsity(pruned_int8: bytes, pruned_model, dense_int8: bytes) -> None:
  """A 75%-pruned ResNet-8 (9 convs + dense) keeps its zeros in every exported kernel.

  Shared with tests/test_compress.py, which prunes with tfmot instead of by hand.
  """
  measured = sparsity.tflite_sparsity(pruned_int8)
  assert measured["sparsity"] == pytest.approx(0.75, abs=0.02)
  assert len(measured["tensors"]) == 10  # 9 CONV_2D kernels and the FULLY_CONNECTED one
  for tensor in measured["tensors"]:
    assert tensor["sparsity"] == pytest.approx(0.75, abs=0.05), tensor["name"]
  assert sparsity.tflite_sparsity(dense_int8)["sparsity"] < 0.05
  # Zeros compress: the pruned file gzips much smaller although its raw size is the same.
  assert abs(len(pruned_int8) - len(dense_int8)) < 0.05 * len(dense_int8)
  assert sparsity.gzip_bytes(pruned_int8) < 0.8 * sparsity.gzip_bytes(dense_int8)
  # A float32 export stores the same zeros.
  float32 = convert.convert(pruned_model, "float32")
  assert sparsity.tflite_sparsity(float32)["sparsity"] == pytest.approx(0.75, abs=0.01)


def test_exported_tflite_has_the_configured_sparsity(pruned, dense_int8):
  assert_exported_sparsity(pruned["int8"], pruned["model"], dense_int8)


def test_float_exports_store_exactly_the_keras_zeros(pruned, tmp_path):
  kernels = [l.kernel.numpy() for l in prunable_layers(pruned["model"])]
  float32 = convert.convert(pruned["model"], "float32")
  measured = sparsity.tflite_sparsity(float32)
  # BatchNorm folding scales kernels per output channel: zeros stay zeros, nothing else becomes one.
  assert measured["zeros"] == sum(int((k == 0).sum()) for k in kernels)
  assert measured["weights"] == sum(k.size for k in kernels)
  assert sorted(t["shape"][-1] for t in measured["tensors"]) == sorted(k.shape[-2] for k in kernels)
  # Float16 weights sit behind DEQUANTIZE ops; they are followed back to their constants.
  path = tmp_path / "pruned_float16.tflite"
  path.write_bytes(convert.convert(pruned["model"], "float16"))
  float16 = sparsity.tflite_kernels(str(path), sparsity.PRUNABLE_OPS)
  assert len(float16) == 10 and all(k.values.dtype == np.float16 for k in float16)
  assert sparsity.tflite_sparsity(str(path))["sparsity"] == pytest.approx(measured["sparsity"],
                                                                          abs=1e-3)


def test_m_by_n_fraction_counts_groups_along_the_last_axis():
  kernel = np.array([[0, 0, 1, 2, 0, 3, 4, 5],    # groups: 2 zeros ✓, 1 zero ✗
                     [1, 0, 0, 0, 7, 0, 0, 1]])   # 3 zeros ✓, 2 zeros ✓
  assert sparsity.m_by_n_fraction(kernel, 2, 4) == 0.75
  # A 3-wide axis is padded to 4 with one zero, so one real zero completes the group.
  assert sparsity.m_by_n_fraction(np.array([[0, 1, 2], [1, 2, 3]]), 2, 4) == 0.5


def test_unknown_op_names_are_refused(dense_int8):
  with pytest.raises(ValueError, match=r"Unknown TFLite ops \['CONV2D'\].*'CONV_2D'") as error:
    sparsity.tflite_kernels(dense_int8, ops=("CONV2D",))
  assert isinstance(error.value, TfliteError)


def assert_exported_2_by_4(int8: bytes, dense_int8: bytes) -> None:
  """Every exported conv/dense kernel of a 2:4-pruned ResNet-8 keeps the pattern.

  Shared with tests/test_compress.py, which prunes with tfmot instead of by hand.
  """
  measured = sparsity.tflite_sparsity(int8)
  assert measured["m_by_n_2_4"] == 1.0
  for kernel in sparsity.tflite_kernels(int8, sparsity.PRUNABLE_OPS):
    assert sparsity.m_by_n_fraction(kernel.values, 2, 4) == 1.0, kernel.name
  assert 0.45 < measured["sparsity"] <= 0.5  # the 3-channel stem keeps 2 of 3
  assert sparsity.tflite_sparsity(dense_int8)["m_by_n_2_4"] < 0.2


def test_2_by_4_pattern_is_in_the_exported_kernels(dense_model, dense_int8):
  assert_exported_2_by_4(
      convert.convert(pruned_copy(dense_model, two_of_four_pruned), "int8", CALIBRATION), dense_int8)


def test_kernels_include_depthwise_weights_by_default(dense_int8):
  inputs = tf_keras.Input((8, 8, 4))
  x = tf_keras.layers.DepthwiseConv2D(3)(tf_keras.layers.Conv2D(4, 1)(inputs))
  model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(tf_keras.layers.Flatten()(x)))
  ops = [k.op for k in sparsity.tflite_kernels(convert.convert(model, "float32"))]
  assert ops == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
  assert "DEPTHWISE_CONV_2D" not in sparsity.PRUNABLE_OPS  # tfmot does not prune it


def fake_graph(stored, dtype, shape, zero_point=(), quantized_dimension=0, is_sparse=False):
  """A one-tensor `Graph` whose only constant holds `stored` (for the zero-point rules)."""
  tensor = graph.Tensor(index=0, name="w", shape=shape, dtype=dtype, nbytes=len(stored),
                        is_constant=True, buffer=1, zero_point=zero_point,
                        quantized_dimension=quantized_dimension, is_sparse=is_sparse)
  return graph.Graph(tensors=[tensor], operators=[], inputs=(), outputs=(), model_bytes=0,
                     buffers=[np.zeros(0, np.uint8), np.asarray(stored, np.uint8)])


def test_zero_points_are_removed_so_zero_means_a_zero_weight():
  per_tensor = fake_graph([128, 130, 126, 128], "UINT8", (2, 2), zero_point=(128,))
  assert per_tensor.constant(0).tolist() == [[128, 130], [126, 128]]  # stored values, raw
  np.testing.assert_array_equal(sparsity._stored_weights(per_tensor, 0), [[0, 2], [-2, 0]])  # pylint: disable=protected-access
  per_channel = fake_graph([128, 130, 7, 9], "UINT8", (2, 2), zero_point=(128, 9),
                           quantized_dimension=0)
  np.testing.assert_array_equal(sparsity._stored_weights(per_channel, 0), [[0, 2], [-2, 0]])  # pylint: disable=protected-access


def test_unreadable_weights_are_named():
  with pytest.raises(TfliteError, match=r"Tensor 'w' .* sparse format.*tflite.convert"):
    fake_graph([1, 2, 3, 4], "INT8", (4,), is_sparse=True).constant(0)
  with pytest.raises(TfliteError, match=r"Tensor 'w' .* type INT4"):
    fake_graph([1, 2], "INT4", (4,)).constant(0)
