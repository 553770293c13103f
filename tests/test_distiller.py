"""The Distiller: loss values, frozen teacher, student-only saving, mismatch errors."""

import os

import numpy as np
import pytest
import tf_keras

from tfkd import losses, models, training
from tfkd.distiller import Distiller
from tfkd.errors import ModelMismatchError


def small_resnet(name, classes=3, shape=(16, 16, 3), filters=(4, 8, 8)):
  return models.resnet(8, classes, shape, filters=filters, normalization=([100.0] * 3, [900.0] * 3),
                       name=name)


def reference_loss(teacher_logits, student_logits, labels, alpha, temperature):
  """α·CE + (1−α)·T²·KL(softmax(t/T) ‖ softmax(s/T)) in NumPy, averaged over the batch."""
  def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
  ce = -log_softmax(student_logits)[np.arange(len(labels)), labels]
  log_p, log_q = log_softmax(teacher_logits / temperature), log_softmax(student_logits / temperature)
  kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
  return np.mean(alpha * ce + (1 - alpha) * temperature**2 * kl), ce.mean(), (temperature**2 * kl).mean()


@pytest.fixture
def batch():
  rng = np.random.default_rng(0)
  return rng.uniform(0, 255, (32, 16, 16, 3)).astype(np.float32), rng.integers(0, 3, 32)


def test_loss_matches_numpy_reference(batch):
  x, y = batch
  teacher, student = small_resnet("teacher", filters=(8, 8, 16)), small_resnet("student")
  distiller = Distiller(teacher, student, losses.LogitsDistillation(temperature=3.0),
                        student_loss_weight=0.3)
  distiller.compile(optimizer="sgd", metrics=["accuracy"])
  got = distiller.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
  total, ce, kd = reference_loss(teacher.predict(x, verbose=0), student.predict(x, verbose=0), y, 0.3, 3.0)
  assert got["loss"] == pytest.approx(total, rel=1e-4)
  assert got["student_loss"] == pytest.approx(ce, rel=1e-4)
  assert got["distillation_loss"] == pytest.approx(kd, rel=1e-4)


def test_only_student_trains(batch, tmp_path):
  x, y = batch
  teacher, student = small_resnet("teacher"), small_resnet("student")
  teacher_before = [w.copy() for w in teacher.get_weights()]  # BN statistics included
  student_before = [w.copy() for w in student.get_weights()]
  distiller = Distiller(teacher, student, losses.LogitsDistillation(2.0), student_loss_weight=0.5)
  distiller.compile(optimizer=tf_keras.optimizers.SGD(0.05), metrics=["accuracy"])
  history = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0)
  assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= set(history.history)
  for before, after in zip(teacher_before, teacher.get_weights()):
    np.testing.assert_array_equal(before, after)
  assert any(not np.allclose(b, a) for b, a in zip(student_before, student.get_weights()))

  path = os.path.join(tmp_path, "student.keras")
  training.save_model_atomic(distiller.student, path)
  loaded = tf_keras.models.load_model(path)
  assert loaded.name == "student" and loaded.count_params() == student.count_params()
  np.testing.assert_allclose(loaded.predict(x, verbose=0), student.predict(x, verbose=0), atol=1e-5)


def test_mismatched_classes_are_refused():
  with pytest.raises(ModelMismatchError, match="10 classes.*3.*same dataset"):
    Distiller(small_resnet("t", classes=10), small_resnet("s", classes=3), losses.LogitsDistillation())


def test_mismatched_input_shapes_are_refused():
  with pytest.raises(ModelMismatchError, match=r"\(32, 32, 3\).*\(16, 16, 3\)"):
    Distiller(small_resnet("t", shape=(32, 32, 3)), small_resnet("s"), losses.LogitsDistillation())


def test_student_loss_weight_range_is_checked():
  with pytest.raises(ValueError, match="student_loss_weight"):
    Distiller(small_resnet("t"), small_resnet("s"), losses.LogitsDistillation(), student_loss_weight=1.5)
