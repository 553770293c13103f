"""Compression under distillation: pruning, 2:4 sparsity, QAT and prune-preserving QAT (tfmot).

Each function wraps a model and returns a model, so the result drops into a
`Distiller` as its student and the teacher keeps guiding it while it is pruned
or quantised. Measurements read the exported `.tflite` itself, not the Keras
model: that is `tflite.sparsity` (sparsity, 2:4 pattern, gzip size).

Example:
  student = prune(distilled, pruning_schedule(0.75, total_steps=3000))
  distiller = Distiller(teacher, student, LogitsDistillation(4.0), student_loss_weight=0.1)
  distiller.compile(optimizer="sgd", metrics=["accuracy"])
  distiller.fit(train_ds, epochs=5, callbacks=pruning_callbacks())
  sparse = strip_pruning(student)                 # plain Keras layers, zeros kept
  qat = quantize(sparse, preserve_sparsity=True)  # fine-tune it in a Distiller again
  int8 = tflite.convert.convert(qat, "int8", representative_inputs)
  tflite.sparsity.tflite_sparsity(int8)["sparsity"]   # ≈ 0.75, counted in the file's kernels
  tflite.sparsity.gzip_bytes(int8)                    # the size tfmot's guides compare
"""

from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from absl import logging
# Not in tfmot's public API: the 8-bit registries say which layers QAT can wrap (and
# hold the prune-preserve quantizers), the pruning wrapper's class finds wrapped layers.
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry)
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
    PruneLowMagnitude)

from tfkd import model_files
from tfkd.errors import ConfigError, TfkdError

UNSUPPORTED_CHOICES = ("skip", "error")
# Input preprocessing layers tfmot's 8-bit registry does not know. QAT leaves them
# float; the int8 converter quantises them from the representative data, as
# post-training int8 does.
PREPROCESSING_LAYERS = (tf_keras.layers.Normalization, tf_keras.layers.Rescaling)


class UnsupportedLayerError(TfkdError, ValueError):
  """A model holds layers tfmot cannot prune or quantise; the message names them."""


def _describe(layer) -> str:
  return f"{layer.__class__.__name__}({layer.name})"


def _fresh_copy(model: tf_keras.Model, what: str) -> tf_keras.Model:
  """A functional copy with its own layers and the same weights.

  tfmot wraps the layer objects it is given, so pruning `model` itself would make
  the caller's model sparse too, and layers shared between models confuse the
  8-bit transforms (a BatchNorm would seem fed by two layers).
  """
  if not isinstance(model, tf_keras.Sequential) and not model._is_graph_network:  # pylint: disable=protected-access
    raise UnsupportedLayerError(
        f"Cannot {what} {model.name!r}: it is a subclassed model. tfmot wraps the layers of "
        "functional or Sequential models only: build it with the functional API.")
  copy = tf_keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  return copy


# ---------------------------------------------------------------------------- pruning


def pruning_schedule(target_sparsity: float, total_steps: int, end_fraction: float = 0.7,
                     frequency: int = 100) -> tfmot.sparsity.keras.PolynomialDecay:
  """Sparsity rising from 0 to `target_sparsity` (cubic), then held while the model recovers.

  Args:
    target_sparsity: share of each pruned kernel set to zero at the end, in (0, 1).
    total_steps: optimizer steps of the whole fine-tuning.
    end_fraction: share of the steps after which the target is reached.
    frequency: steps between mask updates (capped so the schedule fits in `total_steps`).

  Returns:
    A tfmot `PolynomialDecay` whose last mask update lands exactly on its end step, so the
    target sparsity is really reached (tfmot only prunes on multiples of `frequency`).

  Example:
    schedule = pruning_schedule(0.75, total_steps=10 * 351)
  """
  if not 0.0 < target_sparsity < 1.0:
    raise ConfigError(f"Target sparsity {target_sparsity} is not in (0, 1): use e.g. 0.5 or 0.75.")
  if not 0.0 < end_fraction <= 1.0:
    raise ConfigError(f"end_fraction {end_fraction} is not in (0, 1]: use e.g. 0.7.")
  if total_steps < 1 or frequency < 1:
    raise ConfigError(f"total_steps={total_steps} and frequency={frequency} must be >= 1.")
  pruning_steps = max(1, int(end_fraction * total_steps))
  frequency = min(frequency, pruning_steps)
  end_step = frequency * (pruning_steps // frequency)
  return tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target_sparsity,
                                              begin_step=0, end_step=end_step, frequency=frequency)


def prune(model: tf_keras.Model, schedule=None, m_by_n: Optional[Tuple[int, int]] = None,
          unsupported: str = "skip") -> tf_keras.Model:
  """Wraps every layer with prunable weights in tfmot's `PruneLowMagnitude`.

  Layers without trainable weights (Normalization, ReLU, Add, pooling) have nothing
  to prune and stay as they are. A layer with trainable weights that tfmot cannot
  wrap (e.g. PReLU) is left dense with a logged warning (`unsupported="skip"`) or
  stops the run (`"error"`); both name the layers.

  Args:
    model: a functional or Sequential model; it is copied, never changed.
    schedule: a tfmot `PruningSchedule` (see `pruning_schedule`); ignored for m_by_n.
    m_by_n: e.g. (2, 4): in every 4 consecutive input-channel weights at least 2 are
      zero (the TFLite layout's last axis). Set once at the first step, then kept.
    unsupported: "skip" or "error".

  Returns:
    A new functional model; fine-tune it with `pruning_callbacks()`.

  Example:
    pruned = prune(model, pruning_schedule(0.5, 1000))
    pruned_2_4 = prune(model, m_by_n=(2, 4))
  """
  if unsupported not in UNSUPPORTED_CHOICES:
    raise ConfigError(f"compress.unsupported={unsupported!r}: use 'skip' or 'error'.")
  if schedule is None and m_by_n is None:
    raise ConfigError("prune() needs a schedule (see pruning_schedule) or m_by_n=(2, 4).")
  model = _fresh_copy(model, "prune")
  params = {"sparsity_m_by_n": tuple(m_by_n) if m_by_n else None}
  if schedule is not None and m_by_n is None:
    params["pruning_schedule"] = schedule
  skipped, wrapped = [], []

  def wrap(layer):
    if isinstance(layer, PruneLowMagnitude) or not layer.trainable_weights:
      return layer
    try:
      wrapper = tfmot.sparsity.keras.prune_low_magnitude(layer, **params)
    except ValueError:  # tfmot's "Please initialize `Prune` with a supported layer".
      skipped.append(_describe(layer))
      return layer
    kernels = wrapper.layer.get_prunable_weights()
    if not kernels:  # e.g. BatchNormalization, DepthwiseConv2D: supported, nothing to prune.
      return layer
    if m_by_n and any(len(k.shape) not in (2, 4) for k in kernels):
      skipped.append(_describe(layer) + f" (no {m_by_n[0]}:{m_by_n[1]} for rank "
                     f"{[len(k.shape) for k in kernels]} kernels)")
      return layer
    wrapped.append(layer.name)
    return wrapper

  pruned = tf_keras.models.clone_model(model, clone_function=wrap)
  if skipped and unsupported == "error":
    raise UnsupportedLayerError(
        f"tfmot cannot prune these layers of {model.name!r}: {skipped}. Fix: set "
        "compress.unsupported='skip' to leave them dense, or replace them with layers "
        "tfmot prunes (Conv2D, Dense, SeparableConv2D, Embedding, ...).")
  if skipped:
    logging.warning("Pruning leaves these layers dense (tfmot cannot wrap them): %s", skipped)
  if not wrapped:
    raise UnsupportedLayerError(f"{model.name!r} has no layer tfmot can prune: nothing to do.")
  logging.info("Pruning %d layers of %s: %s", len(wrapped), model.name, wrapped)
  return pruned


def pruning_callbacks() -> List[tf_keras.callbacks.Callback]:
  """The callbacks `fit` needs while pruning: tfmot's `UpdatePruningStep`.

  It finds the pruned layers recursively, so it works when the pruned model is the
  student nested inside a `Distiller`.
  """
  return [tfmot.sparsity.keras.UpdatePruningStep()]


def _pruning_wrappers(model: tf_keras.Model):
  found = []
  for layer in model.layers:
    if isinstance(layer, tf_keras.Model):
      found += _pruning_wrappers(layer)
    elif isinstance(layer, PruneLowMagnitude):
      found.append(layer)
  return found


def keras_sparsity(model: tf_keras.Model) -> float:
  """Share of zeros in the pruned kernels of a model still wrapped for pruning."""
  kernels = [w.numpy() * m.numpy() for l in _pruning_wrappers(model) for w, m, _ in l.pruning_vars]
  if not kernels:
    return 0.0
  return float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels))


def strip_pruning(model: tf_keras.Model) -> tf_keras.Model:
  """Removes the pruning wrappers, leaving plain layers whose kernels hold the zeros.

  The masks are applied once more first, so the zeros are there even if training
  stopped between the optimizer step and `UpdatePruningStep`'s end-of-epoch re-mask.
  """
  for wrapper in _pruning_wrappers(model):
    wrapper.pruning_obj.weight_mask_op()
  return tfmot.sparsity.keras.strip_pruning(model)


# ----------------------------------------------------------------------- quantisation


class _PrunePreserveRegistry(prune_preserve_quantize_registry.Default8bitPrunePreserveQuantizeRegistry):
  """tfmot's prune-preserve registry, declining input preprocessing layers.

  tfmot's version calls every layer without trainable weights supported, then
  finds no config for `Normalization` and fails; declining it leaves the layer
  float, as the default 8-bit scheme does.
  """

  @classmethod
  def supports(cls, layer):
    return not isinstance(layer, PREPROCESSING_LAYERS) and super().supports(layer)


class _PrunePreserveScheme(tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme):
  """`Default8BitPrunePreserveQuantizeScheme` with `_PrunePreserveRegistry`."""

  def get_quantize_registry(self):
    return _PrunePreserveRegistry()


def _handled_by_transforms(layer) -> bool:
  """BatchNormalization after a conv/dense is folded by tfmot's 8-bit transforms."""
  if isinstance(layer, (tf_keras.layers.SeparableConv1D, tf_keras.layers.SeparableConv2D)):
    return True
  if not isinstance(layer, tf_keras.layers.BatchNormalization):
    return False
  nodes = layer._inbound_nodes  # pylint: disable=protected-access
  inbound = [l for node in nodes for l in tf.nest.flatten(node.inbound_layers)]
  return bool(inbound) and all(
      isinstance(l, (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D, tf_keras.layers.Dense))
      for l in inbound)


def unsupported_for_quantization(model: tf_keras.Model) -> List[str]:
  """Layers of `model` tfmot's default 8-bit QAT cannot quantise, as "Class(name)"."""
  registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
  return [_describe(l) for l in model.layers
          if not isinstance(l, (tf_keras.layers.InputLayer,) + PREPROCESSING_LAYERS)
          and not registry.supports(l) and not _handled_by_transforms(l)]


def calibrate_ranges(qat_model: tf_keras.Model, float_model: tf_keras.Model, inputs: np.ndarray,
                     batch_size: int = 50) -> int:
  """Sets a QAT model's activation ranges to the float model's min/max on `inputs`.

  tfmot starts every activation range at [-6, 6] and moves it toward each batch's
  range with an exponential moving average (decay 0.999, ~0.1% per step), so after a
  short QAT the ranges, which the int8 model inherits, are still far from the data's.
  Calibrated like post-training int8 (min and max over representative inputs, 0
  included), QAT starts where post-training int8 is and fine-tuning refines it.

  Args:
    qat_model: from `quantize`; its layers keep the float model's names.
    float_model: the model `qat_model` was made from.
    inputs: representative inputs (training data), e.g. a few hundred.
    batch_size: inputs per forward pass.

  Returns:
    The number of layers whose ranges were set.

  Example:
    calibrate_ranges(quantize(model), model, train_x[:500])
  """
  moving_average = tfmot.quantization.keras.quantizers.MovingAverageQuantizer
  targets = []  # (layer name, [range variables of that layer's output])
  for layer in qat_model.layers:
    if not isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2):
      continue
    # tfmot keeps these private; output and post-activation ranges quantise the layer's output.
    quantizers = [(q, layer._output_quantizer_vars) for q in layer._output_quantizers[:1]]  # pylint: disable=protected-access
    quantizers += [(a.quantizer, a._post_activation_vars) for a in layer._quantize_activations  # pylint: disable=protected-access
                   if hasattr(a, "_post_activation_vars")]
    ranges = [v for q, v in quantizers
              if isinstance(q, moving_average) and not q.per_axis and not q.symmetric]
    if ranges:
      targets.append((layer.name, ranges))
  if not targets:
    return 0
  probe = tf_keras.Model(float_model.inputs, [float_model.get_layer(n).output for n, _ in targets])
  low, high = np.full(len(targets), np.inf), np.full(len(targets), -np.inf)
  for start in range(0, len(inputs), batch_size):
    outputs = probe(np.asarray(inputs[start:start + batch_size], np.float32), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    low = np.minimum(low, [float(tf.reduce_min(o)) for o in outputs])
    high = np.maximum(high, [float(tf.reduce_max(o)) for o in outputs])
  for (_, ranges), lo, hi in zip(targets, low, high):
    for variables in ranges:
      variables["min_var"].assign(min(lo, 0.0))
      variables["max_var"].assign(max(hi, 0.0))
  return len(targets)


def quantize(model: tf_keras.Model, preserve_sparsity: bool = False,
             calibration_data: Optional[np.ndarray] = None) -> tf_keras.Model:
  """Quantisation-aware training model: fake-quantised 8-bit weights and activations.

  Every layer is annotated except input preprocessing (`Normalization`, `Rescaling`):
  tfmot's 8-bit scheme has no config for them (`quantize_model` fails on our models'
  first layer), so they stay float in the QAT model and the int8 converter
  quantises them from the representative data, exactly as post-training int8 does.
  (Fake-quantising their output instead makes tfmot insert an input quantizer whose
  range starts at [-6, 6]; the converter then adds a DEQUANTIZE/QUANTIZE pair at the
  input.) Layer names are kept (no "quant_" prefix), so feature-distillation losses
  still find the layers they tap.

  Args:
    model: a functional or Sequential model (float, or pruned and stripped).
    preserve_sparsity: use tfmot's `Default8BitPrunePreserveQuantizeScheme`, which
      masks the kernels' zeros so QAT keeps a pruned model's sparsity.
    calibration_data: representative inputs; if given, the activation ranges start
      from their min/max (see `calibrate_ranges`) instead of tfmot's [-6, 6].

  Returns:
    A new model to fine-tune (e.g. in a `Distiller`), then convert with mode "int8".
    Save it as `.h5` inside `quantize_scope()` and load it with `load_model`: tf_keras
    cannot reload tfmot's wrappers from `.keras` files
    (tensorflow/model-optimization#1123).

  Raises:
    UnsupportedLayerError: listing every layer the 8-bit scheme cannot quantise.

  Example:
    qat = quantize(model, calibration_data=representative)
    int8 = tflite.convert.convert(qat, "int8", representative)
  """
  model = _fresh_copy(model, "quantise")
  unsupported = unsupported_for_quantization(model)
  if unsupported:
    raise UnsupportedLayerError(
        f"tfmot's 8-bit QAT cannot quantise these layers of {model.name!r}: {unsupported}. "
        "Fix: replace them with supported layers (Conv2D, DepthwiseConv2D, Dense, "
        "BatchNormalization after a conv, ReLU, Add, pooling), or export with post-training "
        "int8 instead of QAT.")

  def annotate(layer):
    if isinstance(layer, PREPROCESSING_LAYERS):
      return layer
    return tfmot.quantization.keras.quantize_annotate_layer(layer)

  annotated = tf_keras.models.clone_model(model, clone_function=annotate)
  if preserve_sparsity:
    scheme = _PrunePreserveScheme()
  else:
    scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
  try:
    with quantize_scope():
      qat = tfmot.quantization.keras.quantize_apply(annotated, scheme, quantized_layer_name_prefix="")
  except (RuntimeError, ValueError) as e:
    raise UnsupportedLayerError(f"tfmot could not quantise {model.name!r}: {e}") from e
  if calibration_data is not None:
    calibrate_ranges(qat, model, calibration_data)
  return qat


def quantize_scope():
  """Context in which QAT models save and load: `with quantize_scope(): model.save(p)`.

  tfmot's own scope, plus the prune-preserve quantizers, which tfmot's scope lacks.
  """
  return tfmot.quantization.keras.quantize_scope({
      "PrunePreserveDefault8BitWeightsQuantizer":
          prune_preserve_quantize_registry.PrunePreserveDefault8BitWeightsQuantizer,
      "PrunePreserveDefault8BitConvWeightsQuantizer":
          prune_preserve_quantize_registry.PrunePreserveDefault8BitConvWeightsQuantizer,
  })


def load_model(path: str) -> tf_keras.Model:
  """Loads a saved model, QAT wrappers included (plain models load the same way).

  QAT models are `.h5` files (see `quantize`), so HDF5 is allowed here; like every
  model tfkd loads, it loads in safe mode (`tfkd.model_files`).
  """
  with quantize_scope():
    return model_files.load_model(path, allow_legacy_formats=True)
