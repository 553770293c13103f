"""BatchNormalization statistics re-estimated from training batches, the weights unchanged.

In inference mode a BatchNormalization layer normalises with moving averages of the batch
statistics seen in training. Early in training, at a high learning rate, the weights move
faster than those averages follow, and inference-mode accuracy reads far below what the
weights can do: a 5-block DS-CNN distilled on CIFAR-10 read 23% validation accuracy after its
second epoch with its moving statistics, 64% with statistics re-estimated from 2,560 training
images (BENCHMARKS §19, "Validation before BatchNorm settles"). A search that stops trials on
early validation accuracy (Hyperband) then stops BatchNorm-heavy families for noise. Weight-
sharing NAS re-estimates them before scoring a sub-network for the same reason (Cai et al.,
"Once-for-All", ICLR 2020; Yu et al., "Slimmable networks", ICLR 2019).

Example:
  reestimate(student, train_inputs, batches=20)       # once, for good
  model.fit(train, validation_data=val,               # for each validation only
            callbacks=[ReestimateBeforeValidation(student, train_inputs, batches=20)])
"""

import itertools

import tensorflow as tf
import tf_keras


def batch_norm_layers(model) -> list:
  """Every BatchNormalization layer of `model` (tf_keras or Keras 3), nested models included."""
  return [layer for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
          if any(cls.__name__ == "BatchNormalization" for cls in type(layer).__mro__)]


def moving_statistics(model) -> list:
  """[(moving mean, moving variance)] of each BatchNormalization layer, as NumPy copies."""
  return [(layer.moving_mean.numpy(), layer.moving_variance.numpy())
          for layer in batch_norm_layers(model)]


def set_moving_statistics(model, statistics: list) -> None:
  """Puts back what `moving_statistics(model)` returned."""
  for layer, (mean, variance) in zip(batch_norm_layers(model), statistics):
    layer.moving_mean.assign(mean)
    layer.moving_variance.assign(variance)


def reestimate(model, inputs, batches: int) -> int:
  """Sets each BatchNormalization layer's moving mean and variance to the average of its batch
  statistics over `batches` batches of `inputs` (forward passes in training mode, as in training).

  Args:
    model: a tf_keras (or Keras 3) model; its weights other than the moving statistics do
      not change.
    inputs: an iterable of input batches (e.g. a `tf.data.Dataset` of features only).
    batches: how many batches to average.

  Returns:
    The number of batches used (fewer when `inputs` ends first); 0 leaves the model as it was.
  """
  layers = batch_norm_layers(model)
  if not layers or batches <= 0:
    return 0
  momenta = [layer.momentum for layer in layers]
  strategy = tf.distribute.get_strategy()
  used = 0
  try:
    for used, x in enumerate(itertools.islice(inputs, batches), start=1):
      for layer in layers:
        # moving = momentum · moving + (1 − momentum) · batch: with momentum (k−1)/k, the k-th
        # batch makes the moving value the plain mean of the k batches' statistics.
        layer.momentum = (used - 1) / used
      strategy.run(lambda batch: model(batch, training=True), args=(x,))
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum
  return used


class ReestimateBeforeValidation(tf_keras.callbacks.Callback):
  """Validates `fit`'s model with BatchNorm statistics re-estimated (`reestimate`) for it.

  The moving statistics are put back after each validation, so training and the model it
  ends with are what they would be without this callback: at the end of a decayed schedule
  the moving averages (over about 100 batches) are the better estimate.

  Args:
    model: the model whose statistics to set (the student inside a `Distiller`).
    inputs: a dataset of training input batches (features only); each validation reads the
      first `batches` of a fresh pass over it.
    batches: batches to average.
  """

  def __init__(self, model: tf_keras.Model, inputs: tf.data.Dataset, batches: int):
    super().__init__()
    self.target, self.inputs, self.batches = model, inputs, batches
    self._moving = None

  def on_test_begin(self, logs=None):
    self._moving = moving_statistics(self.target)
    reestimate(self.target, self.inputs, self.batches)

  def on_test_end(self, logs=None):
    set_moving_statistics(self.target, self._moving)
