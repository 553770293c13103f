"""The Distiller: loss values, frozen teacher, student-only saving, mismatch errors,
several teachers, cached teacher logits, losses with weights."""

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


# Several teachers.

def small_ds_cnn(name, classes=3):
  return models.ds_cnn(classes, (16, 16, 3), filters=(4, 8, 8, 8),
                       normalization=([100.0] * 3, [900.0] * 3), name=name)


def test_teachers_of_different_architectures_average_their_logits(batch):
  x, y = batch
  resnet_teacher, cnn_teacher = small_resnet("resnet_teacher", filters=(8, 8, 16)), small_ds_cnn("cnn_teacher")
  student = small_resnet("student")
  distiller = Distiller([resnet_teacher, cnn_teacher], student, losses.LogitsDistillation(2.0),
                        student_loss_weight=0.4, teacher_weights=[3.0, 1.0])
  distiller.compile(metrics=["accuracy"])
  got = distiller.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
  ensemble = (0.75 * resnet_teacher.predict(x, verbose=0) + 0.25 * cnn_teacher.predict(x, verbose=0))
  total, _, kd = reference_loss(ensemble, student.predict(x, verbose=0), y, 0.4, 2.0)
  assert got["loss"] == pytest.approx(total, rel=1e-4)
  assert got["distillation_loss"] == pytest.approx(kd, rel=1e-4)


def test_teacher_weights_are_checked():
  teachers = [small_resnet("t1"), small_resnet("t2")]
  with pytest.raises(ValueError, match="1 teacher_weights for 2 teachers"):
    Distiller(teachers, small_resnet("s"), losses.LogitsDistillation(), teacher_weights=[1.0])
  with pytest.raises(ValueError, match="teacher_weights=.*positive sum"):
    Distiller(teachers, small_resnet("s"), losses.LogitsDistillation(), teacher_weights=[0, 0])
  with pytest.raises(ModelMismatchError, match="10 classes"):
    Distiller([teachers[0], small_resnet("t3", classes=10)], small_resnet("s"),
              losses.LogitsDistillation())


# Cached teacher logits.

def test_cached_logits_replace_the_teacher(batch):
  x, y = batch
  teacher, student = small_resnet("teacher"), small_resnet("student")
  distiller = Distiller(teacher, student, losses.LogitsDistillation(3.0), student_loss_weight=0.2)
  distiller.compile(metrics=["accuracy"])
  cached = np.random.default_rng(5).normal(size=(32, 3)).astype(np.float32) * 4  # not the teacher's
  got = distiller.evaluate((x, cached), y, batch_size=32, return_dict=True, verbose=0)
  total, _, kd = reference_loss(cached, student.predict(x, verbose=0), y, 0.2, 3.0)
  assert got["loss"] == pytest.approx(total, rel=1e-4)
  assert got["distillation_loss"] == pytest.approx(kd, rel=1e-4)


def test_offline_teacher_trains_from_logits_alone(batch):
  x, y = batch
  student = small_resnet("student")
  distiller = Distiller(None, student, losses.LogitsDistillation(3.0), student_loss_weight=0.2)
  distiller.compile(optimizer=tf_keras.optimizers.SGD(0.05), metrics=["accuracy"])
  logits = np.random.default_rng(6).normal(size=(32, 3)).astype(np.float32)
  before = student.predict(x, verbose=0)
  history = distiller.fit((x, logits), y, batch_size=8, epochs=1, verbose=0)
  assert history.history["distillation_loss"][0] > 0
  assert not np.allclose(before, student.predict(x, verbose=0))
  # Without logits, validation measures the student alone: loss = cross-entropy.
  got = distiller.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
  _, ce, _ = reference_loss(logits, student.predict(x, verbose=0), y, 0.2, 3.0)
  assert got["loss"] == pytest.approx(ce, rel=1e-4) and got["distillation_loss"] == 0
  with pytest.raises(ValueError, match=r"must carry cached teacher logits as \(\(x, teacher_logits\), y\)"):
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_cached_logits_are_refused_with_feature_losses(batch):
  x, y = batch
  distiller = Distiller(small_resnet("teacher"), small_resnet("student"),
                        [losses.LogitsDistillation(), losses.FeatureDistillation("stage3", "stage3")])
  distiller.compile()
  logits = np.zeros((32, 3), np.float32)
  with pytest.raises(ValueError, match=r"read teacher layers \['stage3'\].*teacher runs live"):
    distiller.fit((x, logits), y, batch_size=8, epochs=1, verbose=0)
  with pytest.raises(ValueError, match="distillation_losses read teacher layers.*no teacher model"):
    Distiller(None, small_resnet("s"), losses.FeatureDistillation("stage3", "stage3"))


def test_cached_logits_with_wrong_classes_are_refused(batch):
  x, y = batch
  distiller = Distiller(None, small_resnet("student"), losses.LogitsDistillation())
  distiller.compile()
  with pytest.raises(ModelMismatchError, match="5 columns but the student predicts 3 classes"):
    distiller.fit((x, np.zeros((32, 5), np.float32)), y, batch_size=8, epochs=1, verbose=0)


# Losses with weights: trained, checkpointed, never exported.

def adapter_weights(distiller):
  return [w.numpy().copy() for loss in distiller.distillation_losses for w in loss.trainable_weights()]


def test_feature_adapters_train_resume_and_stay_out_of_the_student(batch, tmp_path):
  x, y = batch
  def make():
    tf_keras.utils.set_random_seed(1)
    # Student stage2 has 8 channels, the teacher's 16: a 1x1 conv adapter maps them.
    distiller = Distiller(small_resnet("teacher", filters=(8, 16, 16)), small_resnet("student"),
                          [losses.LogitsDistillation(), losses.FeatureDistillation("stage2", "stage2"),
                           losses.ContrastiveDistillation(projection_dim=4)],
                          [1.0, 1.0, 0.5], student_loss_weight=0.5)
    distiller.compile(optimizer=tf_keras.optimizers.SGD(0.05))
    return distiller

  class Interrupt(tf_keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
      self.saved = adapter_weights(self.model)
      raise KeyboardInterrupt   # after BackupAndRestore has saved the epoch

  class Restored(tf_keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      self.weights = adapter_weights(self.model)   # after BackupAndRestore has restored

  backup = os.path.join(tmp_path, "backup")
  first = make()
  initial = adapter_weights(first)
  interrupt = Interrupt()
  with pytest.raises(KeyboardInterrupt):
    first.fit(x, y, batch_size=8, epochs=3, verbose=0,
              callbacks=[tf_keras.callbacks.BackupAndRestore(backup), interrupt])
  assert len(initial) == 4 and all(not np.allclose(a, b) for a, b in zip(initial, interrupt.saved))

  second, restored = make(), Restored()
  np.testing.assert_allclose(adapter_weights(second)[0], initial[0])  # same fresh start
  second.fit(x, y, batch_size=8, epochs=3, verbose=0,
             callbacks=[tf_keras.callbacks.BackupAndRestore(backup), restored])
  for saved, loaded in zip(interrupt.saved, restored.weights):
    np.testing.assert_allclose(saved, loaded)

  path = os.path.join(tmp_path, "student.keras")
  training.save_model_atomic(second.student, path)
  loaded = tf_keras.models.load_model(path)
  assert loaded.count_params() == small_resnet("fresh").count_params()


def test_accuracy_counts_the_labelled_examples_only(batch):
  x, _ = batch
  teacher, student = small_resnet("teacher"), small_resnet("student")
  predicted = student.predict(x, verbose=0).argmax(-1)
  y = predicted.copy()           # every labelled example right...
  unlabelled = np.arange(len(y)) % 2 == 1
  y[unlabelled] = -1             # ...and the unlabelled half, read as class 0, would be wrong
  assert np.any(predicted[unlabelled] != 0)
  distiller = Distiller(teacher, student, losses.LogitsDistillation(3.0), student_loss_weight=0.2)
  distiller.compile(metrics=["accuracy"])
  got = distiller.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
  assert got["accuracy"] == 1.0
