"""Folds a model's input normalisation into its first convolution, for export.

tfkd's image models take raw pixels and normalise them in their first layer
(`Normalization`: (x - mean) / std per channel), which is right for training but
puts a SUB and a MUL op, their constants and two activation tensors into the
device graph. `fold_input_normalization` returns an equivalent model without
that layer: the convolution it fed gets its kernel divided by std per input
channel, and the mean term -sum(kernel * mean / std) goes into the convolution's
bias, or, for a bias-free convolution feeding a BatchNormalization, into that
layer's moving mean (`BN(y - s, mean) = BN(y, mean + s)`). The int8 model then
takes raw pixels as its input (scale 1, zero point -128 for 8-bit images).

Exact everywhere for 'valid' convolutions and in the interior for 'same' ones.
At the border the original padded zeros in normalised units, i.e. the channel
mean in pixels; the folded conv pads what `border` says:
  "mean"   (default) one value, the mean of the channel means, by an explicit
           padding layer (PADV2 in TFLite) before a 'valid' conv: exact when
           every channel has the same mean, otherwise off by (value - mean_c)
           per padded pixel instead of mean_c (CIFAR-10: at most 7 of 125).
           TFLite pads with one scalar, so a per-channel value would need an
           element-wise op again.
  "zeros"  raw 0 (a black frame): the conv is unchanged and no op is added,
           but the border outputs move by -sum over padded taps of
           kernel * mean / std, which costs a trained ResNet-8 about 3 points.
BENCHMARKS.md (section 8) measures both.

The model is rebuilt from its functional config, so any functional model whose
`Normalization` (last axis) feeds one Conv2D or DepthwiseConv2D folds; other
models come back unchanged (with a log line), or raise with `strict=True`.
The model passed in is never modified: train that one, export the folded one.

Example:
  deployed = fold_input_normalization(model)      # Normalization gone
  int8 = tflite.convert.convert(deployed, "int8", train_pixels[:500])
"""

import copy
from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

layers = tf_keras.layers
BORDERS = ("zeros", "mean")


@tf_keras.saving.register_keras_serializable(package="tfkd")
class ConstantPadding2D(layers.Layer):
  """Pads height and width with one constant (TFLite: PADV2); `border="mean"`'s padding.

  Args:
    padding: ((top, bottom), (left, right)).
    value: the value of every padded element.
  """

  def __init__(self, padding, value: float, **kwargs):
    super().__init__(**kwargs)
    self.padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    self.value = float(value)

  def call(self, inputs):
    return tf.pad(inputs, ((0, 0), *self.padding, (0, 0)), constant_values=self.value)

  def get_config(self):
    return {**super().get_config(), "padding": self.padding, "value": self.value}


def _consumers(config: dict, name: str) -> List[str]:
  """Names of the layers (one entry per call) whose inputs include layer `name`'s output."""
  found = []

  def refers(item) -> bool:
    if isinstance(item, (list, tuple)):
      if len(item) >= 3 and item[0] == name and isinstance(item[1], int):
        return True
      return any(refers(x) for x in item)
    if isinstance(item, dict):
      return any(refers(x) for x in item.values())
    return False

  for layer in config["layers"]:
    found += [layer["name"] for node in layer["inbound_nodes"] if refers(node)]
  return found


def _rewire(item, old: str, new: list):
  """`item` (inbound nodes) with every reference to layer `old`'s output replaced by `new`."""
  if isinstance(item, (list, tuple)):
    if len(item) >= 3 and item[0] == old and isinstance(item[1], int):
      return list(new) + list(item[3:])
    return [_rewire(x, old, new) for x in item]
  if isinstance(item, dict):
    return {k: _rewire(v, old, new) for k, v in item.items()}
  return item


def _foldable(model, config: dict) -> Tuple[Optional[tuple], str]:
  """((normalization, conv, batch-norm or None), '') to fold, or (None, why not)."""
  if isinstance(model, tf_keras.Sequential) or not getattr(model, "_is_graph_network", False):
    return None, "not a functional model (rebuild it with tf_keras.Model(inputs, outputs))"
  norms = [l for l in model.layers if type(l) is layers.Normalization]  # pylint: disable=unidiomatic-typecheck
  if len(norms) != 1:
    return None, f"{len(norms)} Normalization layers (one is folded)"
  norm = norms[0]
  ndim = len(norm.input_shape)
  if norm.invert or len(norm.axis) != 1 or norm.axis[0] % ndim != ndim - 1:
    return None, f"Normalization {norm.name!r} is inverted or not over the last (channel) axis"
  consumers = _consumers(config, norm.name)
  conv = model.get_layer(consumers[0]) if len(consumers) == 1 else None
  if (type(conv) not in (layers.Conv2D, layers.DepthwiseConv2D)
      or any(o[0] == norm.name for o in config["output_layers"])):
    return None, (f"Normalization {norm.name!r} feeds {consumers or 'the output'}, not one "
                  "Conv2D or DepthwiseConv2D")
  if conv.data_format != "channels_last" or getattr(conv, "groups", 1) != 1:
    return None, f"{conv.name!r} is channels_first or grouped"
  if len(norm.inbound_nodes) != 1 or len(conv.inbound_nodes) != 1:
    return None, f"{norm.name!r} or {conv.name!r} is called more than once"
  batch_norm = None
  after = _consumers(config, conv.name)
  if not conv.use_bias and len(after) == 1:
    candidate = model.get_layer(after[0])
    if (type(candidate) is layers.BatchNormalization  # pylint: disable=unidiomatic-typecheck
        and list(candidate.axis) in ([-1], [ndim - 1]) and len(candidate.inbound_nodes) == 1):
      batch_norm = candidate
  return (norm, conv, batch_norm), ""


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> Tuple[int, int]:
  """(before, after) padding that TensorFlow's 'same' adds along one axis."""
  effective = (kernel - 1) * dilation + 1
  total = max((-(-size // stride) - 1) * stride + effective - size, 0)
  return total // 2, total - total // 2


def _folded_weights(norm, conv, batch_norm) -> dict:
  """Layer name → weights after the fold, for the conv and the batch norm it may feed."""
  mean = np.reshape(np.asarray(norm.mean, np.float64), (-1,))
  std = np.maximum(np.sqrt(np.reshape(np.asarray(norm.variance, np.float64), (-1,))),
                   tf_keras.backend.epsilon())
  weights = conv.get_weights()
  kernel = weights[0].astype(np.float64)     # (kh, kw, in, out) or depthwise (kh, kw, in, mult)
  folded = kernel / std[None, None, :, None]
  # The mean term the conv no longer subtracts: one value per output channel.
  if type(conv) is layers.DepthwiseConv2D:  # pylint: disable=unidiomatic-typecheck
    shift = np.sum(folded * mean[None, None, :, None], axis=(0, 1)).reshape(-1)
  else:
    shift = np.einsum("hwio,i->o", folded, mean)
  dtype = weights[0].dtype
  out = {conv.name: [folded.astype(dtype)]}
  if conv.use_bias:
    out[conv.name].append((weights[1] - shift).astype(dtype))
  elif batch_norm is not None:
    values = batch_norm.get_weights()
    index = [w.name.split("/")[-1].split(":")[0] for w in batch_norm.weights].index("moving_mean")
    values[index] = (values[index] + shift).astype(dtype)
    out[batch_norm.name] = values
  else:
    out[conv.name].append((-shift).astype(dtype))
  return out


def _edited_config(config: dict, norm, conv, batch_norm, border: str) -> Tuple[dict, dict]:
  """The functional config without `norm` (its consumer rewired), and the custom objects."""
  config = copy.deepcopy(config)
  entry = next(l for l in config["layers"] if l["name"] == norm.name)
  source = entry["inbound_nodes"][0][0][:3]  # [layer, node index, tensor index] it read
  config["layers"] = [l for l in config["layers"] if l["name"] != norm.name]
  for layer in config["layers"]:
    layer["inbound_nodes"] = _rewire(layer["inbound_nodes"], norm.name, source)
  conv_entry = next(l for l in config["layers"] if l["name"] == conv.name)
  if not conv.use_bias and batch_norm is None:
    conv_entry["config"]["use_bias"] = True
  custom = {}
  if border == "mean" and conv.padding == "same":
    height, width = norm.input_shape[1:3]
    pads = tuple(_same_padding(n, k, s, d) for n, k, s, d in zip(
        (height, width), conv.kernel_size, conv.strides, conv.dilation_rate))
    value = float(np.mean(np.asarray(norm.mean)))
    pad_name = f"{conv.name}_pad"
    pad_entry = {"class_name": "ConstantPadding2D", "name": pad_name,
                 "config": {"name": pad_name, "padding": pads, "value": value},
                 "inbound_nodes": [[list(source) + [{}]]]}
    index = config["layers"].index(conv_entry)
    config["layers"].insert(index, pad_entry)
    conv_entry["inbound_nodes"] = [[[pad_name, 0, 0, {}]]]
    conv_entry["config"]["padding"] = "valid"
    custom["ConstantPadding2D"] = ConstantPadding2D
  return config, custom


def fold_input_normalization(model: tf_keras.Model, border: str = "mean",
                             strict: bool = False) -> tf_keras.Model:
  """A copy of `model` with its input Normalization folded into the conv it feeds.

  Args:
    model: a functional `tf_keras.Model`; it is not modified.
    border: what the folded 'same' conv pads with: "mean" (the mean of the
      channel means, by a padding layer: one PADV2 op) or "zeros" (raw 0, no
      extra op, but the border moves: -2.9 points on a trained ResNet-8); see
      the module docstring. 'valid' convs are exact either way.
    strict: raise if the model has nothing to fold; by default it is returned
      unchanged with a log line.

  Returns:
    The folded model (new layers, copied weights), or `model` itself when there
    is nothing to fold and `strict` is False.

  Raises:
    ValueError: `border` is unknown, or `strict` and the model has no
      Normalization feeding a single Conv2D/DepthwiseConv2D.

  Example:
    folded = fold_input_normalization(build_model("resnet8", 10, (32, 32, 3), (mean, var)))
    [l.name for l in folded.layers][:3]    # ['pixels', 'stem_conv_pad', 'stem_conv']
  """
  if border not in BORDERS:
    raise ValueError(f"Unknown border={border!r}: choose from {BORDERS}.")
  config = model.get_config() if getattr(model, "_is_graph_network", False) else None
  site, reason = _foldable(model, config)
  if site is None:
    if strict:
      raise ValueError(f"Cannot fold the input normalisation of {model.name!r}: {reason}. "
                       "Fix: export without the fold, or build the model as a functional "
                       "model whose Normalization (last axis) feeds one Conv2D/DepthwiseConv2D.")
    logging.info("fold_input_normalization: %s left unchanged: %s.", model.name, reason)
    return model
  norm, conv, batch_norm = site
  new_config, custom = _edited_config(config, norm, conv, batch_norm, border)
  folded = tf_keras.Model.from_config(new_config, custom_objects=custom)
  replaced = _folded_weights(norm, conv, batch_norm)
  for layer in model.layers:
    if layer is not norm:
      folded.get_layer(layer.name).set_weights(replaced.get(layer.name, layer.get_weights()))
  logging.info("fold_input_normalization: %s: %r folded into %r (%s), border=%s.", model.name,
               norm.name, conv.name,
               f"moving mean of {batch_norm.name!r}" if batch_norm is not None else "bias", border)
  return folded
