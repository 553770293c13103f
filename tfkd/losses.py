"""Distillation losses for `tfkd.Distiller`, shaped like Keras 3's `keras.distillation`.

A loss compares what the teacher and the student compute for the same batch and
returns one value per example; the `Distiller` weights, averages and (under a
`tf.distribute` strategy) scales them. A loss reads the models' logits unless it
names layers with `teacher_layer_name` / `student_layer_name`.

Example:
  loss = LogitsDistillation(temperature=4.0)
  per_example = loss.compute_loss(teacher_logits, student_logits)
"""

from typing import Optional

import tensorflow as tf


class DistillationLoss:
  """Base class: override `compute_loss`.

  Attributes:
    teacher_layer_name: teacher layer whose output the loss reads (None: logits).
    student_layer_name: student layer whose output the loss reads (None: logits).
  """
  teacher_layer_name: Optional[str] = None
  student_layer_name: Optional[str] = None

  def compute_loss(self, teacher_outputs, student_outputs):
    """Returns a float32 tensor of shape [batch]: the loss of each example."""
    raise NotImplementedError

  def trainable_weights(self):
    """Weights the loss itself learns with the student (e.g. adapters); none by default."""
    return []

  def get_config(self) -> dict:
    return {}


class LogitsDistillation(DistillationLoss):
  """Soft targets (Hinton et al. 2015): T² · KL(softmax(t/T) ‖ softmax(s/T)).

  The T² factor keeps the gradient's scale independent of the temperature, so
  the weight between this loss and the hard-label loss means the same at any T.

  Args:
    temperature: softmax temperature T > 0; 3 to 5 is usual.
  """

  def __init__(self, temperature: float = 3.0):
    if temperature <= 0:
      raise ValueError(f"temperature must be > 0, got {temperature}.")
    self.temperature = float(temperature)

  def compute_loss(self, teacher_outputs, student_outputs):
    t = self.temperature
    teacher_log_probs = tf.nn.log_softmax(tf.cast(teacher_outputs, tf.float32) / t)
    student_log_probs = tf.nn.log_softmax(tf.cast(student_outputs, tf.float32) / t)
    kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
    return t * t * kl

  def get_config(self):
    return {"temperature": self.temperature}
