"""A Keras 3 model tfkd cannot rebuild in tf_keras, run by Keras 3 as a teacher.

`tfkd.keras3_files` rebuilds a Keras 3 teacher in tf_keras where it can; a subclassed model or
one with custom layers raises `keras3_files.NotRebuildable`. Such a model still teaches through
its outputs: Keras 3 runs it (`Keras3Teacher`), on the cached views once
(`distill.cached_teacher`) or inside the `Distiller`'s training step (both are TensorFlow
graphs). Losses that read a teacher's layers need a tf_keras teacher.
"""

import numpy as np
import tensorflow as tf


class Keras3Teacher:
  """A Keras 3 model tfkd cannot rebuild, run by Keras 3 itself as a teacher.

  It is called like a tf_keras teacher (`teacher(x, training=False)`, `predict`), so the
  teacher checks, the view cache and a `Distiller` (logit losses) take it as they are. Its
  weights are Keras 3's, outside the `Distiller`: they are never trained.

  Args:
    model: the Keras 3 model (`keras3_files.NotRebuildable.model`).
    path: its file.
    log_probabilities: return the logarithms of its outputs (it ends in a softmax; see
      `teacher_checks.as_logits`).

  Example:
    try:
      teacher = model_files.load_model(path)
    except keras3_files.NotRebuildable as e:
      teacher = Keras3Teacher(e.model, path)
  """

  def __init__(self, model, path: str, log_probabilities: bool = False):
    self.model, self.path, self.name = model, path, model.name
    self.log_probabilities = log_probabilities
    # Traced once, as `teacher_compression.inference_function` traces a tf_keras teacher: the
    # graph labels a batch faster than a layer-by-layer eager call.
    self._infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    inputs = getattr(model, "inputs", None)  # a subclassed model has only its build shape
    shape = inputs[0].shape if inputs else model.get_build_config()["input_shape"]
    self.input_shape = (None,) + tuple(shape[1:])
    probe = np.zeros((1,) + tuple(d or 1 for d in shape[1:]),
                     inputs[0].dtype if inputs else np.float32)
    self.output_shape = (None,) + tuple(np.shape(self.model(probe, training=False))[1:])

  def _logits(self, outputs):
    if not self.log_probabilities:
      return outputs
    return tf.math.log(tf.maximum(tf.cast(outputs, tf.float32), np.finfo(np.float32).tiny))

  def __call__(self, x, training: bool = False):
    return self._logits(self.model(x, training=True) if training else self._infer(x))

  def predict(self, x, batch_size: int = 256, verbose: int = 0) -> np.ndarray:
    batching = {} if isinstance(x, tf.data.Dataset) else {"batch_size": batch_size}
    return np.asarray(self._logits(self.model.predict(x, verbose=verbose, **batching)))

  @property
  def trainable(self) -> bool:
    return self.model.trainable

  @trainable.setter
  def trainable(self, value: bool) -> None:  # the Distiller freezes its teachers
    self.model.trainable = value

  def count_params(self) -> int:
    return self.model.count_params()

  def get_weights(self) -> list:
    return self.model.get_weights()

  def set_weights(self, weights) -> None:
    self.model.set_weights(weights)
