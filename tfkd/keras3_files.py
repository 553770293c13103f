"""Keras 3 `.keras` files as tf_keras models: a teacher saved by today's `tf.keras` can teach.

Since TensorFlow 2.16, `tf.keras` is Keras 3, so most users' models are saved by Keras 3.
tfkd runs on Keras 2 (`tf_keras`, which tfmot needs), and tf_keras cannot read Keras 3's
files. A functional or Sequential Keras 3 model of Keras's own layers (nested models
included, e.g. a `keras.applications` backbone) is rebuilt here layer for layer in tf_keras
from its config, and given its weights; `keras.ops` operations between layers and the
layers and activations tf_keras lacks come from `tfkd.keras3_layers`. The rebuilt model is
then checked against the Keras 3 model on the same inputs: only a model whose outputs match
is returned, so every tfkd path (live and cached distillation, feature losses, teacher
compression with tfmot, export) gets an ordinary tf_keras model that computes what the
user's model computes. A model that cannot be rebuilt (a subclassed model, custom layers)
raises `NotRebuildable`, which holds the Keras 3 model: as a `tfkd.keras3_teacher.Keras3Teacher`
it can still label a cached teacher's views.

The Keras 3 file is loaded with `safe_mode=True`, like every model tfkd loads
(`tfkd.model_files`). Initializers are not carried over: the weights are copied.

Example:
  teacher = tfkd.model_files.load_model("teacher.keras")   # a tf_keras.Model, whichever Keras saved it
"""

import inspect
import json
import zipfile
from typing import Any, Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from tfkd import keras3_layers
from tfkd.errors import ModelFileError

# What the fix says when a model cannot be rebuilt: the two ways that need no rebuilding.
OTHER_WAYS = ("compute its logits with Keras 3 and pass them as distill.teacher_logits_path "
               "(docs/distillation.md), or build and train the model with tf_keras")


def keras_version(path: str) -> str:
  """The Keras version a `.keras` archive was saved by ('' when its metadata does not say)."""
  with zipfile.ZipFile(path) as archive:
    try:
      return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
    except (KeyError, ValueError):
      return ""


def is_keras3_file(path: str) -> bool:
  """Whether the `.keras` archive at `path` was saved by Keras 3."""
  return keras_version(path).startswith("3.")


class NotRebuildable(ModelFileError):
  """A Keras 3 model that loaded but has no tf_keras twin; `model` is the Keras 3 model.

  It can still teach through its outputs (`tfkd.keras3_teacher.Keras3Teacher`).
  """

  def __init__(self, message: str, model):
    super().__init__(message)
    self.model = model


def rebuild(original, path: str) -> tf_keras.Model:
  """A Keras 3 model loaded from `path`, rebuilt as a tf_keras model with the same outputs.

  Args:
    original: the model as Keras 3 loaded it (`tfkd.model_files.load_model` loads it).
    path: its file, for the messages.

  Returns:
    A functional `tf_keras.Model` with the file's layer names and weights.

  Raises:
    NotRebuildable: naming the file and the fix, when a layer has no tf_keras counterpart or
      the rebuilt model computes other outputs.
  """
  try:
    rebuilt = to_tf_keras(original)
    check_same_outputs(original, rebuilt, path)
  except ModelFileError as e:
    raise NotRebuildable(f"Model {path!r} (Keras {keras_version(path)}) cannot be rebuilt in "
                         f"tf_keras, which tfkd runs on: {e}", original) from e
  return rebuilt


def to_tf_keras(model) -> tf_keras.Model:
  """A Keras 3 functional or Sequential model rebuilt in tf_keras, with its weights.

  Args:
    model: a built `keras.Model` (Keras 3) of Keras's own layers.

  Returns:
    A functional `tf_keras.Model` of the same layers (names, configs, weights, wiring).

  Raises:
    ModelFileError: a subclassed model, a layer or operation that is not one of Keras's own
      layers, or a layer config or weight that tf_keras reads otherwise.

  Example:
    student_twin = to_tf_keras(keras.applications.MobileNetV2(weights=None))
  """
  import keras  # pylint: disable=import-outside-toplevel
  if isinstance(model, keras.Sequential):
    return _rebuild_sequential(model)
  if not isinstance(model, keras.Model) or type(model).__name__ != "Functional":
    raise ModelFileError(f"model {model.name!r} is a subclassed {type(model).__name__}, whose "
                         f"layers and wiring are Python code, not a config. Fix: {OTHER_WAYS}.")
  return _rebuild_functional(model)


def _rebuild_sequential(model) -> tf_keras.Model:
  if not model.built:
    raise ModelFileError(f"Sequential model {model.name!r} was never built (no input shape).")
  inputs = _input(model.inputs[0], model.inputs[0].name)
  x, pairs = inputs, []
  for layer in model.layers:
    twin = _twin(layer)
    x = twin(x)
    pairs.append((layer, twin))
  rebuilt = tf_keras.Model(inputs, x, name=model.name)
  _copy_weights(pairs)
  return rebuilt


def _rebuild_functional(model) -> tf_keras.Model:
  config = model.get_config()
  outputs_of: Dict[Tuple[str, int], List[Any]] = {}  # (layer name, node index) → flat outputs
  twins = {}  # layer name → (Keras 3 layer, tf_keras layer)
  waiting = [(c, i, node) for c in config["layers"]  # each call of each layer, in turn
             for i, node in enumerate(c["inbound_nodes"] or [None])]
  while waiting:  # a call is made once every tensor it reads exists (a shared layer's later call
    # may read what its earlier one fed)
    ready = [w for w in waiting if _can_resolve(w[2], outputs_of)]
    if not ready:
      raise ModelFileError(f"the wiring of model {model.name!r} could not be followed (layers "
                           f"{[w[0]['name'] for w in waiting][:5]} wait on missing tensors).")
    for item in ready:
      waiting.remove(item)
      layer_config, index, node = item
      if layer_config.get("module", "").startswith("keras.src.ops"):  # `x + y`, `x[:, 0]`
        outputs_of[(layer_config["name"], index)] = tf.nest.flatten(
            _operation(layer_config, node, outputs_of))
        continue
      args = _resolve(node.get("args", []) if node else [], outputs_of)
      kwargs = _resolve(node.get("kwargs", {}) if node else {}, outputs_of)
      # Keras 3 records `training` in a call (True for its augmentation layers) but replaces it
      # with the model call's own; tf_keras would keep it: the model call's must reach the layer.
      kwargs.pop("training", None)
      layer = model.get_layer(layer_config["name"])
      if layer_config["class_name"] == "InputLayer":
        outputs_of[(layer.name, 0)] = [_input(layer.output, layer.name)]
        continue
      if layer.name not in twins:
        twins[layer.name] = (layer, _twin(layer))
      outputs_of[(layer.name, index)] = tf.nest.flatten(twins[layer.name][1](*args, **kwargs))
  inputs, outputs = (
      [_resolve(_as_keras_tensor(ref), outputs_of) for ref in _refs(config[key])]
      for key in ("input_layers", "output_layers"))
  rebuilt = tf_keras.Model(inputs if len(inputs) > 1 else inputs[0],
                           outputs if len(outputs) > 1 else outputs[0], name=model.name)
  _copy_weights(twins.values())
  return rebuilt


def _operation(layer_config: dict, node: dict, outputs_of):
  """A Keras 3 operation between layers (`x + y`, `x[:, 0]`), rebuilt and called on its tensors."""
  tensors = []

  def template(value):  # the call's arguments with each tensor as its index in `tensors`
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
      tensors.append(_resolve(value, outputs_of))
      return {"tfkd_input": len(tensors) - 1}
    if isinstance(value, dict):
      return {k: template(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return [template(v) for v in value]
    return value

  arguments = template({"args": node.get("args", []), "kwargs": node.get("kwargs", {})})
  config = {k: v for k, v in (layer_config.get("config") or {}).items() if k != "name"}
  layer = keras3_layers.KerasOperation(layer_config["module"], layer_config["class_name"], config,
                                       arguments, name=layer_config["name"])
  return layer(tensors)


def _refs(layers) -> list:
  """`[name, node, index]` or a list of them, as a list of them."""
  return [layers] if layers and isinstance(layers[0], str) else list(layers)


def _as_keras_tensor(ref) -> dict:
  return {"class_name": "__keras_tensor__", "config": {"keras_history": ref}}


def _resolve(value, outputs_of):
  """A call's serialized arguments with each Keras 3 tensor replaced by its tf_keras twin."""
  if isinstance(value, dict):
    if value.get("class_name") == "__keras_tensor__":
      name, node, index = value["config"]["keras_history"]
      return outputs_of[(name, node)][index]
    return {k: _resolve(v, outputs_of) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_resolve(v, outputs_of) for v in value]
  return value


def _can_resolve(node, outputs_of) -> bool:
  """Whether every tensor a call (a serialized inbound node) reads has been made."""
  try:
    _resolve(node, outputs_of)
    return True
  except KeyError:
    return False


def _input(tensor, name: str):
  return tf_keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype, name=name)


def _plain(value, layer_name: str):
  """A Keras 3 config value as tf_keras reads it: a dtype policy by its name, a wrapped layer as
  its tf_keras config (`_layer_config`), another serialized object (regularizer, constraint) as
  {'class_name', 'config'}, and no initializers (the weights are copied: they are moot, and
  Keras 3's have options tf_keras's lack)."""
  if isinstance(value, dict) and "class_name" in value and "config" in value:
    name = value["class_name"]
    if name.endswith("DTypePolicy"):
      return value["config"]["name"]
    if value.get("module", "").startswith(("keras.layers", "keras.src.layers")):
      return {"class_name": name, "config": _layer_config(name, value["config"], layer_name)[1]}
    return {"class_name": name, "config": _plain(value["config"], layer_name)}
  if isinstance(value, dict):
    return {k: _plain(v, layer_name) for k, v in value.items() if not k.endswith("_initializer")}
  return value


# Keyword arguments every tf_keras layer takes besides its constructors' own.
_LAYER_KWARGS = {"input_dim", "input_shape", "batch_input_shape", "batch_size", "weights",
                 "activity_regularizer", "autocast", "implementation"}
# Keras 3 options tf_keras has under another name.
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}
# Keras 3 options tf_keras lacks, at values that change nothing tf_keras computes (any layer's,
# then a class's own): tf_keras's image layers are channels-last, its RandomContrast clips to
# 0-255, and Resizing's fill options only act with pad_to_aspect_ratio (refused if set).
_IMPLIED = {"data_format": "channels_last"}
_IMPLIED_BY_CLASS = {"RandomContrast": {"value_range": [0, 255]},
                     "Resizing": {"fill_mode": "constant", "fill_value": 0.0}}


def _layer_config(class_name: str, config: dict, layer_name: str) -> Tuple[type, dict]:
  """The tf_keras class of a Keras 3 layer class, and the Keras 3 config as its config.

  Keras 3 options tf_keras does not have are dropped where they are off or at the value tf_keras
  implies (`quantization_config=None`, `data_format='channels_last'`), else refused: a model that
  uses them computes what tf_keras cannot.
  """
  cls = getattr(tf_keras.layers, class_name, None)
  if not (isinstance(cls, type) and issubclass(cls, tf_keras.layers.Layer)):
    raise ModelFileError(f"layer {layer_name!r} is a {class_name}, a layer tf_keras does not "
                         f"have. Fix: {OTHER_WAYS}.")
  accepted, renamed, plain = _accepted_keys(cls), _RENAMED.get(class_name, {}), {}
  implied = {**_IMPLIED, **_IMPLIED_BY_CLASS.get(class_name, {})}
  for key, value in config.items():
    key = renamed.get(key, key)
    if key.endswith("_initializer"):
      continue
    if key not in accepted:
      if value in (None, False, 0, "", [], {}) or _plain_lists(value) == implied.get(key, ()):
        continue
      raise ModelFileError(f"layer {layer_name!r} ({class_name}) sets {key}={value!r}, a Keras 3 "
                           f"option tf_keras does not have. Fix: save the model without it, or "
                           f"{OTHER_WAYS}.")
    if key.endswith("activation") and isinstance(value, str):  # also recurrent_activation
      value = keras3_layers.ACTIVATIONS.get(value, value)
    plain[key] = _plain(value, layer_name)
  return cls, plain


def _plain_lists(value):
  return list(value) if isinstance(value, tuple) else value


def _accepted_keys(cls) -> set:
  """The config keys a tf_keras layer class's constructors (its own and its bases') take."""
  keys = set(_LAYER_KWARGS)
  for klass in cls.__mro__[:-1]:  # not `object`
    if "__init__" in vars(klass):
      keys.update(inspect.signature(klass.__init__).parameters)
  return keys - {"self", "args", "kwargs"}


def _twin(layer):
  """The tf_keras layer of the same class and config as a Keras 3 layer (not yet built)."""
  import keras  # pylint: disable=import-outside-toplevel
  if isinstance(layer, keras.Model):
    return to_tf_keras(layer)
  module, class_name = type(layer).__module__, type(layer).__name__
  if (module, class_name) in keras3_layers.APPLICATION_LAYERS:  # e.g. ConvNeXt's LayerScale
    return keras3_layers.APPLICATION_LAYERS[(module, class_name)].from_config(
        _plain(layer.get_config(), layer.name))
  if not module.startswith("keras.src.layers"):
    raise ModelFileError(f"layer {layer.name!r} is a {class_name} from {module}, not one of "
                         f"Keras's own layers, so it has no tf_keras counterpart. Fix: "
                         f"{OTHER_WAYS}.")
  cls, config = _layer_config(class_name, layer.get_config(), layer.name)
  try:
    if cls is tf_keras.layers.MultiHeadAttention:  # its from_config wants the shapes it was built
      return cls(**config)  # for, which Keras 3 does not save; it builds on its first call anyway
    return cls.from_config(config)
  except (TypeError, ValueError) as e:
    raise ModelFileError(f"layer {layer.name!r} ({class_name}) has no tf_keras counterpart for "
                         f"its config ({' '.join(str(e).split())[:300]}). Fix: {OTHER_WAYS}.") from e


def _copy_weights(pairs) -> None:
  """Gives every rebuilt layer its Keras 3 layer's weights, checking they pair up one to one."""
  for layer, twin in pairs:
    if isinstance(twin, tf_keras.Model):
      continue  # a nested model copied its own layers' weights
    weights = layer.get_weights()
    shapes = [tuple(w.shape) for w in weights]
    twin_shapes = [tuple(w.shape) for w in twin.weights]
    if shapes != twin_shapes:
      raise ModelFileError(f"layer {layer.name!r} ({type(layer).__name__}) holds weights of shapes "
                           f"{shapes} in Keras 3 but {twin_shapes} in tf_keras. Fix: {OTHER_WAYS}.")
    twin.set_weights(weights)


def check_same_outputs(original, rebuilt: tf_keras.Model, path: str,
                       tolerance: float = 1e-4) -> None:
  """Raises `ModelFileError` unless both models compute the same outputs on the same inputs.

  The two Kerases round differently inside some layers (BatchNorm, convolutions), and a deep
  network amplifies that: the difference allowed is the larger of `tolerance` and ten times
  what rounding moves the outputs by (`compare_outputs`). A rebuilt layer that computes
  something else differs far more.

  Args:
    original: the Keras 3 model.
    rebuilt: its tf_keras twin.
    path: the file, for the message.
    tolerance: the least difference allowed, relative to the largest output (at least 1).
  """
  for c in compare_outputs(original, rebuilt):
    if not c["difference"] <= max(tolerance * c["scale"], 10 * c["rounding"]):  # NaN fails too
      raise ModelFileError(f"Model {path!r} (Keras 3) rebuilt in tf_keras computes other outputs: "
                           f"they differ by up to {c['difference']:.3g} on {c['inputs']} inputs "
                           f"(outputs up to {c['scale']:.3g}; rounding moves them by "
                           f"{c['rounding']:.3g}). Fix: {OTHER_WAYS}.")


def compare_outputs(original, rebuilt: tf_keras.Model, rows: int = 8) -> List[Dict[str, Any]]:
  """How far a rebuilt model's outputs are from the Keras 3 model's, and how far rounding moves them.

  The inputs are random, twice: pixels 0-255 (what an image model that rescales reads) and
  values around 0 (what a model fed normalized inputs reads; large ones would saturate its
  sigmoids and hide a difference there); integer inputs are 0 and 1. Any inputs of the right
  shape exercise every layer and weight. Both models run in inference mode (moving BatchNorm
  statistics, no dropout).

  Args:
    original: the Keras 3 model.
    rebuilt: its tf_keras twin.
    rows: inputs of each kind.

  Returns:
    For 'pixels' and 'normal' inputs: `difference`, the largest difference between the
    models' outputs; `scale`, the largest output (at least 1); `rounding`, the largest change
    of the Keras 3 model's outputs when its float inputs move by a rounding-sized 1e-6 of
    themselves; `spread`, the outputs' mean standard deviation over the inputs (near 0, the
    outputs hardly depend on the inputs and agree whatever the weights).
  """
  import keras  # pylint: disable=import-outside-toplevel

  def outputs(model, arrays):
    feed = arrays if len(arrays) > 1 else arrays[0]
    return [keras.ops.convert_to_numpy(o) for o in tf.nest.flatten(model(feed, training=False))]

  def largest(first, second):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(first, second))

  rng = np.random.default_rng(0)
  comparisons = []
  for kind, draw_floats in (("pixels", lambda shape: rng.uniform(0, 255, shape)),
                            ("normal", rng.standard_normal)):
    inputs, nudged = [], []
    for tensor in original.inputs:
      shape = (rows,) + tuple(d or 1 for d in tensor.shape[1:])
      if "int" in str(tensor.dtype):
        inputs.append(rng.integers(0, 2, shape).astype(tensor.dtype))
        nudged.append(inputs[-1])
      else:
        inputs.append(draw_floats(shape).astype(np.float32))
        nudged.append((inputs[-1] * (1 + 1e-6 * rng.uniform(-1, 1, shape))).astype(np.float32))
    expected = outputs(original, inputs)
    comparisons.append({
        "inputs": kind, "difference": largest(expected, outputs(rebuilt, inputs)),
        "scale": max([1.0] + [float(np.max(np.abs(e))) for e in expected]),
        "rounding": largest(expected, outputs(original, nudged)),
        "spread": float(np.mean([np.std(e, axis=0).mean() for e in expected]))})
  return comparisons
