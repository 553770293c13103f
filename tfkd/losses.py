"""Distillation losses for `tfkd.Distiller`, shaped like Keras 3's `keras.distillation`.

A loss compares what the teacher and the student compute for the same batch and
returns one value per example; the `Distiller` weights, averages and (under a
`tf.distribute` strategy) scales them. A loss reads the models' logits unless it
names layers with `teacher_layer_name` / `student_layer_name`.

Losses:
  LogitsDistillation       soft targets (Hinton et al. 2015).
  FeatureDistillation      FitNets hints (Romero et al. 2015), with a learned adapter.
  ContrastiveDistillation  the contrastive knowledge loss: in-batch InfoNCE between
                           projected teacher and student embeddings (after CRD, Tian et al. 2020).
  AttentionTransfer        spatial attention maps (Zagoruyko & Komodakis 2017).
  RelationalDistillation   distances and angles between examples (RKD, Park et al. 2019).
  (`tfkd.seed.SEEDDistillation`: the teacher's similarities over a queue, SEED, Fang et al. 2021.)

Losses that learn weights (adapters, projection heads) create them in `build`,
which the `Distiller` calls from its constructor: inside the `tf.distribute`
strategy scope when the Distiller is built there, so the weights are mirrored.
Every loss is a `tf.Module`, so the Distiller tracks those weights and Keras
checkpoints (`BackupAndRestore`) save and restore them; they are trained with
the student and never saved with it.

Example:
  loss = LogitsDistillation(temperature=4.0)
  per_example = loss.compute_loss(teacher_logits, student_logits)   # shape [batch]
"""

from typing import Optional, Union

import tensorflow as tf
import tf_keras

from tfkd.errors import ModelMismatchError


class DistillationLoss(tf.Module):
  """Base class: override `compute_loss`, and `build` if the loss learns weights.

  Attributes:
    teacher_layer_name: teacher layer whose output the loss reads (None: logits).
    student_layer_name: student layer whose output the loss reads (None: logits).
  """
  teacher_layer_name: Optional[str] = None
  student_layer_name: Optional[str] = None

  def build(self, teacher_shape: tf.TensorShape, student_shape: tf.TensorShape) -> None:
    """Checks the shapes of the outputs the loss reads and creates its weights.

    Called once by the `Distiller` (inside its strategy scope). The default
    accepts any shapes and creates nothing.

    Args:
      teacher_shape: shape of the teacher output the loss reads, batch first.
      student_shape: shape of the student output the loss reads, batch first.
    """
    del teacher_shape, student_shape

  def compute_loss(self, teacher_outputs, student_outputs):
    """Returns a float32 tensor of shape [batch]: the loss of each example."""
    raise NotImplementedError

  def update_state(self, teacher_outputs) -> None:
    """Called by the `Distiller` once per training step, after the gradient step, with the
    teacher output the loss reads (never on validation). The default keeps no state; a
    loss with a memory (SEED's queue) updates it here."""
    del teacher_outputs

  def trainable_weights(self):
    """Weights the loss learns with the student (adapters, projection heads)."""
    return list(self.trainable_variables)

  def get_config(self) -> dict:
    """The constructor arguments that make an equal loss (learned weights excluded)."""
    return {}

  @classmethod
  def from_config(cls, config: dict) -> "DistillationLoss":
    """A new, unbuilt loss from `get_config()`'s output."""
    return cls(**config)


def _build_layer(layer: tf_keras.layers.Layer, input_shape) -> tf_keras.layers.Layer:
  """Creates a layer's weights now (in the current strategy scope), named after the layer."""
  with tf.name_scope(layer.name):
    layer.build(tf.TensorShape(input_shape))
  return layer


def _embedding(outputs):
  """[batch, ...] → [batch, channels]: feature maps are averaged over their spatial axes."""
  outputs = tf.cast(outputs, tf.float32)
  if outputs.shape.rank > 2:
    outputs = tf.reduce_mean(outputs, axis=list(range(1, outputs.shape.rank - 1)))
  return outputs


def _huber(error):
  """Smooth L1 (Huber with δ = 1), elementwise: ½e² if |e| < 1 else |e| − ½."""
  abs_error = tf.abs(error)
  return tf.where(abs_error < 1.0, 0.5 * tf.square(error), abs_error - 0.5)


class LogitsDistillation(DistillationLoss):
  """Soft targets (Hinton et al. 2015): T² · KL(softmax(t/T) ‖ softmax(s/T)).

  The T² factor keeps the gradient's scale independent of the temperature, so
  the weight between this loss and the hard-label loss means the same at any T.

  Args:
    temperature: softmax temperature T > 0; 3 to 5 is usual.

  Example:
    LogitsDistillation(4.0).compute_loss(teacher_logits, student_logits)  # [batch]
  """

  def __init__(self, temperature: float = 3.0, name: str = "logits_distillation"):
    super().__init__(name=name)
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


class FeatureDistillation(DistillationLoss):
  """FitNets hints (Romero et al. 2015): mean squared error between a teacher layer
  and the student layer after a learned adapter.

      loss_i = mean over positions and channels of (t_i − resize(adapter(s_i)))²

  The adapter maps the student's features to the teacher's: a 1×1 convolution
  for feature maps [batch, H, W, C] (then a bilinear resize if H, W differ) or a
  dense layer for vectors [batch, C]. It is trained with the student and is not
  part of `distiller.student`, so the exported student does not carry it.

  Args:
    teacher_layer_name: teacher layer to imitate (None: logits).
    student_layer_name: student layer that imitates it (None: logits).
    adapter: "auto" (an adapter only when the channel counts differ), True
      (always, as in FitNets) or False (never: the channels must match).
    name: module name.

  Example:
    FeatureDistillation("stage3", "stage3", adapter=True)
  """

  def __init__(self, teacher_layer_name: Optional[str] = None,
               student_layer_name: Optional[str] = None, adapter: Union[str, bool] = "auto",
               name: str = "feature_distillation"):
    super().__init__(name=name)
    if adapter not in ("auto", True, False):
      raise ValueError(f"adapter must be 'auto', True or False, got {adapter!r}.")
    self.teacher_layer_name = teacher_layer_name
    self.student_layer_name = student_layer_name
    self.use_adapter = adapter
    self.adapter = None
    self._resize_to = None
    self._built = False

  def build(self, teacher_shape, student_shape):
    teacher_shape, student_shape = tf.TensorShape(teacher_shape), tf.TensorShape(student_shape)
    where = f"teacher layer {self.teacher_layer_name!r} {teacher_shape} and student layer " \
            f"{self.student_layer_name!r} {student_shape}"
    if teacher_shape.rank != student_shape.rank or teacher_shape.rank not in (2, 4):
      raise ModelMismatchError(
          f"FeatureDistillation needs two feature maps [batch, H, W, C] or two vectors "
          f"[batch, C], got {where}: pick layers of the same kind.")
    channels_differ = teacher_shape[-1] != student_shape[-1]
    if channels_differ and self.use_adapter is False:
      raise ModelMismatchError(
          f"FeatureDistillation(adapter=False) needs equal channels, got {where}: "
          "use adapter='auto' or pick layers with the same width.")
    if self.use_adapter is True or channels_differ:
      if teacher_shape.rank == 4:
        layer = tf_keras.layers.Conv2D(teacher_shape[-1], 1, name=f"{self.name}_adapter")
      else:
        layer = tf_keras.layers.Dense(teacher_shape[-1], name=f"{self.name}_adapter")
      self.adapter = _build_layer(layer, student_shape)
    if teacher_shape.rank == 4 and teacher_shape[1:3] != student_shape[1:3]:
      self._resize_to = tuple(teacher_shape[1:3])
    self._built = True

  def compute_loss(self, teacher_outputs, student_outputs):
    if not self._built:
      raise ValueError(f"{self.name}: call build(teacher_shape, student_shape) first to create "
                       "the adapter (the Distiller does it).")
    student = tf.cast(student_outputs, tf.float32)
    if self.adapter is not None:
      student = self.adapter(student)
    if self._resize_to is not None:
      student = tf.image.resize(student, self._resize_to, method="bilinear")
    squared = tf.square(tf.cast(teacher_outputs, tf.float32) - student)
    return tf.reduce_mean(squared, axis=list(range(1, squared.shape.rank)))

  def get_config(self):
    return {"teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name, "adapter": self.use_adapter}


def contrastive_knowledge_loss(teacher_embeddings, student_embeddings, positive_mask,
                               temperature: float):
  """The contrastive knowledge loss of each anchor, for any set of positives.

      loss_i = (1/K_i) Σ_{k ∈ P(i)} −log[ exp(φₖᵀψᵢ/τ) / Σⱼ exp(φⱼᵀψᵢ/τ) ]

  The mean of loss_i over the N anchors is L = (1/N)Σᵢ (1/K)Σₖ −log[...] of the design.

  Args:
    teacher_embeddings: φ, [N, D], one per candidate j (the denominator runs over all N).
    student_embeddings: ψ, [N, D], one per anchor i.
    positive_mask: [N, N], 1 where teacher embedding k is a positive of anchor i
      (each row needs at least one), 0 elsewhere.
    temperature: τ > 0.

  Returns:
    [N] float32, loss_i per anchor.
  """
  scores = tf.matmul(student_embeddings, teacher_embeddings, transpose_b=True) / temperature
  log_probs = tf.nn.log_softmax(scores, axis=-1)   # row i: log of the softmax over j
  mask = tf.cast(positive_mask, tf.float32)
  return -tf.reduce_sum(mask * log_probs, axis=-1) / tf.reduce_sum(mask, axis=-1)


class ContrastiveDistillation(DistillationLoss):
  """The contrastive knowledge loss, as an in-batch contrastive loss with projection heads.

  The design's loss is L = (1/N) Σᵢ (1/K) Σₖ −log[ exp(φₖᵀψᵢ) / Σⱼ exp(φⱼᵀψᵢ) ]:
  each student embedding ψᵢ must pick out its K positive teacher embeddings φₖ
  among the candidates φⱼ. This class implements exactly
  (`contrastive_knowledge_loss`):

      φⱼ = normalize(W_T · pool(t_j)),  ψᵢ = normalize(W_S · pool(s_i))
      loss_i = −log[ exp(φᵢᵀψᵢ/τ) / Σ_{j=1..N} exp(φⱼᵀψᵢ/τ) ]

  with these choices, and the reasons for them:
  - Embeddings: t, s are the outputs of the named teacher and student layers,
    averaged over their spatial axes if they are feature maps (`pool`).
  - Projection heads W_T, W_S: linear maps to `projection_dim`, learned with
    the student (as CRD's embedding heads), so teacher and student widths may
    differ and the student is not forced to copy the teacher's raw features.
  - L2-normalised projections: φᵀψ is a cosine in [−1, 1], so the scale of the
    scores is set by τ alone and no embedding can win by growing its norm.
  - Temperature τ divides the scores (the design's formula is τ = 1); with
    unit vectors τ = 1 gives too flat a softmax to learn from, so τ ≈ 0.1.
  - Positives: the teacher embedding of the same example, K = 1 (P(i) = {i}).
    It needs no labels, so unlabelled transfer examples (label −1) count too.
  - Negatives: the other N − 1 examples of the batch (in-batch negatives), so
    the denominator Σⱼ runs over the batch, instead of CRD's memory bank of
    past embeddings: no state to keep, checkpoint or synchronise. Under
    `tf.distribute` the batch is each replica's batch.
  The loss falls with the batch size only through log N; batches of 64 or more
  give enough negatives.

  Args:
    teacher_layer_name: teacher layer giving φ's input (None: logits).
    student_layer_name: student layer giving ψ's input (None: logits).
    projection_dim: width D of the projections.
    temperature: τ > 0.
    name: module name.

  Example:
    ContrastiveDistillation("features", "features", projection_dim=128, temperature=0.1)
  """

  def __init__(self, teacher_layer_name: Optional[str] = "features",
               student_layer_name: Optional[str] = "features", projection_dim: int = 128,
               temperature: float = 0.1, name: str = "contrastive_distillation"):
    super().__init__(name=name)
    if temperature <= 0:
      raise ValueError(f"temperature must be > 0, got {temperature}.")
    if projection_dim < 1:
      raise ValueError(f"projection_dim must be >= 1, got {projection_dim}.")
    self.teacher_layer_name = teacher_layer_name
    self.student_layer_name = student_layer_name
    self.projection_dim = int(projection_dim)
    self.temperature = float(temperature)
    self.teacher_head = None
    self.student_head = None

  def build(self, teacher_shape, student_shape):
    self.teacher_head = _build_layer(
        tf_keras.layers.Dense(self.projection_dim, use_bias=False, name=f"{self.name}_teacher_head"),
        (None, tf.TensorShape(teacher_shape)[-1]))
    self.student_head = _build_layer(
        tf_keras.layers.Dense(self.projection_dim, use_bias=False, name=f"{self.name}_student_head"),
        (None, tf.TensorShape(student_shape)[-1]))

  def compute_loss(self, teacher_outputs, student_outputs):
    if self.teacher_head is None:
      raise ValueError(f"{self.name}: call build(teacher_shape, student_shape) first to create "
                       "the projection heads (the Distiller does it).")
    phi = tf.math.l2_normalize(self.teacher_head(_embedding(teacher_outputs)), axis=-1)
    psi = tf.math.l2_normalize(self.student_head(_embedding(student_outputs)), axis=-1)
    positives = tf.eye(tf.shape(psi)[0])
    return contrastive_knowledge_loss(phi, psi, positives, self.temperature)

  def get_config(self):
    return {"teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "projection_dim": self.projection_dim, "temperature": self.temperature}


class AttentionTransfer(DistillationLoss):
  """Attention transfer (Zagoruyko & Komodakis 2017) between two feature maps.

  A map A [H, W, C] gives the attention vector q = vec(Σ_c |A_c|^p) / ‖·‖₂ over
  its H·W positions; the loss is, as in the authors' code,

      loss_i = β · mean over positions of (q_S,i − q_T,i)²

  Attention maps have no channel axis, so teacher and student may differ in
  width without an adapter; if H, W differ the student's map is resized
  (bilinear) to the teacher's before normalising.

  Args:
    teacher_layer_name: teacher layer with output [batch, H, W, C].
    student_layer_name: student layer with output [batch, H', W', C'].
    p: exponent of the channel pooling (2 in the paper).
    beta: scale β (1000 in the paper's experiments).
    name: module name.

  Example:
    AttentionTransfer("stage2", "stage2")
  """

  def __init__(self, teacher_layer_name: Optional[str] = None,
               student_layer_name: Optional[str] = None, p: float = 2.0, beta: float = 1000.0,
               name: str = "attention_transfer"):
    super().__init__(name=name)
    self.teacher_layer_name = teacher_layer_name
    self.student_layer_name = student_layer_name
    self.p = float(p)
    self.beta = float(beta)

  def build(self, teacher_shape, student_shape):
    teacher_shape, student_shape = tf.TensorShape(teacher_shape), tf.TensorShape(student_shape)
    if teacher_shape.rank != 4 or student_shape.rank != 4:
      raise ModelMismatchError(
          f"AttentionTransfer needs feature maps [batch, H, W, C], got teacher layer "
          f"{self.teacher_layer_name!r} {teacher_shape} and student layer "
          f"{self.student_layer_name!r} {student_shape}: name convolutional layers (e.g. 'stage2').")

  def attention(self, feature_map, resize_to=None):
    """[batch, H, W, C] → [batch, H·W] unit-norm attention vectors."""
    maps = tf.reduce_sum(tf.pow(tf.abs(tf.cast(feature_map, tf.float32)), self.p), axis=-1,
                         keepdims=True)
    if resize_to is not None:
      maps = tf.image.resize(maps, resize_to, method="bilinear")
    return tf.math.l2_normalize(tf.reshape(maps, [tf.shape(maps)[0], -1]), axis=-1)

  def compute_loss(self, teacher_outputs, student_outputs):
    teacher_size = tuple(teacher_outputs.shape[1:3])
    resize_to = teacher_size if tuple(student_outputs.shape[1:3]) != teacher_size else None
    difference = self.attention(student_outputs, resize_to) - self.attention(teacher_outputs)
    return self.beta * tf.reduce_mean(tf.square(difference), axis=-1)

  def get_config(self):
    return {"teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name, "p": self.p, "beta": self.beta}


def _pairwise_distances(embeddings):
  """[N, D] → [N, N] Euclidean distances, exactly 0 on the diagonal (safe gradients)."""
  squared = tf.reduce_sum(tf.square(embeddings[:, None, :] - embeddings[None, :, :]), axis=-1)
  off_diagonal = 1.0 - tf.eye(tf.shape(embeddings)[0])
  return tf.sqrt(tf.maximum(squared, 1e-12)) * off_diagonal


def _normalized_distances(embeddings):
  """Distances divided by their mean over the N(N−1) pairs i ≠ j."""
  distances = _pairwise_distances(embeddings)
  n = tf.cast(tf.shape(embeddings)[0], tf.float32)
  mean = tf.reduce_sum(distances) / tf.maximum(n * (n - 1.0), 1.0)
  return distances / tf.maximum(mean, 1e-12)


def _angles(embeddings):
  """[N, D] → [N, N, N]: cos of the angle at vertex i between j and k, ⟨e(x_j − x_i), e(x_k − x_i)⟩."""
  directions = tf.math.l2_normalize(embeddings[None, :, :] - embeddings[:, None, :], axis=-1)
  return tf.matmul(directions, directions, transpose_b=True)


class RelationalDistillation(DistillationLoss):
  """Relational knowledge distillation (Park et al. 2019): distance and angle losses.

  The student copies how the teacher places the examples of a batch relative to
  each other, not the embeddings themselves, so widths may differ. With
  embeddings x (feature maps are averaged spatially), μ the mean distance over
  pairs i ≠ j, and smooth L1 ℓ (Huber, δ = 1):

      d(i, j) = ‖x_i − x_j‖ / μ
      a(i, j, k) = ⟨(x_j − x_i)/‖x_j − x_i‖, (x_k − x_i)/‖x_k − x_i‖⟩
      loss_i = w_D · (1/N) Σ_j ℓ(d_S(i,j) − d_T(i,j)) + w_A · (1/N²) Σ_{j,k} ℓ(a_S(i,j,k) − a_T(i,j,k))

  The mean over i is the paper's loss (w_D = 25, w_A = 50 as in its experiments).
  Under `tf.distribute` the relations are those within each replica's batch.

  Args:
    teacher_layer_name: teacher embedding layer (None: logits).
    student_layer_name: student embedding layer (None: logits).
    distance_weight: w_D.
    angle_weight: w_A.
    name: module name.

  Example:
    RelationalDistillation("features", "features")
  """

  def __init__(self, teacher_layer_name: Optional[str] = "features",
               student_layer_name: Optional[str] = "features", distance_weight: float = 25.0,
               angle_weight: float = 50.0, name: str = "relational_distillation"):
    super().__init__(name=name)
    self.teacher_layer_name = teacher_layer_name
    self.student_layer_name = student_layer_name
    self.distance_weight = float(distance_weight)
    self.angle_weight = float(angle_weight)

  def compute_loss(self, teacher_outputs, student_outputs):
    teacher, student = _embedding(teacher_outputs), _embedding(student_outputs)
    distance = tf.reduce_mean(
        _huber(_normalized_distances(student) - _normalized_distances(teacher)), axis=-1)
    angle = tf.reduce_mean(_huber(_angles(student) - _angles(teacher)), axis=[1, 2])
    return self.distance_weight * distance + self.angle_weight * angle

  def get_config(self):
    return {"teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "distance_weight": self.distance_weight, "angle_weight": self.angle_weight}
