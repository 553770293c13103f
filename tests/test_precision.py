"""Mixed-precision training (tfkd.precision): bfloat16 arithmetic, float32 weights and files."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests.test_pipeline import tiny_config
from tfkd import Distiller, FeatureDistillation, LogitsDistillation, models, pipeline, precision
from tflite import graph


def compute_dtypes(model):
  return {layer.name: layer.compute_dtype for layer in model.layers
          if not isinstance(layer, tf_keras.layers.InputLayer)}


def test_with_policy_keeps_weights_and_float32_outputs():
  model = models.build_model("resnet8", 10, (16, 16, 3), normalization=(np.full(3, 120.0),
                                                                         np.full(3, 3600.0)))
  x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
  mixed = precision.with_policy(model, "mixed_bfloat16")
  dtypes = compute_dtypes(mixed)
  assert dtypes.pop("logits") == "float32"  # the loss reads float32 logits
  assert set(dtypes.values()) == {"bfloat16"}
  assert precision.policy_of(mixed) == "mixed_bfloat16" and mixed.name == model.name
  for ours, theirs in zip(mixed.weights, model.weights):
    assert ours.dtype == tf.float32 and np.array_equal(ours.numpy(), theirs.numpy())
  reference = model(x, training=False).numpy()
  computed = mixed(x, training=False)
  assert computed.dtype == tf.float32
  # bfloat16 keeps 8 significant bits: close to float32, but not equal.
  assert 0 < np.abs(computed.numpy() - reference).max() < 0.05 * np.abs(reference).max() + 0.05
  back = precision.with_policy(mixed, "float32")
  assert set(compute_dtypes(back).values()) == {"float32"}
  np.testing.assert_allclose(back(x, training=False).numpy(), reference, rtol=1e-5, atol=1e-5)
  assert precision.with_policy(model, "float32") is model
  with pytest.raises(ValueError, match="mixed_float16"):
    precision.with_policy(model, "mixed_float16")


def test_distiller_losses_of_a_mixed_student_match_float32():
  """A bfloat16 student's hard-label, soft-target and feature losses are float32's, within 5%."""
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
  y = rng.integers(0, 10, 16)
  teacher = models.build_model("resnet8", 10, (16, 16, 3))
  student = models.build_model("resnet8", 10, (16, 16, 3))
  results = {}
  for policy in ("float32", "mixed_bfloat16"):
    # The feature loss reads a bfloat16 tap of the mixed student (its logits are float32).
    losses = [LogitsDistillation(temperature=4.0), FeatureDistillation("stage3", "stage3")]
    distiller = Distiller(teacher, precision.with_policy(student, policy), losses)
    distiller.compile(optimizer=tf_keras.optimizers.SGD(0.0), metrics=["accuracy"])
    results[policy] = distiller.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
  for name in ("loss", "student_loss", "distillation_loss"):
    assert results["mixed_bfloat16"][name] == pytest.approx(results["float32"][name], rel=0.05)
  distiller.compile(optimizer=tf_keras.optimizers.SGD(0.01), metrics=["accuracy"])
  before = distiller.student.get_weights()
  history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)  # without loss scaling
  assert np.isfinite(history.history["loss"]).all()
  assert any(not np.array_equal(a, b) for a, b in zip(before, distiller.student.get_weights()))
  assert {v.dtype for v in distiller.student.trainable_variables} == {tf.float32}


@pytest.mark.slow
def test_pipeline_trains_in_bfloat16_and_saves_float32(image_folder, tmp_path):
  workdir = str(tmp_path / "run")
  config = tiny_config(image_folder)
  config.train.precision = "mixed_bfloat16"
  config.stages = ("teacher", "distill", "export")
  config.export.modes = ("int8",)
  config.teacher.model, config.teacher.epochs = "resnet8", 1  # what is trained does not matter here
  pipeline.run_pipeline(config, workdir)
  for stage in ("teacher", "distill"):
    saved = tf_keras.models.load_model(os.path.join(workdir, stage, "model.keras"))
    assert set(compute_dtypes(saved).values()) == {"float32"}, stage
  history = open(os.path.join(workdir, "teacher", "history.csv")).read().splitlines()
  assert len(history) == 2  # header and the teacher's epoch
  int8 = graph.read(os.path.join(workdir, "export", "distill_int8.tflite"))
  assert "CONV_2D" in int8.op_names()


@pytest.mark.parametrize("cpu, onednn, env, expected", [
    ({"avx2", "fma"}, False, None, ["bfloat16 emulated", "oneDNN hint"]),
    ({"avx2", "avx512f", "avx512_bf16"}, False, None, []),  # bfloat16 in hardware; not AVX2-only
    ({"avx2", "amx_bf16"}, True, None, []),   # TensorFlow turned oneDNN on by itself
    ({"avx2"}, False, "0", ["bfloat16 emulated"]),  # the user chose: no hint
    (set(), None, None, []),                  # no /proc/cpuinfo: nothing is guessed
])
def test_check_hardware_warns_of_emulated_bfloat16_and_names_onednn_on_an_avx2_cpu(
    cpu, onednn, env, expected, monkeypatch, caplog):
  monkeypatch.setattr(precision, "cpu_flags", lambda: cpu)
  monkeypatch.setattr(precision, "onednn_enabled", lambda: onednn)
  if env is None:
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
  else:
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", env)
  caplog.set_level("INFO", logger="absl")  # other tests may have set absl's own level
  precision.check_hardware("mixed_bfloat16")
  said = [name for name, text in (("bfloat16 emulated", "TensorFlow emulates bfloat16 here"),
                                  ("oneDNN hint", "TF_ENABLE_ONEDNN_OPTS=1, set before Python"))
          if text in caplog.text]
  assert said == expected


def test_cpu_flags_and_onednn_are_read_from_this_machine():
  flags = precision.cpu_flags()
  if os.path.exists("/proc/cpuinfo") and os.uname().machine == "x86_64":
    assert "sse2" in flags  # every x86-64 CPU has it
  assert precision.onednn_enabled() in (True, False)  # this TensorFlow can tell
