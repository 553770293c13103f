"""TFLite Micro: parity with LiteRT, the arena search, unsupported ops, flash bytes."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tflite import convert, cost, graph, micro
from tflite.errors import TfliteError

layers = tf_keras.layers
RNG = np.random.default_rng(0)


def residual_model():
  """conv → depthwise → add(skip) → pool → dense: the op mix of the project's models."""
  inputs = tf_keras.Input((12, 12, 3))
  x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
  x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
  y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
  x = layers.ReLU()(layers.Add()([x, y]))
  x = layers.GlobalAveragePooling2D()(x)
  return tf_keras.Model(inputs, layers.Dense(5)(x))


@pytest.fixture(scope="module")
def int8_model():
  tf_keras.utils.set_random_seed(1)
  calibration = RNG.uniform(0, 255, (32, 12, 12, 3)).astype(np.float32)
  return convert.convert(residual_model(), "int8", calibration)


@pytest.fixture(scope="module")
def arena(int8_model):
  return micro.find_arena_size(int8_model)


def test_int8_outputs_match_litert(int8_model, arena):
  x = RNG.uniform(0, 255, (20, 12, 12, 3)).astype(np.float32)
  # LiteRT's reference kernels compute as TFLM's do (on this model, bit for bit).
  reference = micro.parity(int8_model, x, arena.size, reference_kernels=True)
  assert reference["samples"] == reference["identical"] == 20 and reference["max_abs_diff"] == 0
  # LiteRT's default (XNNPACK) path rounds some requantisations the other way: at most 1 LSB.
  default = micro.parity(int8_model, x, arena.size)
  assert default["integer_output"] and default["max_abs_diff"] <= 1
  assert default["litert_kernels"] == "default"


def test_arena_search_finds_the_smallest_working_size(int8_model, arena):
  zeros = [np.zeros((1, 12, 12, 3), np.int8)]
  micro.run_once(int8_model, arena.size, zeros)                 # works, in this process...
  for smaller in (arena.size - arena.granularity, arena.size - 1024):
    assert not micro.runs_with_arena(int8_model, smaller)      # ...and nothing smaller does
  assert arena.smaller_fails and arena.head + arena.tail <= arena.size


def test_arena_search_confirms_tflms_record_in_two_probes(int8_model, arena, monkeypatch):
  probes = []
  probe = micro.runs_with_arena
  monkeypatch.setattr(micro, "runs_with_arena", lambda *args: probes.append(args[1]) or probe(*args))
  assert micro.find_arena_size(int8_model) == arena
  assert probes == [arena.size, arena.size - arena.granularity]


@pytest.mark.parametrize("record", [{}, {"total": 1024}, {"total": 64}, {"total": 200_000},
                                    {"total": 1 << 31}])
def test_arena_search_finds_the_same_size_when_tflms_record_is_off(int8_model, arena, record,
                                                                    monkeypatch):
  allocations = micro._allocations  # pylint: disable=protected-access
  monkeypatch.setattr(micro, "_allocations", lambda model_bytes, size, inputs: (
      record if size == micro._GENEROUS_ARENA else allocations(model_bytes, size, inputs)))  # pylint: disable=protected-access
  assert micro.find_arena_size(int8_model) == arena
  if record.get("total", 0) > arena.size:  # above max_size, one probe at max_size decides
    smaller = arena.size - arena.granularity
    with pytest.raises(micro.MicroError, match=f"more than {smaller} bytes"):
      micro.find_arena_size(int8_model, max_size=smaller)


def test_arena_probe_survives_tflm_crashing_on_a_tiny_arena(int8_model):
  # Run in-process, TFLM segfaults on this model with 1664, 1792, 1920 or 2432 bytes (unchecked
  # tail allocations in Prepare); in a probe those are just arenas that do not work.
  assert not any(micro.runs_with_arena(int8_model, size) for size in range(1024, 2560, 128))


def test_arena_holds_exactly_the_activation_lower_bound_of_a_chain():
  # x → c1 = conv(x) → c2 = conv(c1) → add(c1, c2): during the add, c1, c2 and the sum are
  # all live: 3 × 8·8·4 int8 bytes = 768. TFLM's planner reaches that bound exactly.
  inputs = tf_keras.Input((8, 8, 4))
  c1 = layers.Conv2D(4, 1)(inputs)
  c2 = layers.Conv2D(4, 1)(c1)
  model = tf_keras.Model(inputs, layers.Add()([c1, c2]))
  tflite_bytes = convert.convert(model, "int8", RNG.normal(size=(8, 8, 8, 4)).astype(np.float32))
  assert cost.peak_activation_bytes(graph.read(tflite_bytes)) == 768
  assert micro.find_arena_size(tflite_bytes).head == 768


def test_unsupported_op_is_listed():
  # TILE has an int8 LiteRT kernel but no TFLM one.
  inputs = tf_keras.Input((4, 4, 2))
  x = layers.Conv2D(2, 1)(inputs)
  x = layers.Lambda(lambda t: tf.tile(t, [1, 2, 1, 1]))(x)
  model = tf_keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
  tflite_bytes = convert.convert(model, "int8", RNG.normal(size=(8, 4, 4, 2)).astype(np.float32))
  support = micro.check_ops(tflite_bytes)
  assert not support.runs and "TILE" in support.ops
  assert [entry.split()[0] for entry in support.unsupported] == ["TILE"]
  assert "Didn't find op for builtin opcode 'TILE'" in support.log  # TFLM's own words
  with pytest.raises(micro.MicroError, match="cannot run this model: TILE") as error:
    micro.find_arena_size(tflite_bytes)
  assert isinstance(error.value, TfliteError)


def test_supported_model_reports_its_ops(int8_model):
  support = micro.check_ops(int8_model)
  assert support.runs and support.unsupported == []
  assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED"} <= set(support.ops)


def test_flash_bytes_is_the_flatbuffer_size(int8_model):
  assert micro.flash_bytes(int8_model) == len(int8_model) == graph.read(int8_model).model_bytes
