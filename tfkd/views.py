"""Training batches whose order and augmentation are keyed by (seed, epoch, example index).

Every random choice of a training epoch comes from a stateless RNG
(`tf.random.stateless_uniform`) seeded by `(seed, epoch)` and indexed by the
example's position in the training split: the epoch's shuffle, and for images
the crop offsets (padding `crop_padding`: 4 px at 32x32) and the horizontal
flip of each example. So the view of
example i in epoch e is the same wherever and whenever it is made: in the live
training pipeline, in the teacher-logit cache (`tfkd.view_cache`), after a
resume, and on any number of workers. That is what lets a teacher label the
views once and the student train on them later at plain-training cost.

Example:
  ds = train_dataset(x, y, batch_size=128, augment=True, seed=0)   # endless; epoch 0, 1, ...
  model.fit(ds, steps_per_epoch=len(y) // 128, epochs=30)
  images = view_images(x[:8], view_params(seed=0, epoch=3, num_examples=len(x)), range(8))
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

PAD = 4  # pixels of reflection padding before the random crop at 32x32 (the CIFAR recipe)
# The streams of the two kinds of draw, so the shuffle and the augmentation never share numbers.
_ORDER_STREAM, _AUGMENT_STREAM = 0, 1


def _stream_seed(seed: int, epoch, stream: int):
  """A stateless seed [2] for one (seed, epoch) and one kind of draw."""
  return tf.stack([tf.cast(seed, tf.int64) * 2 + stream, tf.cast(epoch, tf.int64)])


def epoch_order(seed: int, epoch, num_examples: int) -> tf.Tensor:
  """The permutation of the example indices that epoch `epoch` visits, [num_examples] int32."""
  keys = tf.random.stateless_uniform([num_examples], _stream_seed(seed, epoch, _ORDER_STREAM))
  return tf.cast(tf.argsort(keys), tf.int32)


def crop_padding(image_shape) -> int:
  """Pixels of padding before the random crop: an eighth of the smaller side (4 at 32x32), at least 1.

  Args:
    image_shape: (height, width, ...) of the images.
  """
  return max(1, min(int(image_shape[0]), int(image_shape[1])) // 8)


def view_params(seed: int, epoch, num_examples: int, pad: int = PAD) -> tf.Tensor:
  """Crop offsets and flip of every example's view in one epoch, [num_examples, 3] int32.

  Columns: row offset and column offset in [0, 2·pad], and flip (0 or 1). Row i
  belongs to example i of the training split, whatever order the epoch visits them in.
  `pad` is `crop_padding` of the images.
  """
  draws = tf.random.stateless_uniform([num_examples, 3], _stream_seed(seed, epoch, _AUGMENT_STREAM))
  offsets = tf.cast(tf.floor(draws[:, :2] * (2 * pad + 1)), tf.int32)
  flips = tf.cast(draws[:, 2:] < 0.5, tf.int32)
  return tf.concat([offsets, flips], axis=1)


def augment_images(images, params):
  """Reflection padding (`crop_padding`), crop at the given offsets, flip where asked.

  Vectorised over the batch (one gather per axis) rather than mapped per image,
  so augmentation costs a small fraction of a training step on CPU.

  Args:
    images: [batch, H, W, C] float32, H and W known statically.
    params: [batch, 3] int32 rows of `view_params` for these images.

  Returns:
    [batch, H, W, C] float32.
  """
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  pad = crop_padding(images.shape[1:3])
  padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
  rows = params[:, 0:1] + tf.range(height)[None, :]
  cols = params[:, 1:2] + tf.range(width)[None, :]
  cropped = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
  flip = tf.reshape(params[:, 2] > 0, [-1, 1, 1, 1])
  return tf.where(flip, tf.reverse(cropped, axis=[2]), cropped)


def view_images(x: np.ndarray, params, indices: Sequence[int]) -> tf.Tensor:
  """The augmented views of `x[indices]` (uint8 or float images) as float32."""
  indices = tf.constant(np.asarray(indices, np.int32))
  return augment_images(tf.cast(tf.gather(x, indices), tf.float32), tf.gather(params, indices))


def _features(x_batch, params_batch, augment: bool):
  if x_batch.dtype == tf.uint8:  # images; token ids stay integers
    x_batch = tf.cast(x_batch, tf.float32)
  return augment_images(x_batch, params_batch) if augment else x_batch


def train_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, augment: bool = True,
                  seed: int = 0, start_epoch: int = 0, teacher_logits=None,
                  view_seed: Optional[int] = None) -> tf.data.Dataset:
  """Endless training batches, epoch after epoch, each keyed by (seed, epoch, index).

  Each epoch visits `len(y) // batch_size` full batches in `epoch_order`; pass
  that as `steps_per_epoch` to `fit`.

  Args:
    x, y: training features (uint8 images or int32 token ids) and labels.
    batch_size: global batch size.
    augment: pad-crop and flip images (`view_params`, `crop_padding`).
    seed: the key of every shuffle, and of the augmentation unless `view_seed` is given.
    start_epoch: the first epoch to make (a resumed run continues its sequence).
    teacher_logits: None, or teacher logits per view: an array [E, len(y), classes]
      (any float dtype) whose row [e, i] labels the view of example i in epoch e
      (see `tfkd.view_cache`). Epoch e then shows the views of epoch e mod E, in
      epoch e's order, with their logits: batches are ((x, teacher_logits), y).
      A dict of such arrays (one per task, the same E; `tfkd.multitask`) gives
      batches ((x, {task: teacher_logits}), y).
    view_seed: the key of the augmentation (and so of the views `teacher_logits` label), if
      not `seed`: runs of several seeds then see the same views in their own orders.

  Returns:
    A `tf.data.Dataset` of (features, y) or ((features, teacher_logits), y) batches.
  """
  num_examples = len(y)
  steps = num_examples // batch_size
  if steps < 1:
    raise ValueError(f"batch_size={batch_size} is larger than the {num_examples} training "
                     "examples: use a smaller batch size.")
  shapes = [np.shape(a) for a in tf.nest.flatten(() if teacher_logits is None else teacher_logits)]
  for shape in shapes:
    if len(shape) != 3 or shape[1] != num_examples or shape[0] != shapes[0][0]:
      raise ValueError(f"teacher_logits of shape {shape} for {num_examples} training examples: "
                       "pass [epochs, examples, classes], one row per example (the same epochs "
                       "for every task).")
  x_all, y_all = tf.constant(x), tf.constant(y)
  view_seed = seed if view_seed is None else view_seed
  pad = crop_padding(x.shape[1:3]) if augment else PAD
  logits_all = None if teacher_logits is None else tf.nest.map_structure(tf.constant, teacher_logits)

  def epoch_batches(epoch):
    # With E cached epochs, epoch e shows the views of epoch e mod E (in e's own order), so the
    # cached logits always label exactly the views shown.
    view_epoch = epoch if logits_all is None else tf.math.floormod(epoch, shapes[0][0])
    order = epoch_order(seed, epoch, num_examples)[:steps * batch_size]
    # One draw of the epoch's views here, not one per batch (that would be O(examples) each).
    params = (tf.gather(view_params(view_seed, view_epoch, num_examples, pad), order) if augment
              else tf.zeros([steps * batch_size, 3], tf.int32))
    return tf.data.Dataset.from_tensor_slices((
        tf.fill([steps], view_epoch), tf.reshape(order, [steps, batch_size]),
        tf.reshape(params, [steps, batch_size, 3])))

  def make_batch(view_epoch, indices, params):
    features = _features(tf.gather(x_all, indices), params, augment)
    labels = tf.gather(y_all, indices)
    if logits_all is None:
      return features, labels
    logits = tf.nest.map_structure(
        lambda table: tf.cast(tf.gather(table[view_epoch], indices), tf.float32), logits_all)
    return (features, logits), labels

  epochs = tf.data.Dataset.counter(start=start_epoch, dtype=tf.int64)
  return (epochs.flat_map(epoch_batches)
          .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def epoch_views(x: np.ndarray, seed: int, epoch: int, augment: bool, batch_size: int = 1024,
                num_examples: Optional[int] = None):
  """The views of every training example of one epoch, in index order, in batches.

  What a teacher labels to fill the cache: batch k holds the views of examples
  k·batch_size … (k+1)·batch_size − 1.

  Yields:
    float32 (or int32 token id) tensors [≤ batch_size, ...].
  """
  num_examples = num_examples or len(x)
  params = view_params(seed, epoch, num_examples, crop_padding(x.shape[1:3])) if augment else None
  for start in range(0, num_examples, batch_size):
    indices = tf.range(start, min(start + batch_size, num_examples))
    batch_params = tf.gather(params, indices) if augment else None
    yield _features(tf.gather(x, indices), batch_params, augment)
