"""SEED (Fang et al. 2021, "SEED: Self-supervised Distillation for Visual Representation").

The student learns the teacher's representation without labels: for each image it
must reproduce the teacher's similarity distribution over a queue of past teacher
embeddings. With t_i the teacher's L2-normalised embedding of image i, s_i the
student's embedding after a learned projection head to the teacher's width (also
L2-normalised) and Q = [q_1 … q_K] the queue:

    p_T(i) = softmax([t_i·t_i, t_i·q_1, …, t_i·q_K] / τ_T)
    p_S(i) = softmax([s_i·t_i, s_i·q_1, …, s_i·q_K] / τ_S)
    loss_i = −Σ_j p_T(i)_j · log p_S(i)_j

After each training step the batch's teacher embeddings replace the oldest ones
in the queue (FIFO). As in the authors' code the queue starts as random unit
vectors and the projection head is an MLP (student width → ReLU → teacher width).

Example:
  loss = SEEDDistillation("features", "features", queue_size=4096)
  distiller = Distiller(teacher, student, loss, student_loss_weight=0.0)
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

from tfkd.losses import DistillationLoss, _build_layer, _embedding


def seed_loss(teacher_embeddings, student_embeddings, queue, teacher_temperature: float,
              student_temperature: float):
  """SEED's cross-entropy between the teacher's and the student's similarity distributions.

  Args:
    teacher_embeddings: t, [N, D], L2-normalised.
    student_embeddings: s, [N, D], L2-normalised (already projected to the teacher's width).
    queue: Q, [K, D], L2-normalised past teacher embeddings.
    teacher_temperature: τ_T > 0.
    student_temperature: τ_S > 0.

  Returns:
    [N] float32, loss_i per example.
  """
  def similarities(embeddings):
    own = tf.reduce_sum(embeddings * teacher_embeddings, axis=-1, keepdims=True)  # [N, 1]
    return tf.concat([own, tf.matmul(embeddings, queue, transpose_b=True)], axis=-1)

  targets = tf.nn.softmax(similarities(teacher_embeddings) / teacher_temperature, axis=-1)
  log_probs = tf.nn.log_softmax(similarities(student_embeddings) / student_temperature, axis=-1)
  return -tf.reduce_sum(targets * log_probs, axis=-1)


class SEEDDistillation(DistillationLoss):
  """SEED: the student matches the teacher's similarity distribution over a queue of
  teacher embeddings (see the module docstring for the formula). Needs no labels.

  The queue is a non-trainable variable [K, D] with a pointer to its oldest entry;
  the `Distiller` calls `update_state` once per training step (never on validation),
  so the loss of a step reads the queue before that step's batch joins it. Under a
  `tf.distribute` strategy the replicas' teacher embeddings are gathered first, so
  every replica keeps the same queue. Queue and pointer are checkpointed with the
  Distiller (a resumed run continues with its queue); neither is saved with the student.

  Args:
    teacher_layer_name: teacher layer giving t (feature maps are averaged spatially).
    student_layer_name: student layer giving s before the projection head.
    queue_size: K, the teacher embeddings kept.
    teacher_temperature: τ_T > 0; small values sharpen the target towards t_i itself.
    student_temperature: τ_S > 0.
    seed: seed of the random unit vectors the queue starts with.
    name: module name.

  Example:
    SEEDDistillation("features", "features", queue_size=4096, teacher_temperature=0.01)
  """

  def __init__(self, teacher_layer_name: Optional[str] = "features",
               student_layer_name: Optional[str] = "features", queue_size: int = 4096,
               teacher_temperature: float = 0.01, student_temperature: float = 0.2,
               seed: int = 0, name: str = "seed_distillation"):
    super().__init__(name=name)
    if queue_size < 1:
      raise ValueError(f"queue_size must be >= 1, got {queue_size}.")
    for label, value in (("teacher_temperature", teacher_temperature),
                         ("student_temperature", student_temperature)):
      if value <= 0:
        raise ValueError(f"{label} must be > 0, got {value}.")
    self.teacher_layer_name = teacher_layer_name
    self.student_layer_name = student_layer_name
    self.queue_size = int(queue_size)
    self.teacher_temperature = float(teacher_temperature)
    self.student_temperature = float(student_temperature)
    self.seed = int(seed)
    self.hidden = self.projection = self.queue = self.queue_pointer = None

  def build(self, teacher_shape, student_shape):
    width, student_width = tf.TensorShape(teacher_shape)[-1], tf.TensorShape(student_shape)[-1]
    self.hidden = _build_layer(tf_keras.layers.Dense(student_width, activation="relu",
                                                     name=f"{self.name}_hidden"),
                               (None, student_width))
    self.projection = _build_layer(tf_keras.layers.Dense(width, name=f"{self.name}_projection"),
                                   (None, student_width))
    start = np.random.default_rng(self.seed).standard_normal((self.queue_size, width))
    start /= np.linalg.norm(start, axis=-1, keepdims=True)
    # Updated in replica context with the same (gathered) values on every replica.
    sync = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.queue = tf.Variable(start.astype(np.float32), name=f"{self.name}_queue", **sync)
    self.queue_pointer = tf.Variable(0, dtype=tf.int64, name=f"{self.name}_queue_pointer", **sync)

  def teacher_embeddings(self, teacher_outputs):
    """t: the teacher layer's output, pooled and L2-normalised, [N, D]."""
    return tf.math.l2_normalize(_embedding(teacher_outputs), axis=-1)

  def student_embeddings(self, student_outputs):
    """s: the student layer's output, pooled, projected to D and L2-normalised, [N, D]."""
    return tf.math.l2_normalize(self.projection(self.hidden(_embedding(student_outputs))), axis=-1)

  def compute_loss(self, teacher_outputs, student_outputs):
    if self.queue is None:
      raise ValueError(f"{self.name}: call build(teacher_shape, student_shape) first to create "
                       "the projection head and the queue (the Distiller does it).")
    return seed_loss(self.teacher_embeddings(teacher_outputs),
                     self.student_embeddings(student_outputs), tf.convert_to_tensor(self.queue),
                     self.teacher_temperature, self.student_temperature)

  def update_state(self, teacher_outputs) -> None:
    """Enqueues the batch's teacher embeddings in place of the oldest ones (FIFO)."""
    keys = self.teacher_embeddings(teacher_outputs)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
      keys = context.all_gather(keys, axis=0)
    keys = keys[-self.queue_size:]  # a batch larger than the queue: its newest K
    count = tf.cast(tf.shape(keys)[0], tf.int64)
    slots = (self.queue_pointer + tf.range(count, dtype=tf.int64)) % self.queue_size
    # assign, not scatter_nd_update: mirrored variables take assignments in replica context.
    self.queue.assign(tf.tensor_scatter_nd_update(self.queue, slots[:, None], keys))
    self.queue_pointer.assign((self.queue_pointer + count) % self.queue_size)

  def get_config(self):
    return {"teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name, "queue_size": self.queue_size,
            "teacher_temperature": self.teacher_temperature,
            "student_temperature": self.student_temperature, "seed": self.seed}
