"""LiteRT helpers: batched prediction, quantisation of inputs and outputs, accuracy, latency."""

import types

import numpy as np
import pytest
import tf_keras

from tflite import convert, interpreter


def small_model():
  layers = tf_keras.layers
  inputs = tf_keras.Input((8, 8, 3))
  x = layers.Rescaling(1 / 255.0)(inputs)
  x = layers.Conv2D(4, 3, activation="relu")(x)
  x = layers.GlobalAveragePooling2D()(x)
  return tf_keras.Model(inputs, layers.Dense(3)(x))


@pytest.fixture(scope="module")
def models_and_inputs():
  tf_keras.utils.set_random_seed(0)
  x = np.random.default_rng(0).uniform(0, 255, (23, 8, 8, 3)).astype(np.float32)
  model = small_model()
  return {mode: convert.convert(model, mode, x) for mode in ("float32", "int8")}, x, model


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_batched_and_one_at_a_time_predictions_agree(models_and_inputs, mode):
  models, x, _ = models_and_inputs
  # 23 rows in batches of 7 exercises the resize for the last, shorter batch too.
  batched = interpreter.predict(models[mode], x, batch_size=7, dequantize=False)
  single = interpreter.predict(models[mode], x, batch_size=1, dequantize=False)
  assert batched.shape == single.shape == (23, 3)
  if mode == "int8":
    assert batched.dtype == np.int8
    np.testing.assert_array_equal(batched, single)
  else:
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)


def test_float32_predictions_match_keras(models_and_inputs):
  models, x, model = models_and_inputs
  np.testing.assert_allclose(interpreter.predict(models["float32"], x), model.predict(x, verbose=0),
                             rtol=1e-4, atol=1e-4)


def test_quantize_input_uses_scale_zero_point_and_clips():
  detail = {"dtype": np.int8, "quantization": (0.5, -3)}
  x = np.array([0.0, 1.0, 1.2, -70.0, 70.0])
  # round(x / 0.5) - 3, clipped to [-128, 127].
  np.testing.assert_array_equal(interpreter.quantize_input(x, detail), [-3, -1, -1, -128, 127])
  assert interpreter.quantize_input(x, {"dtype": np.float32, "quantization": (0.0, 0)}).dtype == np.float32


def test_dequantize_output():
  detail = {"dtype": np.int8, "quantization": (0.25, 10)}
  np.testing.assert_allclose(interpreter.dequantize_output(np.array([10, 14, -118], np.int8), detail),
                             [0.0, 1.0, -32.0])


def test_evaluate_accuracy_counts_top1_hits(models_and_inputs):
  models, x, _ = models_and_inputs
  predicted = np.argmax(interpreter.predict(models["int8"], x), axis=-1)
  labels = predicted.copy()
  labels[:10] = (labels[:10] + 1) % 3   # 10 of 23 made wrong on purpose
  assert interpreter.evaluate_accuracy(models["int8"], x, labels, batch_size=5) == pytest.approx(13 / 23)


def test_latency_reports_percentiles(models_and_inputs):
  models, x, _ = models_and_inputs
  latency = interpreter.latency_ms(models["int8"], x[0], runs=20, warmup=2)
  assert 0 < latency["p50"] <= latency["p90"] and latency["runs"] == 20 and latency["threads"] == 1
  assert latency["cpu"] == interpreter.cpu_name() and latency["cpu"] != "unknown CPU"


class _SpellInterpreter:
  """Invokes take 2 ms for the first `slow` calls (a slow spell of the machine), then 1 ms.

  The time is `clock`'s (seconds in a one-item list), so a loaded machine cannot change it.
  """

  def __init__(self, slow, clock):
    self.calls, self.slow, self.input_shape, self.clock = 0, slow, None, clock

  def allocate_tensors(self):
    pass

  def get_input_details(self):
    return [{"index": 0, "dtype": np.float32, "quantization": (0.0, 0)}]

  def set_tensor(self, index, value):
    self.input_shape = value.shape

  def invoke(self):
    self.calls += 1
    self.clock[0] += 0.002 if self.calls <= self.slow else 0.001


def test_quietest_round_sees_through_a_slow_spell(monkeypatch):
  clock, pauses = [0.0], []
  fakes = {"a": _SpellInterpreter(slow=20, clock=clock), "b": _SpellInterpreter(slow=20, clock=clock)}
  monkeypatch.setattr(interpreter, "load", lambda model, num_threads=1: fakes[model])
  samples = {"a": np.zeros((8, 8, 3)), "b": np.zeros((4, 4, 1))}  # each model its own input
  monkeypatch.setattr(interpreter, "time", types.SimpleNamespace(
      perf_counter=lambda: clock[0], sleep=lambda s: pauses.append(s)))
  latency = interpreter.interleaved_latency_ms({"a": "a", "b": "b"}, samples, rounds=3, runs=10,
                                               warmup=0, spread_s=0.02)
  assert pauses == [pytest.approx(0.01)] * 2  # the 3 rounds span 0.02 s
  assert fakes["a"].input_shape == (1, 8, 8, 3) and fakes["b"].input_shape == (1, 4, 4, 1)
  for name in "ab":
    # Two of three rounds fell in the spell: their median says 2 ms, the quiet round 1 ms.
    assert latency[name]["p50"] == pytest.approx(2.0) and latency[name]["runs"] == 30
    assert latency[name]["p50_quietest_round"] == pytest.approx(1.0)


def test_reference_kernels_compute_the_same_float_model(models_and_inputs):
  models, x, _ = models_and_inputs
  reference = interpreter.load(models["float32"], reference_kernels=True)
  np.testing.assert_allclose(interpreter.predict(reference, x), interpreter.predict(models["float32"], x),
                             rtol=1e-4, atol=1e-4)
