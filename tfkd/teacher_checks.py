"""A teacher checked before a student learns from it, and logits from a teacher that outputs softmax.

Three teachers would teach wrong things without a word:
  - one that outputs probabilities (a final softmax, the keras.applications default):
    the distillation losses take their inputs as logits. `as_logits` recovers them:
    exactly (the softmax layer's input) when the model ends in a softmax layer or
    activation, else as log-probabilities, which differ from the logits by a
    constant per row that softmax ignores.
  - one at chance: `check_teacher` refuses accuracy below max(1.5 x chance,
    chance + 5 points), chance being the share of the most frequent class.
  - one whose BatchNorm moving statistics never settled (too few steps): good in
    training mode, poor in inference mode, the mode it teaches in. `check_teacher`
    refuses an inference-mode accuracy more than 20 points below the training-mode
    accuracy on the same training images.

Example:
  teacher, how = as_logits(tf_keras.models.load_model("teacher.keras"), train_x[:64])
  check_teacher(teacher, "teacher.keras", 10, train_x, train_y, val_x, val_y, fix="retrain it")
"""

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from tfkd import keras3_teacher
from tfkd.errors import TeacherError

CHANCE_FACTOR, CHANCE_MARGIN = 1.5, 0.05  # refused below max(1.5 x chance, chance + 0.05)
MAX_MODE_GAP = 0.20     # refused when inference-mode accuracy is this far below training mode
SAMPLE_SIZE = 256       # training images of the training/inference-mode comparison
MAX_EVAL_SIZE = 2000    # validation images measured (spread evenly over the split)


def _is_softmax(activation) -> bool:
  return getattr(activation, "__name__", "") == "softmax"


def _sums_to_one(outputs: np.ndarray) -> bool:
  return bool(np.all(outputs >= 0) and np.all(outputs <= 1)
              and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))


_LOGS_TAKEN = "its outputs sum to 1: their logarithms taken (logits up to a constant per row)"


def as_logits(model: tf_keras.Model, sample: np.ndarray) -> Tuple[tf_keras.Model, Optional[str]]:
  """`model`, or a model sharing its weights that returns logits where `model` returns softmax.

  Args:
    model: a single-output classifier.
    sample: a few inputs (e.g. 64 training images) to look at its outputs.

  Returns:
    (model returning logits, None if `model` already did, else how its softmax was undone).
  """
  if isinstance(model, keras3_teacher.Keras3Teacher):  # run by Keras 3: no layers to take apart
    if not model.log_probabilities and _sums_to_one(model.predict(_model_inputs(np.asarray(sample)))):
      return keras3_teacher.Keras3Teacher(model.model, model.path, log_probabilities=True), _LOGS_TAKEN
    return model, None
  if not model.outputs:
    raise TeacherError(f"Teacher {model.name!r} is a subclassed model without symbolic outputs: "
                       "save it as a functional or Sequential Keras model.")
  output_layer = model.outputs[0]._keras_history.layer  # pylint: disable=protected-access
  if isinstance(output_layer, tf_keras.layers.Softmax) or (
      isinstance(output_layer, tf_keras.layers.Activation) and _is_softmax(output_layer.activation)):
    logits = output_layer.input
    how = f"its final {type(output_layer).__name__} layer dropped (exact logits)"
  elif _is_softmax(getattr(output_layer, "activation", None)):
    # e.g. Dense(classes, activation="softmax"): the same layer without its activation.
    config = dict(output_layer.get_config(), activation="linear", name=f"{output_layer.name}_logits")
    linear = type(output_layer).from_config(config)
    logits = linear(output_layer.input)
    linear.set_weights(output_layer.get_weights())
    how = f"the softmax of its layer {output_layer.name!r} dropped (exact logits)"
  elif _sums_to_one(model.predict(_model_inputs(np.asarray(sample)), verbose=0)):
    tiny = float(np.finfo(np.float32).tiny)  # a probability that underflowed to 0 → -87, not -inf
    logits = tf_keras.layers.Lambda(lambda p: tf.math.log(tf.maximum(p, tiny)),
                                    name="log_probabilities")(model.outputs[0])
    how = _LOGS_TAKEN
  else:
    return model, None
  return tf_keras.Model(model.inputs, logits, name=model.name), how


def _accuracy(logits, labels) -> float:
  return float(np.mean(np.argmax(logits, axis=-1) == labels))


def _model_inputs(x: np.ndarray) -> np.ndarray:
  """Images as float32, as training feeds them; token ids stay integers."""
  return x if x.dtype.kind in "iu" and x.dtype != np.uint8 else x.astype(np.float32)


def logits_of_file(logits: np.ndarray, labels: np.ndarray, name: str) -> Tuple[np.ndarray, Optional[str]]:
  """Imported teacher outputs [E, N, classes] as logits, refused when they agree with the labels at chance.

  Returns:
    (logits, None, or how probabilities were turned into logits).
  """
  how = None
  if _sums_to_one(logits[0]):
    logits = np.log(np.maximum(logits, np.finfo(np.float32).tiny)).astype(np.float32)
    how = "its rows sum to 1: their logarithms taken (logits up to a constant per row)"
  labelled = labels >= 0
  agreement, chance = _accuracy(logits[0][labelled], labels[labelled]), chance_level(labels[labelled])
  if agreement < max(CHANCE_FACTOR * chance, chance + CHANCE_MARGIN):
    raise TeacherError(
        f"Teacher logits {name} agree with {agreement:.1%} of the training labels, near chance "
        f"({chance:.1%}): they teach nothing, or their rows are in another order than tfkd's "
        "training split. Fix: write one row per example in the order of Run.splits.train "
        "(docs/distillation.md), from a trained teacher.")
  return logits, how


def chance_level(labels: np.ndarray) -> float:
  """Accuracy of always answering the most frequent class."""
  return float(np.bincount(labels).max() / len(labels))


def check_teacher(model: tf_keras.Model, name: str, num_classes: int, train_x: np.ndarray,
                  train_y: np.ndarray, val_x: Optional[np.ndarray] = None,
                  val_y: Optional[np.ndarray] = None, fix: str = "train it again") -> dict:
  """Raises `TeacherError` for a teacher unfit for the data, at chance, or with unsettled BatchNorm.

  Args:
    model: the teacher, returning logits (see `as_logits`).
    name: how messages name it (e.g. its file).
    num_classes: classes of the data.
    train_x, train_y: the training split; `SAMPLE_SIZE` images are compared in
      training and inference mode (the model's weights are restored afterwards).
    val_x, val_y: the validation split for the chance check (up to `MAX_EVAL_SIZE`
      images); None: the training sample's inference-mode accuracy is used.
    fix: how the user makes a new teacher, appended to the messages.

  Returns:
    {"accuracy", "chance", "training_mode_accuracy", "inference_mode_accuracy"}.
  """
  takes, gives, data_shape = tuple(model.input_shape[1:]), model.output_shape[-1], train_x.shape[1:]
  fits = len(takes) == len(data_shape) and all(t in (None, d) for t, d in zip(takes, data_shape))
  if not fits or gives != num_classes:
    raise TeacherError(
        f"Teacher {name} takes inputs of shape {takes} and predicts {gives} classes, but the data "
        f"has inputs of shape {tuple(data_shape)} and {num_classes} classes. Fix: give a "
        "teacher for this data, or make the data fit it (data.image_size, data.channels).")
  sample = np.linspace(0, len(train_y) - 1, min(SAMPLE_SIZE, len(train_y))).astype(int)
  x, y = tf.constant(_model_inputs(train_x[sample])), train_y[sample]
  weights = model.get_weights()  # a training-mode call updates the BatchNorm moving statistics
  training_mode = _accuracy(model(x, training=True).numpy(), y)
  model.set_weights(weights)
  inference_mode = _accuracy(model.predict(x, verbose=0), y)
  if val_x is not None and len(val_y):
    chosen = np.linspace(0, len(val_y) - 1, min(MAX_EVAL_SIZE, len(val_y))).astype(int)
    accuracy = _accuracy(model.predict(_model_inputs(val_x[chosen]), batch_size=256, verbose=0),
                         val_y[chosen])
    split, chance = "validation", chance_level(val_y[chosen])
  else:
    accuracy, split, chance = inference_mode, "training", chance_level(y)
  measured = {"accuracy": accuracy, "chance": chance, "training_mode_accuracy": training_mode,
              "inference_mode_accuracy": inference_mode}
  if training_mode - inference_mode > MAX_MODE_GAP:
    raise TeacherError(
        f"Teacher {name} scores {training_mode:.1%} on training images in training mode but "
        f"{inference_mode:.1%} in inference mode, the mode it teaches in: its BatchNorm moving "
        "statistics never settled (too few training steps). Fix: lower train.batch_size (more "
        f"steps an epoch) or raise teacher.epochs, then {fix}.")
  if accuracy < max(CHANCE_FACTOR * chance, chance + CHANCE_MARGIN):
    raise TeacherError(
        f"Teacher {name} scores {accuracy:.1%} on the {split} split, near chance ({chance:.1%}, "
        "the most frequent class): it has nothing to teach. Likely causes: too few epochs or a "
        "learning rate too high, or inputs other than it was trained on (tfkd feeds "
        f"{'raw pixels in [0, 255]' if train_x.dtype == np.uint8 else 'inputs'} of shape "
        f"{tuple(train_x.shape[1:])}). Fix: {fix}.")
  return measured
