"""The `Distiller`: a Keras model that trains a student against frozen teachers.

The API follows Keras 3's `keras.distillation.Distiller` but runs on Keras 2
(`tf_keras`), so tfmot's pruning and quantization wrappers can sit inside it.

    loss = α · student_loss(labels, student) + (1 − α) · Σᵢ wᵢ · distillation_lossᵢ(teacher, student)

with α = `student_loss_weight`. Examples labelled -1 have no hard label and
learn from the teacher alone (e.g. an augmented transfer set). Only the student
(and any weights the losses learn, such as adapters) is trained; the teachers
run in inference mode. `distiller.student` is the model to save and export,
without the teachers or the losses' weights. A loss with a memory (SEED's queue of
teacher embeddings) updates it after each training step (`DistillationLoss.update_state`).

Teachers:
  - one model, or a list of models of any architectures, each with the
    student's input shape and classes. Their logits are averaged with
    `teacher_weights` (normalised to sum to 1); losses that read a named teacher
    layer read it from the first teacher.
  - cached logits: when a batch is `((x, teacher_logits), y)` (see
    `tfkd.teacher_cache`) the teachers are not run for it, so a training step
    costs about a plain student step. Only losses that read logits can use them.
  - `teacher=None`: an offline teacher whose logits come with every training
    batch. Validation batches without logits then measure the student alone.

Adversarially robust distillation (`adversarial=AdversarialDistillation(...)`, ARD or
RSLAD, `tfkd.adversarial`): each training step crafts adversarial inputs x' against the
student and the distillation losses compare the teachers on the clean x with the
student on x' (a share β of them; the rest and the hard-label loss read the clean x).

Distribution: build and compile the Distiller inside `strategy.scope()`. Losses
are averaged over the global batch, so with per-example losses the gradient
summed over replicas is the single-device gradient.

Example:
  distiller = Distiller(teacher, student, LogitsDistillation(temperature=4.0),
                        student_loss_weight=0.1)
  distiller.compile(optimizer="sgd", metrics=["accuracy"])
  distiller.fit(train_ds, epochs=30)
  distiller.student.save("student.keras")
"""

from typing import List, Optional, Sequence, Union

import tensorflow as tf
import tf_keras

from tfkd.adversarial import AdversarialDistillation
from tfkd.errors import ModelMismatchError
from tfkd.losses import DistillationLoss

Teachers = Union[None, tf_keras.Model, Sequence[tf_keras.Model]]


def check_compatible(teacher: tf_keras.Model, student: tf_keras.Model) -> None:
  """Raises `ModelMismatchError` unless both models share input shape and classes."""
  t_in, s_in = tuple(teacher.input_shape[1:]), tuple(student.input_shape[1:])
  if t_in != s_in:
    raise ModelMismatchError(
        f"Teacher {teacher.name!r} takes inputs of shape {t_in} but student {student.name!r} "
        f"takes {s_in}: build both for the same input shape.")
  t_out, s_out = teacher.output_shape[-1], student.output_shape[-1]
  if t_out != s_out:
    raise ModelMismatchError(
        f"Teacher {teacher.name!r} predicts {t_out} classes but student {student.name!r} "
        f"predicts {s_out}: train both on the same dataset (same num_classes).")


def normalized_teacher_weights(weights: Optional[Sequence[float]], num_teachers: int) -> List[float]:
  """Weights of the teachers' logits in their average, summing to 1.

  Args:
    weights: one non-negative weight per teacher, or None / empty for equal weights.
    num_teachers: how many teachers.

  Returns:
    A list of `num_teachers` floats summing to 1 (empty without teachers).
  """
  if not weights:
    return [1.0 / num_teachers] * num_teachers if num_teachers else []
  weights = [float(w) for w in weights]
  if len(weights) != num_teachers:
    raise ValueError(f"{len(weights)} teacher_weights for {num_teachers} teachers: give one "
                     "weight per teacher (or none, for equal weights).")
  if min(weights) < 0 or sum(weights) <= 0:
    raise ValueError(f"teacher_weights={weights} must be >= 0 with a positive sum.")
  return [w / sum(weights) for w in weights]


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
  if not isinstance(model, tf_keras.Model):  # e.g. a Keras 3 teacher (`tfkd.keras3_teacher`)
    raise ModelMismatchError(
        f"Losses read layers {names} of {model.name!r}, but it is not a tf_keras model (Keras 3 "
        "runs it, and gives only its outputs): distil it with logit losses only (no "
        "teacher_layer), or give a teacher tfkd can rebuild in tf_keras.")
  missing = [n for n in names if n not in {l.name for l in model.layers}]
  if missing:
    raise ModelMismatchError(
        f"Model {model.name!r} has no layer named {missing}: pick from "
        f"{[l.name for l in model.layers]}.")
  return tf_keras.Model(model.inputs, [model.output] + [model.get_layer(n).output for n in names],
                        name=f"{model.name}_taps")


def output_shape(model: tf_keras.Model, layer_name: Optional[str]) -> tf.TensorShape:
  """Shape of a named layer's output, or of the logits for None."""
  layer_outputs(model, [layer_name])  # raises a clear error for a missing layer
  if layer_name is None and not isinstance(model, tf_keras.Model):
    return tf.TensorShape(model.output_shape)
  tensor = model.output if layer_name is None else model.get_layer(layer_name).output
  return tf.TensorShape(tensor.shape)


def _as_list(value) -> list:
  return list(value) if isinstance(value, (list, tuple)) else [value]


class Distiller(tf_keras.Model):
  """Trains `student` on labels and on its teachers' knowledge.

  Args:
    teacher: a trained `tf_keras.Model` returning logits, a list of them, or
      None when every training batch carries cached teacher logits. Frozen.
    student: `tf_keras.Model` returning logits, with the teachers' input shape
      and number of classes.
    distillation_losses: a `DistillationLoss` or a list of them.
    distillation_loss_weights: one weight per distillation loss (default: 1 each).
    student_loss_weight: α in [0, 1], the weight of the hard-label loss.
    teacher_weights: weight of each teacher's logits in their average
      (default: equal); normalised to sum to 1.
    adversarial: an `AdversarialDistillation` (ARD, RSLAD) to train the student on
      adversarial inputs; None: clean inputs only. Needs float inputs (images).
    name: model name.
  """

  def __init__(self, teacher: Teachers, student: tf_keras.Model,
               distillation_losses: Union[DistillationLoss, Sequence[DistillationLoss]],
               distillation_loss_weights: Optional[Sequence[float]] = None,
               student_loss_weight: float = 0.5, teacher_weights: Optional[Sequence[float]] = None,
               adversarial: Optional[AdversarialDistillation] = None,
               name: str = "distiller", **kwargs):
    super().__init__(name=name, **kwargs)
    teachers = [] if teacher is None else _as_list(teacher)
    for model in teachers:
      check_compatible(model, student)
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
    self.teacher_weights = normalized_teacher_weights(teacher_weights, len(teachers))
    for model in teachers:
      model.trainable = False
    self.teachers = teachers
    self.teacher = teachers[0] if teachers else None
    self.student = student
    if adversarial is not None and not student.inputs[0].dtype.is_floating:
      raise ValueError(f"adversarial={adversarial.method!r} perturbs float inputs but student "
                       f"{student.name!r} takes {student.inputs[0].dtype.name} (token ids): "
                       "use adversarial distillation with image models only.")
    self.adversarial = adversarial
    # Each model runs once per step, returning logits plus every layer a loss reads.
    self._teacher_layers = [None] + sorted({l.teacher_layer_name for l in self.distillation_losses} - {None})
    self._student_layers = [None] + sorted({l.student_layer_name for l in self.distillation_losses} - {None})
    if len(self._teacher_layers) > 1 and not teachers:
      raise ValueError(
          f"distillation_losses read teacher layers {self._teacher_layers[1:]} but there is no "
          "teacher model (teacher=None): cached teachers give logits only, so pass the teacher "
          "model or use logit losses.")
    self._teacher_taps = layer_outputs(teachers[0], self._teacher_layers) if teachers else None
    self._student_taps = layer_outputs(student, self._student_layers)
    # Losses create their weights (adapters, heads) now: inside the caller's strategy scope.
    for loss in self.distillation_losses:
      reference = self.teacher if self.teacher is not None else student
      loss.build(output_shape(reference, loss.teacher_layer_name),
                 output_shape(student, loss.student_layer_name))
    self.loss_tracker = tf_keras.metrics.Mean(name="loss")
    self.student_loss_tracker = tf_keras.metrics.Mean(name="student_loss")
    self.distillation_loss_tracker = tf_keras.metrics.Mean(name="distillation_loss")
    # Every weight exists now (models and loss heads are built): BackupAndRestore may
    # checkpoint the Distiller before its first step instead of warning that it is unbuilt.
    self.built = True

  def compile(self, optimizer="sgd", loss=None, metrics=None, **kwargs):
    """Configures training.

    Args:
      optimizer: a Keras optimizer or its name.
      loss: per-example hard-label loss `fn(labels, logits) -> [batch]`;
        default: sparse categorical cross-entropy on logits.
      metrics: metrics of the student's logits against the labels, e.g. ["accuracy"].
    """
    # As weighted metrics: tf_keras gives sample weights to those only, and the Distiller's
    # sample weight is its label mask (examples labelled -1 count in no metric).
    weighted = list(metrics or []) + list(kwargs.pop("weighted_metrics", None) or [])
    super().compile(optimizer=optimizer, weighted_metrics=weighted, **kwargs)
    self.student_loss_fn = loss or (lambda y, logits: tf_keras.losses.sparse_categorical_crossentropy(
        y, logits, from_logits=True))

  @property
  def metrics(self):
    return [self.loss_tracker, self.student_loss_tracker,
            self.distillation_loss_tracker] + super().metrics

  def call(self, inputs, training=False):
    return self.student(inputs, training=training)

  @staticmethod
  def unpack(data):
    """(x, y, cached teacher logits or None) from a `(x, y)` or `((x, logits), y)` batch.

    Features that are a pair are read as (inputs, teacher_logits), so students
    take a single input tensor (as every tfkd model does).
    """
    x, y = data[0], data[1]
    if isinstance(x, (tuple, list)) and len(x) == 2:
      return x[0], y, x[1]
    return x, y, None

  def check_training_data(self, x) -> None:
    """Refuses training features that do not fit the teachers, before any tracing.

    The same checks run again while `train_step` is traced, but errors raised
    there reach the user wrapped in TensorFlow's `StagingError`.

    Args:
      x: what `fit` receives as `x`: a `tf.data.Dataset` of `(features, y)`
        batches or the features themselves (`inputs` or `(inputs, teacher_logits)`).
    """
    if isinstance(x, tf.data.Dataset):
      x = x.element_spec[0] if isinstance(x.element_spec, tuple) else x.element_spec
    cached_logits = x[1] if isinstance(x, (tuple, list)) and len(x) == 2 else None
    self._check_teacher_source(cached_logits)

  def _check_teacher_source(self, cached_logits) -> None:
    if cached_logits is None:
      if not self.teachers:
        raise ValueError(
            "This Distiller has no teacher model, so every training batch must carry cached "
            "teacher logits as ((x, teacher_logits), y): see tfkd.teacher_cache.")
      return
    if len(self._teacher_layers) > 1:
      raise ValueError(
          f"Batches carry cached teacher logits, but distillation_losses read teacher layers "
          f"{self._teacher_layers[1:]} that only a live teacher computes: feed plain (x, y) "
          "batches so the teacher runs live, or use logit losses only.")
    classes = self.student.output_shape[-1]
    if cached_logits.shape[-1] != classes:
      raise ModelMismatchError(
          f"Cached teacher logits have {cached_logits.shape[-1]} columns but the student "
          f"predicts {classes} classes: cache logits of a teacher of the same dataset.")

  def fit(self, x=None, y=None, *args, **kwargs):  # pylint: disable=keyword-arg-before-vararg
    """`tf_keras.Model.fit`, after `check_training_data`."""
    self.check_training_data(x)
    return super().fit(x, y, *args, **kwargs)

  def teacher_outputs(self, x, cached_logits=None):
    """[ensemble logits] + the first teacher's tapped layers, or None without any teacher.

    Args:
      x: a batch of inputs.
      cached_logits: precomputed ensemble logits for `x`, or None to run the teachers.
    """
    if cached_logits is not None:
      self._check_teacher_source(cached_logits)
      return [tf.cast(cached_logits, tf.float32)]
    if not self.teachers:
      return None
    first = _as_list(self._teacher_taps(x, training=False))
    logits = self.teacher_weights[0] * tf.cast(first[0], tf.float32)
    for model, weight in zip(self.teachers[1:], self.teacher_weights[1:]):
      logits += weight * tf.cast(model(x, training=False), tf.float32)
    # Frozen teachers: without this the gradient graph still backpropagates through every
    # teacher layer (30 filter-gradient convolutions for a ResNet-20), for nothing.
    return [tf.stop_gradient(t) for t in [logits] + first[1:]]

  def _distillation_loss(self, teacher_out, student_out):
    """Σᵢ wᵢ · lossᵢ per example, each loss reading its teacher and student output."""
    total = 0.0
    for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
      t = teacher_out[self._teacher_layers.index(loss.teacher_layer_name)]
      s = student_out[self._student_layers.index(loss.student_layer_name)]
      total += weight * loss.compute_loss(t, s)
    return total

  def _compute_losses(self, x, y, teacher_out, training, x_adversarial=None):
    """Per-example total, hard-label and distillation losses, the student's logits, label mask.

    Args:
      x, y: the batch.
      teacher_out: `teacher_outputs(x, ...)`, or None without a teacher (validation only).
      training: the student's mode.
      x_adversarial: adversarial inputs for `self.adversarial`'s share of the
        distillation losses, or None.
    """
    student_out = _as_list(self._student_taps(x, training=training))
    student_logits = student_out[0]
    # Examples labelled -1 (e.g. an augmented transfer set) learn from the teacher alone.
    labelled = tf.cast(y >= 0, tf.float32)
    student_loss = labelled * tf.cast(
        self.student_loss_fn(tf.maximum(y, 0), student_logits), tf.float32)
    if teacher_out is None:
      # An offline teacher's logits come with training data only: measure the student alone.
      return student_loss, student_loss, None, student_logits, labelled
    beta = self.adversarial.adversarial_weight if x_adversarial is not None else 0.0
    distillation_loss = tf.zeros_like(student_loss)
    if beta < 1.0:
      distillation_loss += (1.0 - beta) * self._distillation_loss(teacher_out, student_out)
    if beta > 0.0:
      adversarial_out = _as_list(self._student_taps(x_adversarial, training=training))
      distillation_loss += beta * self._distillation_loss(teacher_out, adversarial_out)
    total = (self.student_loss_weight * student_loss
             + (1.0 - self.student_loss_weight) * distillation_loss)
    return total, student_loss, distillation_loss, student_logits, labelled

  def trained_variables(self) -> list:
    """What `train_step` updates: the student's trainable weights and the losses' (adapters)."""
    extra = [w for loss in self.distillation_losses for w in loss.trainable_weights()]
    return self.student.trainable_variables + extra

  def _update_metrics(self, y, total, student_loss, distillation_loss, logits, labelled):
    self.loss_tracker.update_state(total)
    self.student_loss_tracker.update_state(student_loss, sample_weight=labelled)
    if distillation_loss is not None:
      self.distillation_loss_tracker.update_state(distillation_loss)
    self.compiled_metrics.update_state(tf.maximum(y, 0), logits, sample_weight=labelled)
    return {m.name: m.result() for m in self.metrics}

  def adversarial_inputs(self, x, y, teacher_out):
    """`self.adversarial`'s inputs crafted against the student for a batch (None without it)."""
    if self.adversarial is None:
      return None
    return self.adversarial.craft(self.student, x, y, teacher_out[0])

  def train_step(self, data):
    x, y, cached_logits = self.unpack(data)
    # The frozen teachers and the attack run outside the tape: nothing to differentiate there.
    teacher_out = self.teacher_outputs(x, cached_logits)
    if teacher_out is None:
      self._check_teacher_source(cached_logits)  # raises: no teacher and no logits
    x_adversarial = self.adversarial_inputs(x, y, teacher_out)
    with tf.GradientTape() as tape:
      total, student_loss, distillation_loss, logits, labelled = self._compute_losses(
          x, y, teacher_out, training=True, x_adversarial=x_adversarial)
      # Averaged over the global batch, so gradients summed across replicas of a
      # tf.distribute strategy equal the single-device gradient.
      loss = tf.nn.compute_average_loss(total)
      if self.student.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
    variables = self.trained_variables()
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    for each in self.distillation_losses:  # memories (SEED's queue) after the step
      each.update_state(teacher_out[self._teacher_layers.index(each.teacher_layer_name)])
    return self._update_metrics(y, total, student_loss, distillation_loss, logits, labelled)

  def test_step(self, data):
    x, y, cached_logits = self.unpack(data)
    teacher_out = self.teacher_outputs(x, cached_logits)
    return self._update_metrics(y, *self._compute_losses(x, y, teacher_out, training=False))
