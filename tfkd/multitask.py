"""Multi-task distillation: one student with a head per task, each head taught by its own teacher.

The setting of BAM! (Clark et al. 2019, "BAM! Born-Again Multi-Task Networks for
Natural Language Understanding"): single-task teachers distil into one multi-task
student that shares its backbone between the tasks. For each task k with hard
labels y_k, teacher logits t_k and the student head's logits s_k:

    loss_k = α · CE(y_k, s_k) + (1 − α) · T² · KL(softmax(t_k / T) ‖ softmax(s_k / T))
    loss   = Σ_k λ_k · loss_k

with α = `student_loss_weight`, T = `temperature`, λ_k = `task_weights`. BAM's
teacher annealing (the target moving from the teacher to the gold label during
training) is not implemented: α is fixed, as in tfkd's `Distiller`. Examples
labelled -1 for a task learn that task from its teacher alone.

Both tasks read the same inputs. The second task's labels here come from a class
mapping (`task_b_labels`): each task-A class belongs to one task-B class, e.g. the
ten CIFAR-10 classes grouped into vehicles on land, other vehicles, mammals and
other animals.

Example:
  y_b, groups = task_b_labels(y, class_names, parse_class_mapping(["cat:mammal", ...]))
  student = two_head_model(build_model("resnet8", 10, (32, 32, 3)), len(groups))
  distiller = MultiTaskDistiller({"task_a": teacher_a, "task_b": teacher_b}, student)
  distiller.compile(optimizer="sgd")
  distiller.fit(train_ds)        # batches (x, y) with y [batch, 2]: task A's and task B's labels
  distiller.student.save("multitask.keras")   # one model, outputs {"task_a", "task_b"}

With cached teacher logits (`tfkd.view_cache`) the batches carry each task's logits,
((x, {"task_a": [batch, 10], "task_b": [batch, 4]}), y), and the teachers are not run:

  cached = MultiTaskDistiller({"task_a": None, "task_b": None}, student)
  cached.fit(views.train_dataset(x, y_both, 128, teacher_logits={"task_a": la, "task_b": lb}))
"""

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from tfkd.errors import ModelMismatchError
from tfkd.losses import LogitsDistillation

TASK_A, TASK_B = "task_a", "task_b"
TASKS = (TASK_A, TASK_B)


def parse_class_mapping(pairs: Sequence[str]) -> Dict[str, str]:
  """{task-A class: task-B class} from 'class:group' strings (config-friendly).

  Example:
    parse_class_mapping(["cat:mammal", "frog:other_animal"])  # {"cat": "mammal", ...}
  """
  mapping = {}
  for pair in pairs:
    name, sep, group = (part.strip() for part in str(pair).partition(":"))
    if not sep or not name or not group:
      raise ValueError(f"task_b_classes entry {pair!r} is not 'class:group': write each task-A "
                       "class and its task-B class joined by ':', e.g. 'cat:mammal'.")
    if name in mapping:
      raise ValueError(f"task_b_classes maps class {name!r} twice: give each class one group.")
    mapping[name] = group
  return mapping


def task_b_labels(y: np.ndarray, class_names: Sequence[str],
                  mapping: Mapping[str, str]) -> Tuple[np.ndarray, List[str]]:
  """Task B's labels of examples whose task-A labels are `y`.

  Args:
    y: task-A labels (indices into `class_names`); -1 stays -1 (no label).
    class_names: task A's classes, index = label.
    mapping: every task-A class name → its task-B class name.

  Returns:
    (int32 task-B labels, the task-B class names in sorted order, index = label).

  Raises:
    ValueError: a class of `class_names` has no group, the mapping names a class the
      data lacks, or it makes fewer than two task-B classes.
  """
  missing = [c for c in class_names if c not in mapping]
  unknown = sorted(set(mapping) - set(class_names))
  if missing or unknown:
    problems = [f"{what} {names}" for what, names in (("missing", missing),
                                                      ("not in the data", unknown)) if names]
    raise ValueError(f"task_b_classes must give every class of the data a task-B class: "
                     f"{', '.join(problems)} (the data's classes: {list(class_names)}).")
  groups = sorted(set(mapping.values()))
  if len(groups) < 2:
    raise ValueError(f"task_b_classes puts every class in {groups}: task B needs at least two "
                     "classes.")
  table = np.array([groups.index(mapping[c]) for c in class_names] + [-1], np.int32)
  return table[np.asarray(y)], groups  # index -1 reads the table's last entry: -1


def two_head_model(model: tf_keras.Model, task_b_classes: int,
                   name: Optional[str] = None) -> tf_keras.Model:
  """A two-head model from a single-task classifier: its backbone, two Dense heads.

  The heads read what `model`'s `logits` layer reads (the pooled `features`).
  'task_a' starts from `model`'s own logits weights; 'task_b' is new. The outputs are
  a dict {'task_a', 'task_b'} from layers of those names, so the `.tflite` file's
  signature names its outputs the same way (`tflite.multi_output`).

  Args:
    model: a functional tfkd classifier (`tfkd.models`), ending in a Dense named `logits`.
    task_b_classes: classes of the second task.
    name: the new model's name (default: `model.name` + '_multitask').

  Returns:
    A functional model sharing `model`'s backbone layers (and weights).

  Example:
    two_head_model(build_model("resnet8", 10, (32, 32, 3)), 4).output_shape
    # {'task_a': (None, 10), 'task_b': (None, 4)}
  """
  try:
    head = model.get_layer("logits")
  except ValueError as e:
    raise ModelMismatchError(f"Model {model.name!r} has no layer named 'logits' for two_head_model "
                             "to replace: build it with tfkd.models.build_model.") from e
  features = head.input
  task_a = tf_keras.layers.Dense(head.units, name=TASK_A)
  outputs = {TASK_A: task_a(features), TASK_B: tf_keras.layers.Dense(task_b_classes, name=TASK_B)(features)}
  task_a.set_weights(head.get_weights())
  return tf_keras.Model(model.inputs, outputs, name=name or f"{model.name}_multitask")


def task_loss(labels, teacher_logits, student_logits, temperature: float,
              student_loss_weight: float):
  """One task's per-example loss: α · CE + (1 − α) · T² · KL (see the module doc).

  Examples labelled -1 get no CE term (their share α is dropped, the KL keeps 1 − α).
  Without teacher logits (None: validation batches of a cached-teacher run) the loss is the CE alone.

  Returns:
    (loss [batch], labelled mask [batch]).
  """
  labels = tf.cast(labels, tf.int32)
  labelled = tf.cast(labels >= 0, tf.float32)
  hard = labelled * tf_keras.losses.sparse_categorical_crossentropy(
      tf.maximum(labels, 0), tf.cast(student_logits, tf.float32), from_logits=True)
  if teacher_logits is None:
    return hard, labelled
  soft = LogitsDistillation(temperature).compute_loss(teacher_logits, student_logits)
  return student_loss_weight * hard + (1.0 - student_loss_weight) * soft, labelled


class MultiTaskDistiller(tf_keras.Model):
  """Trains a multi-head student, each head against its own frozen teacher and labels.

  Batches are `(x, y)` with y [batch, tasks]: column k holds task k's labels, tasks in
  the order of `teachers` (-1: no label for that task). Batches `((x, {task: logits}), y)`
  carry the teachers' cached logits of these inputs (`views.train_dataset`): the teachers
  are then not run.

  Args:
    teachers: task name → trained single-task teacher returning logits, in label-column
      order; each task name is an output of `student`. None: that task's logits come
      in every training batch (validation batches without them: CE alone).
    student: a model whose outputs are a dict with the tasks' names (`two_head_model`).
    temperature: T of the soft targets.
    student_loss_weight: α in [0, 1], the hard labels' share of each task's loss.
    task_weights: task name → λ ≥ 0 (default 1 each).
    name: model name.
  """

  def __init__(self, teachers: Mapping[str, tf_keras.Model], student: tf_keras.Model,
               temperature: float = 4.0, student_loss_weight: float = 0.1,
               task_weights: Optional[Mapping[str, float]] = None, name: str = "multitask_distiller",
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.tasks = list(teachers)
    if not isinstance(student.output, dict) or set(student.output) != set(self.tasks):
      raise ModelMismatchError(
          f"Student {student.name!r} has outputs {getattr(student, 'output_names', None)} but the "
          f"teachers teach tasks {self.tasks}: build it with two_head_model (a dict output per task).")
    for task, teacher in teachers.items():
      if teacher is not None:
        _check_teacher(task, teacher, student)
        teacher.trainable = False
    if temperature <= 0:
      raise ValueError(f"temperature must be > 0, got {temperature}.")
    if not 0.0 <= student_loss_weight <= 1.0:
      raise ValueError(f"student_loss_weight must be in [0, 1], got {student_loss_weight}.")
    weights = dict(task_weights or {})
    if set(weights) - set(self.tasks) or any(w < 0 for w in weights.values()):
      raise ValueError(f"task_weights={weights} must give tasks of {self.tasks} weights >= 0.")
    self.task_weights = [float(weights.get(task, 1.0)) for task in self.tasks]
    if not sum(self.task_weights) > 0:
      raise ValueError(f"task_weights={weights} are all 0: give at least one task a weight above 0.")
    self.teachers = dict(teachers)
    self.student = student
    self.temperature, self.student_loss_weight = float(temperature), float(student_loss_weight)
    self.loss_tracker = tf_keras.metrics.Mean(name="loss")
    self.task_trackers = {task: (tf_keras.metrics.Mean(name=f"{task}_loss"),
                                 tf_keras.metrics.SparseCategoricalAccuracy(name=f"{task}_accuracy"))
                          for task in self.tasks}
    self.built = True  # every weight exists: BackupAndRestore may checkpoint before the first step

  @property
  def metrics(self):
    return [self.loss_tracker] + [m for pair in self.task_trackers.values() for m in pair]

  def call(self, inputs, training=False):
    return self.student(inputs, training=training)

  def compute_losses(self, x, y, training: bool, cached_logits: Optional[Mapping] = None):
    """(per-example total loss, {task: (task loss, labelled mask, student logits)}).

    `cached_logits` ({task: [batch, classes]}) stands in for the teachers; None runs them, and
    a task whose teacher is None (cached logits come with training batches only) gets its CE alone.
    """
    outputs = self.student(x, training=training)
    total, per_task = 0.0, {}
    for column, (task, weight) in enumerate(zip(self.tasks, self.task_weights)):
      teacher_logits = (cached_logits[task] if cached_logits is not None
                        else None if self.teachers[task] is None
                        else self.teachers[task](x, training=False))
      if teacher_logits is not None:
        # Frozen teachers outside the gradient: nothing to backpropagate through them.
        teacher_logits = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
      loss, labelled = task_loss(y[:, column], teacher_logits, outputs[task], self.temperature,
                                 self.student_loss_weight)
      total += weight * loss
      per_task[task] = (loss, labelled, outputs[task])
    return total, per_task

  def _update_metrics(self, y, total, per_task):
    self.loss_tracker.update_state(total)
    for column, task in enumerate(self.tasks):
      loss, labelled, logits = per_task[task]
      loss_tracker, accuracy = self.task_trackers[task]
      loss_tracker.update_state(loss)
      accuracy.update_state(tf.maximum(y[:, column], 0), logits, sample_weight=labelled)
    return {m.name: m.result() for m in self.metrics}

  @staticmethod
  def unpack(data):
    """(x, y, {task: cached logits} or None) from a `(x, y)` or `((x, {task: logits}), y)` batch."""
    x, y = data[0], data[1]
    if isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[1], Mapping):
      return x[0], y, x[1]
    return x, y, None

  def train_step(self, data):
    x, y, cached_logits = self.unpack(data)
    missing = [task for task, teacher in self.teachers.items() if teacher is None]
    if cached_logits is None and missing:
      raise ValueError(f"The {missing} teachers are None, so training batches must carry their "
                       "cached logits as ((x, {task: logits}), y): see tfkd.views.train_dataset.")
    with tf.GradientTape() as tape:
      total, per_task = self.compute_losses(x, y, training=True, cached_logits=cached_logits)
      # Averaged over the global batch: summed over replicas it is the one-device gradient.
      loss = tf.nn.compute_average_loss(total)
      if self.student.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
    variables = self.student.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return self._update_metrics(y, total, per_task)

  def test_step(self, data):
    x, y, cached_logits = self.unpack(data)
    return self._update_metrics(y, *self.compute_losses(x, y, False, cached_logits))


def _check_teacher(task: str, teacher: tf_keras.Model, student: tf_keras.Model) -> None:
  t_in, s_in = tuple(teacher.input_shape[1:]), tuple(student.input_shape[1:])
  if t_in != s_in:
    raise ModelMismatchError(f"The {task} teacher {teacher.name!r} takes inputs of shape {t_in} but "
                             f"the student takes {s_in}: build both for the same inputs.")
  t_out, s_out = teacher.output_shape[-1], student.output_shape[task][-1]
  if t_out != s_out:
    raise ModelMismatchError(f"The {task} teacher {teacher.name!r} predicts {t_out} classes but the "
                             f"student's {task!r} head predicts {s_out}: train the teacher on that "
                             "task's labels.")
