"""Distillation losses against NumPy reference computations."""

import numpy as np
import pytest

from tfkd import losses


def softmax(z):
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_logits_distillation_matches_numpy(temperature):
  rng = np.random.default_rng(0)
  teacher, student = rng.normal(size=(2, 8, 10)) * 3
  p, q = softmax(teacher / temperature), softmax(student / temperature)
  expected = temperature**2 * np.sum(p * (np.log(p) - np.log(q)), axis=-1)
  got = losses.LogitsDistillation(temperature).compute_loss(
      teacher.astype(np.float32), student.astype(np.float32)).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_logits_distillation_is_zero_for_identical_logits():
  logits = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
  np.testing.assert_allclose(losses.LogitsDistillation(3.0).compute_loss(logits, logits), 0, atol=1e-5)


def test_temperature_must_be_positive():
  with pytest.raises(ValueError, match="temperature"):
    losses.LogitsDistillation(0.0)
