"""BatchNorm statistics re-estimated from training batches: NumPy reference, and before validation."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfkd import batch_norm


def conv_bn_model():
  inputs = tf_keras.Input((8, 8, 3))
  x = tf_keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
  x = tf_keras.layers.BatchNormalization(name="bn")(x)
  x = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.ReLU()(x))
  return tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(x))


def expected_statistics(model, batches):
  """The mean over batches of each batch's per-channel mean and (Bessel-corrected, as
  TensorFlow's fused BatchNorm averages it) variance of the conv's outputs."""
  conv = tf_keras.Model(model.inputs, model.get_layer("conv").output)
  outputs = [conv(x).numpy().reshape(-1, 4) for x in batches]
  return (np.mean([o.mean(axis=0) for o in outputs], axis=0),
          np.mean([o.var(axis=0, ddof=1) for o in outputs], axis=0))


def test_reestimate_averages_the_batch_statistics_and_changes_nothing_else():
  tf_keras.utils.set_random_seed(0)
  model = conv_bn_model()
  bn = model.get_layer("bn")
  bn.moving_mean.assign(np.full(4, 100.0, np.float32))   # stale, as early in training
  bn.moving_variance.assign(np.full(4, 1e-3, np.float32))
  others = [w.numpy().copy() for w in model.weights if "moving" not in w.name]
  rng = np.random.default_rng(0)
  batches = [rng.normal(2.0, 3.0, (16, 8, 8, 3)).astype(np.float32) for _ in range(3)]
  assert batch_norm.reestimate(model, batches, batches=5) == 3   # the data ended first
  mean, variance = expected_statistics(model, batches)
  np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-4)
  assert bn.momentum == 0.99
  for before, after in zip(others, [w.numpy() for w in model.weights if "moving" not in w.name]):
    np.testing.assert_array_equal(before, after)
  assert batch_norm.reestimate(model, batches, batches=2) == 2   # only the first two count
  np.testing.assert_allclose(bn.moving_mean.numpy(), expected_statistics(model, batches[:2])[0],
                             rtol=1e-4, atol=1e-5)


class MovingStatistics(tf_keras.callbacks.Callback):
  """Records the BatchNorm layer's moving mean when each validation begins."""

  def __init__(self, layer):
    super().__init__()
    self.layer, self.means = layer, []

  def on_test_begin(self, logs=None):
    self.means.append(self.layer.moving_mean.numpy().copy())


def test_fit_validates_with_reestimated_statistics_and_keeps_its_moving_ones():
  tf_keras.utils.set_random_seed(1)
  rng = np.random.default_rng(1)
  x = rng.normal(0.0, 1.0, (64, 8, 8, 3)).astype(np.float32)
  y = (x[:, :, :, 0].mean(axis=(1, 2)) > 0).astype(np.int32)
  model = conv_bn_model()
  model.compile(tf_keras.optimizers.SGD(0.5), tf_keras.losses.SparseCategoricalCrossentropy(
      from_logits=True), metrics=["accuracy"])
  train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
  inputs = train.map(lambda features, labels: features)
  bn = model.get_layer("bn")
  moving = MovingStatistics(bn)   # runs before the re-estimation: the statistics training left
  history = model.fit(train, validation_data=(x[:32], y[:32]), epochs=2, verbose=0, callbacks=[
      moving, batch_norm.ReestimateBeforeValidation(model, inputs, batches=3)])
  # Training's own moving statistics are back after each validation...
  np.testing.assert_array_equal(bn.moving_mean.numpy(), moving.means[-1])
  # ...which scored the final weights with statistics from the first 3 training batches.
  mean, _ = expected_statistics(model, [x[:16], x[16:32], x[32:48]])
  assert np.abs(mean - moving.means[-1]).max() > 1e-3   # the two differ, so this tells them apart
  assert batch_norm.reestimate(model, inputs, batches=3) == 3
  np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
  loss, accuracy = model.evaluate(x[:32], y[:32], verbose=0)
  assert history.history["val_loss"][-1] == pytest.approx(loss, rel=1e-6)
  assert history.history["val_accuracy"][-1] == accuracy
