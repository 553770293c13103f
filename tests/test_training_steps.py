"""training.build_step_variables: `fit_resumable` traces the training step once and trains as `fit`."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfkd
from tests.test_pipeline import InterruptAfter
from tfkd import models, training

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 255, (48, 8, 8, 3)).astype(np.float32)
Y = RNG.integers(0, 4, 48)


def compiled(kind):
  tf_keras.utils.set_random_seed(0)
  student = models.build_model("resnet8", 4, (8, 8, 3), filters=(8, 8, 8))
  optimizer = tf_keras.optimizers.SGD(0.05, momentum=0.9)  # slots: variables per weight
  if kind == "model":
    student.compile(optimizer, tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    return student, student
  teacher = models.build_model("resnet8", 4, (8, 8, 3), filters=(8, 8, 16))
  teacher.trainable = False
  distiller = tfkd.Distiller(teacher, student, [tfkd.LogitsDistillation(temperature=4.0),
                                                 tfkd.FeatureDistillation("stage3", "stage3",
                                                                          adapter=True)])
  distiller.compile(optimizer, metrics=["accuracy"])
  return distiller, student


@pytest.mark.parametrize("kind", ["model", "distiller"])
def test_fit_resumable_traces_the_step_once_and_trains_as_keras_fit(kind, tmp_path):
  batches = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
  ours, our_student = compiled(kind)
  ours_history = training.fit_resumable(ours, batches, None, 2, str(tmp_path / "run"))
  theirs, their_student = compiled(kind)
  theirs_history = theirs.fit(batches, epochs=2, verbose=0)
  # Keras makes the optimizer's slots and the metrics' variables in its first traced step, and
  # TensorFlow traces a step that makes variables twice; made before, the step is traced once.
  assert ours.train_function.experimental_get_tracing_count() == 1
  assert theirs.train_function.experimental_get_tracing_count() == 2
  for ours_weight, theirs_weight in zip(our_student.get_weights(), their_student.get_weights()):
    np.testing.assert_allclose(ours_weight, theirs_weight, rtol=1e-5, atol=1e-6)
  assert ours_history.history.keys() == theirs_history.history.keys()
  for name, values in theirs_history.history.items():
    np.testing.assert_allclose(ours_history.history[name], values, rtol=1e-5, err_msg=name)
  # The adapter of the feature loss is trained too: it was in the optimizer's variables.
  if kind == "distiller":
    assert len(ours.optimizer.variables) == len(theirs.optimizer.variables)


def test_a_resumed_fit_restores_the_momentum_made_before_fit(tmp_path):
  # The slots now exist before BackupAndRestore reads its checkpoint: the resumed run must
  # still get their saved values and end where an uninterrupted run ends.
  batches = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
  whole, _ = compiled("model")
  training.fit_resumable(whole, batches, None, 3, str(tmp_path / "whole"))
  cut, _ = compiled("model")
  with pytest.raises(KeyboardInterrupt):
    training.fit_resumable(cut, batches, None, 3, str(tmp_path / "cut"),
                           callbacks=[InterruptAfter(2)])
  resumed, _ = compiled("model")
  training.fit_resumable(resumed, batches, None, 3, str(tmp_path / "cut"))
  assert int(resumed.optimizer.iterations.numpy()) == 9
  for a, b in zip(whole.get_weights(), resumed.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
