"""The image builders build the same network in Keras 3 (`keras_module=keras`) as in tf_keras.

`bench/distill_speed.py` compares tfkd's Distiller with Keras 3's on these twins, so the
comparison is only fair while they are the same network: same layers, same weights, same logits.
"""

import numpy as np
import pytest

import tfkd  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
import keras
import tf_keras
from tfkd import models

RNG = np.random.default_rng(0)
PIXELS = RNG.uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
NORMALIZATION = ([125.0, 123.0, 114.0], [3900.0, 3700.0, 4300.0])


def build_twins(name):
  """(tf_keras model, Keras 3 model) of one architecture."""
  return tuple(models.build_model(name, 10, (32, 32, 3), normalization=NORMALIZATION,
                                  keras_module=keras_module)
               for keras_module in (tf_keras, keras))


def test_default_still_builds_tf_keras():
  model = models.build_model("resnet8", 10, (32, 32, 3))
  assert isinstance(model, tf_keras.Model) and not isinstance(model, keras.Model)


def test_keras3_resnet8_is_the_tf_keras_one():
  keras2_model, keras3_model = build_twins("resnet8")
  assert isinstance(keras3_model, keras.Model) and not isinstance(keras3_model, tf_keras.Model)
  assert keras3_model.count_params() == keras2_model.count_params()
  assert [l.name for l in keras3_model.layers] == [l.name for l in keras2_model.layers]
  # set_weights pairs weights by position: the order must be the same variables, not just shapes.
  assert ([w.path for w in keras3_model.weights]
          == [w.name.removesuffix(":0") for w in keras2_model.weights])
  keras3_model.set_weights(keras2_model.get_weights())
  for training in (False, True):   # inference (moving statistics) and batch statistics
    keras2_logits = keras2_model(PIXELS, training=training).numpy()
    keras3_logits = keras.ops.convert_to_numpy(keras3_model(PIXELS, training=training))
    np.testing.assert_allclose(keras3_logits, keras2_logits, atol=1e-5, rtol=0)


def test_text_models_refuse_keras3():
  with pytest.raises(ValueError, match="tf_keras only"):
    models.build_model("text_cnn", 2, (16,), keras_module=keras)


@pytest.mark.parametrize("keras_module", [tf_keras, keras], ids=["tf_keras", "keras3"])
def test_step_runner_trains_on_the_batches_in_order(keras_module):
  """The bench's timed step (`fit`'s train_function) is the step `train_on_batch` runs."""
  from bench import common  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)
  batches = [(rng.normal(size=(4, 3)).astype(np.float32), rng.integers(0, 2, 4))
             for _ in range(2)]

  def make():
    keras_module.utils.set_random_seed(0)
    model = keras_module.Sequential([keras_module.Input((3,)), keras_module.layers.Dense(2)])
    model.compile(optimizer=keras_module.optimizers.SGD(0.5),
                  loss=keras_module.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model

  timed, reference = make(), make()
  run_step = common.step_runner(timed, batches)   # one train_on_batch on batch 0 to build
  logs = [run_step() for _ in range(3)]
  want = [float(reference.train_on_batch(x, y))
          for x, y in [batches[0], batches[0], batches[1], batches[0]]]
  # A step logs the mean loss since the metrics were last reset, by the building train_on_batch.
  np.testing.assert_allclose([float(log["loss"]) for log in logs],
                             (np.cumsum(want) / np.arange(1, 5))[1:], rtol=1e-5)
  for got, want in zip(timed.get_weights(), reference.get_weights()):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(timed.get_weights()[0], make().get_weights()[0])
