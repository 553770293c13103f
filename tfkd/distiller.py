"""The `Distiller`: a Keras model that trains a student against a frozen teacher.

The API follows Keras 3's `keras.distillation.Distiller` but runs on Keras 2
(`tf_keras`), so tfmot's pruning and quantization wrappers can sit inside it.

    loss = α · student_loss(labels, student) + (1 − α) · Σᵢ wᵢ · distillation_lossᵢ(teacher, student)

with α = `student_loss_weight`. Examples labelled -1 have no hard label and
learn from the teacher alone (e.g. an augmented transfer set). Only the student (and any weights the losses
learn, such as adapters) is trained; the teacher runs in inference mode.
`distiller.student` is the model to save and export, without the teacher.

Example:
  distiller = Distiller(teacher, student, LogitsDistillation(temperature=4.0),
                        student_loss_weight=0.1)
  distiller.compile(optimizer="sgd", metrics=["accuracy"])
  distiller.fit(train_ds, epochs=30)
  distiller.student.save("student.keras")
"""

from typing import Optional, Sequence, Union

import tensorflow as tf
import tf_keras

from tfkd.errors import ModelMismatchError
from tfkd.losses import DistillationLoss


def check_compatible(teacher: tf_keras.Model, student: tf_keras.Model) -> None:
  """Raises `ModelMismatchError` unless both models share input shape and classes."""
  t_in, s_in = tuple(teacher.input_shape[1:]), tuple(student.input_shape[1:])
  if t_in != s_in:
    raise ModelMismatchError(
        f"Teacher {teacher.name!r} takes inputs of shape {t_in} but student {student.name!r} "
        f"takes {s_in}: build both for the same input shape (data.image_size / max_length).")
  t_out, s_out = teacher.output_shape[-1], student.output_shape[-1]
  if t_out != s_out:
    raise ModelMismatchError(
        f"Teacher {teacher.name!r} predicts {t_out} classes but student {student.name!r} "
        f"predicts {s_out}: train both on the same dataset (same num_classes).")


def layer_outputs(model: tf_keras.Model, layer_names: Sequence[Optional[str]]) -> tf_keras.Model:
  """A model sharing `model`'s weights that returns [logits] + the named layers' outputs.

  Args:
    model: a functional or sequential Keras model.
    layer_names: layer names; None stands for the logits (the model's output).

  Returns:
    `model` itself when only logits are asked for, else a multi-output model.
  """
  names = [n for n in layer_names if n is not None]
  if not names:
    return model
  missing = [n for n in names if n not in {l.name for l in model.layers}]
  if missing:
    raise ModelMismatchError(
        f"Model {model.name!r} has no layer named {missing}: pick from "
        f"{[l.name for l in model.layers]}.")
  return tf_keras.Model(model.inputs, [model.output] + [model.get_layer(n).output for n in names],
                        name=f"{model.name}_taps")


class Distiller(tf_keras.Model):
  """Trains `student` on labels and on the teacher's knowledge.

  Args:
    teacher: trained `tf_keras.Model` returning logits. Frozen.
    student: `tf_keras.Model` returning logits, with the teacher's input shape
      and number of classes.
    distillation_losses: a `DistillationLoss` or a list of them.
    distillation_loss_weights: one weight per distillation loss (default: 1 each).
    student_loss_weight: α in [0, 1], the weight of the hard-label loss.
    name: model name.
  """

  def __init__(self, teacher: tf_keras.Model, student: tf_keras.Model,
               distillation_losses: Union[DistillationLoss, Sequence[DistillationLoss]],
               distillation_loss_weights: Optional[Sequence[float]] = None,
               student_loss_weight: float = 0.5, name: str = "distiller", **kwargs):
    super().__init__(name=name, **kwargs)
    check_compatible(teacher, student)
    if isinstance(distillation_losses, DistillationLoss):
      distillation_losses = [distillation_losses]
    self.distillation_losses = list(distillation_losses)
    if distillation_loss_weights is None:
      distillation_loss_weights = [1.0] * len(self.distillation_losses)
    if len(distillation_loss_weights) != len(self.distillation_losses):
      raise ValueError(
          f"{len(distillation_loss_weights)} distillation_loss_weights for "
          f"{len(self.distillation_losses)} distillation_losses: give one weight per loss.")
    if not 0.0 <= student_loss_weight <= 1.0:
      raise ValueError(f"student_loss_weight must be in [0, 1], got {student_loss_weight}.")
    self.distillation_loss_weights = [float(w) for w in distillation_loss_weights]
    self.student_loss_weight = float(student_loss_weight)
    self.teacher = teacher
    self.teacher.trainable = False
    self.student = student
    # Each model is run once per step, returning logits plus every layer a loss reads.
    self._teacher_layers = [None] + sorted({l.teacher_layer_name for l in self.distillation_losses} - {None})
    self._student_layers = [None] + sorted({l.student_layer_name for l in self.distillation_losses} - {None})
    self._teacher_taps = layer_outputs(teacher, self._teacher_layers)
    self._student_taps = layer_outputs(student, self._student_layers)
    self.loss_tracker = tf_keras.metrics.Mean(name="loss")
    self.student_loss_tracker = tf_keras.metrics.Mean(name="student_loss")
    self.distillation_loss_tracker = tf_keras.metrics.Mean(name="distillation_loss")

  def compile(self, optimizer="sgd", loss=None, metrics=None, **kwargs):
    """Configures training.

    Args:
      optimizer: a Keras optimizer or its name.
      loss: per-example hard-label loss `fn(labels, logits) -> [batch]`;
        default: sparse categorical cross-entropy on logits.
      metrics: metrics of the student's logits against the labels, e.g. ["accuracy"].
    """
    super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
    self.student_loss_fn = loss or (lambda y, logits: tf_keras.losses.sparse_categorical_crossentropy(
        y, logits, from_logits=True))

  @property
  def metrics(self):
    return [self.loss_tracker, self.student_loss_tracker,
            self.distillation_loss_tracker] + super().metrics

  def call(self, inputs, training=False):
    return self.student(inputs, training=training)

  def _as_list(self, outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

  def _compute_losses(self, x, y, training):
    """Per-example total, hard-label and distillation losses, and the student's logits."""
    teacher_out = self._as_list(self._teacher_taps(x, training=False))
    student_out = self._as_list(self._student_taps(x, training=training))
    student_logits = student_out[0]
    # Examples labelled -1 (e.g. an augmented transfer set) learn from the teacher alone.
    labelled = tf.cast(y >= 0, tf.float32)
    student_loss = labelled * tf.cast(
        self.student_loss_fn(tf.maximum(y, 0), student_logits), tf.float32)
    distillation_loss = tf.zeros_like(student_loss)
    for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
      t = teacher_out[self._teacher_layers.index(loss.teacher_layer_name)]
      s = student_out[self._student_layers.index(loss.student_layer_name)]
      distillation_loss += weight * loss.compute_loss(t, s)
    total = (self.student_loss_weight * student_loss
             + (1.0 - self.student_loss_weight) * distillation_loss)
    return total, student_loss, distillation_loss, student_logits, labelled

  def _trainable_variables(self):
    extra = [w for loss in self.distillation_losses for w in loss.trainable_weights()]
    return self.student.trainable_variables + extra

  def _update_metrics(self, y, total, student_loss, distillation_loss, logits, labelled):
    self.loss_tracker.update_state(total)
    self.student_loss_tracker.update_state(student_loss, sample_weight=labelled)
    self.distillation_loss_tracker.update_state(distillation_loss)
    self.compiled_metrics.update_state(tf.maximum(y, 0), logits, sample_weight=labelled)
    return {m.name: m.result() for m in self.metrics}

  def train_step(self, data):
    x, y = data[0], data[1]
    with tf.GradientTape() as tape:
      total, student_loss, distillation_loss, logits, labelled = self._compute_losses(
          x, y, training=True)
      # Averaged over the global batch, so gradients summed across replicas of a
      # tf.distribute strategy equal the single-device gradient.
      loss = tf.nn.compute_average_loss(total)
      if self.student.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
    variables = self._trainable_variables()
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return self._update_metrics(y, total, student_loss, distillation_loss, logits, labelled)

  def test_step(self, data):
    x, y = data[0], data[1]
    return self._update_metrics(y, *self._compute_losses(x, y, training=False))
