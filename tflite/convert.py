"""Keras model → `.tflite` bytes with the TFLite converter, in every quantisation mode.

Modes:
  float32   no quantisation.
  float16   float16 weights, float32 compute.
  dynamic   int8 weights, activations quantised on the fly (dynamic range).
  int8      full-integer: int8 weights and activations, int8 input and output.
  uint8     as int8 but with uint8 input and output (for pipelines that feed raw bytes).
  int16x8   int16 activations, int8 weights (more accurate, fewer kernels).

Full-integer modes calibrate activation ranges on representative data, which
should come from the training set (never the test set).

The model is a tf_keras model, or a Keras 3 one (today's `tf.keras`), which converts from the
SavedModel its own `export` writes (the way Keras 3 documents).

Example:
  int8_bytes = convert(model, "int8", representative_data=train_x[:500])
"""

import contextlib
import re
import tempfile
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

from tflite import graph as tflite_graph
from tflite.errors import TfliteError

MODES = ("float32", "float16", "dynamic", "int8", "uint8", "int16x8")
FULL_INTEGER_MODES = ("int8", "uint8", "int16x8")


class ConversionError(TfliteError):
  """The converter refused or could not quantise the model; the message lists the ops and layers."""


def representative_dataset(data: np.ndarray, batch_size: int = 1):
  """A generator function of float32 batches, as `converter.representative_dataset` wants."""
  def generate():
    for i in range(0, len(data), batch_size):
      batch = np.asarray(data[i:i + batch_size])
      yield [batch if batch.dtype == np.int32 else batch.astype(np.float32)]
  return generate


def convert(model, mode: str = "float32",
            representative_data: Optional[np.ndarray] = None,
            allow_float_ops: bool = False) -> bytes:
  """Converts a Keras model to a TFLite flatbuffer.

  Args:
    model: a `tf_keras.Model` (tfmot-stripped or QAT models included), or a built Keras 3
      `keras.Model`.
    mode: one of `MODES`.
    representative_data: inputs for calibration; required by full-integer modes.
      A few hundred training examples are enough.
    allow_float_ops: full-integer modes only. The converter silently leaves ops
      that have no integer kernel in float (between DEQUANTIZE and QUANTIZE);
      by default that is an error, since TFLite Micro and integer accelerators
      need every op quantised. True keeps such mixed models (fine on LiteRT).

  Returns:
    The `.tflite` model as bytes.

  Raises:
    ConversionError: the mode is unknown, data is missing, or an op cannot be
      converted or quantised (the message names the ops and the Keras layers).
  """
  if mode not in MODES:
    raise ConversionError(f"Unknown TFLite mode {mode!r} (argument mode): choose from {MODES}.")
  if mode in FULL_INTEGER_MODES and (representative_data is None or not len(representative_data)):
    raise ConversionError(f"Mode {mode!r} needs representative_data (it is empty): pass a few "
                          "hundred training inputs to calibrate, or use mode 'dynamic' or "
                          "'float32', which need none.")
  with _converter_for(model) as converter:
    tflite_bytes = _convert(converter, model, mode, representative_data)
  if mode in FULL_INTEGER_MODES and not allow_float_ops:
    leftovers = float_operators(tflite_bytes)
    if leftovers:
      raise ConversionError(_explain_float_leftovers(model, mode, leftovers))
  return tflite_bytes


def _convert(converter: tf.lite.TFLiteConverter, model, mode: str,
             representative_data: Optional[np.ndarray]) -> bytes:
  """Sets the converter up for `mode` and converts; a refusal names the ops and layers."""
  if mode != "float32":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if mode == "float16":
    converter.target_spec.supported_types = [tf.float16]
  if mode in FULL_INTEGER_MODES:
    converter.representative_dataset = representative_dataset(representative_data)
    if mode == "int16x8":
      converter.target_spec.supported_ops = [
          tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
      converter.inference_input_type = converter.inference_output_type = tf.int16
    else:
      converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
      io_type = tf.uint8 if mode == "uint8" else tf.int8
      converter.inference_input_type = converter.inference_output_type = io_type
  try:
    return converter.convert()
  except Exception as e:  # The converter raises ConverterError and plain exceptions alike.
    raise ConversionError(_explain_refusal(model, mode, e)) from e


@contextlib.contextmanager
def _converter_for(model):
  """A converter of the model's inference call (`training=False`), for as long as it is needed.

  A tf_keras model's call is traced once: `from_keras_model` first saves the whole Keras
  model as a SavedModel, tracing every layer's call in every mode: 3.5-4.5x slower in all
  (BENCHMARKS.md §15). The one concrete function converts to the same flatbuffer (identical
  outputs); returning a dict keeps the Keras output names as the signature's output names.
  A Keras 3 model exports its inference SavedModel into a folder that lives while it converts.
  """
  if not isinstance(model, tf_keras.Model):
    with tempfile.TemporaryDirectory() as folder:
      try:
        model.export(folder, format="tf_saved_model", verbose=False)
      except Exception as e:  # pylint: disable=broad-except  (Keras raises what it meets)
        raise ConversionError(
            f"The Keras 3 model {model.name!r} could not export the SavedModel the converter "
            f"reads ({type(e).__name__}: {' '.join(str(e).split())[:400]}). Fix: call it on a "
            "batch first so that it is built, or convert it with Keras 3 yourself "
            "(model.export(folder); tf.lite.TFLiteConverter.from_saved_model(folder)).") from e
      yield tf.lite.TFLiteConverter.from_saved_model(folder)
    return
  specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
  names = model.output_names

  @tf.function
  def inference(*inputs):
    outputs = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
    if isinstance(outputs, dict):  # a model built with named outputs returns them by name
      return outputs
    return dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))

  variables = tf.Module()  # keeps the captured variables alive for the converter
  variables.tracked = list(model.variables)
  yield tf.lite.TFLiteConverter.from_concrete_functions(
      [inference.get_concrete_function(*specs)], variables)


def float_operators(tflite_bytes: bytes) -> list:
  """Ops of a converted model that compute in float: (op name, output tensor name) pairs.

  QUANTIZE and DEQUANTIZE are left out: they are the converter's wrapping of a
  float op, not the op at fault.
  """
  graph = tflite_graph.read(tflite_bytes)
  found = []
  for op in graph.operators:
    if op.name in ("QUANTIZE", "DEQUANTIZE"):
      continue
    tensors = [graph.tensors[i] for i in op.inputs + op.outputs]
    if any(t.dtype in ("FLOAT32", "FLOAT16") and not t.is_constant for t in tensors):
      found.append((op.name, graph.tensors[op.outputs[0]].name if op.outputs else ""))
  return found


def _layer_names(model) -> dict:
  """Layer name → 'ClassName(name)', nested models included (tf_keras and Keras 3 alike)."""
  layers = model._flatten_layers(include_self=False)  # pylint: disable=protected-access
  return {l.name: f"{l.__class__.__name__}({l.name})" for l in layers}


def _layer_of(scoped_name: str, layer_names: dict) -> Optional[str]:
  """The Keras layer in a TF/TFLite name such as 'model/s1b1_a_conv/Conv2D'."""
  for part in scoped_name.split("/"):
    if part in layer_names:
      return layer_names[part]
  return None


def _layers_running(model, tf_op_types) -> dict:
  """TF op type → Keras layers whose traced graph contains it (e.g. 'Erf' → ['Lambda(erf)'])."""
  specs = [tf.TensorSpec(t.shape, t.dtype) for t in model.inputs]
  call = tf.function(lambda *xs: model(xs[0] if len(xs) == 1 else list(xs), training=False))
  graph_def = call.get_concrete_function(*specs).graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  names = _layer_names(model)
  found = {}
  for node in nodes:
    layer = _layer_of(node.name, names)
    if node.op in tf_op_types and layer and layer not in found.setdefault(node.op, []):
      found[node.op].append(layer)
  return found


def _explain_refusal(model, mode, error) -> str:
  """The message for a model the converter refused: the TF ops and the layers that made them."""
  text = str(error)
  ops = set(re.findall(r"'tf\.(\w+)' op", text))  # "'tf.Erf' op is neither a custom op nor a flex op"
  for line in re.findall(r"TF Select ops: ([^\n]+)", text):
    ops.update(o.strip() for o in line.split(",") if o.strip())
  ops.update(re.findall(r"not (?:yet )?supported for op: '(\w+)'", text))
  try:
    layers = _layers_running(model, ops) if ops else {}
  except Exception:  # pylint: disable=broad-except  (the explanation must not hide the real error)
    layers = {}
  culprits = "; ".join(f"{op} (layers: {', '.join(layers.get(op, [])) or 'not identified'})"
                       for op in sorted(ops)) or "not identified, see the converter's message below"
  return (f"TFLite conversion to {mode!r} failed. Ops TFLite has no builtin kernel for: {culprits}. "
          "Fix: replace those layers with ones built from TFLite builtin ops (Conv2D, "
          "DepthwiseConv2D, Dense, Add, pooling, ReLU...); TF Select (Flex) ops do not exist on "
          f"microcontrollers.\nConverter said: {text[:2000]}")


def _explain_float_leftovers(model, mode, leftovers) -> str:
  """The message for ops the full-integer converter could not quantise and left in float."""
  names = _layer_names(model)
  by_op = {}
  for op, tensor_name in leftovers:
    layer = _layer_of(tensor_name, names) or f"not identified (tensor {tensor_name!r})"
    if layer not in by_op.setdefault(op, []):
      by_op[op].append(layer)
  culprits = "; ".join(f"{op} (layers: {', '.join(layers)})" for op, layers in sorted(by_op.items()))
  return (f"TFLite conversion to {mode!r} left ops without an integer kernel in float: {culprits}. "
          "Fix: replace those layers with quantisable ones (Conv2D, DepthwiseConv2D, Dense, Add, "
          "pooling, ReLU...), export in 'dynamic' or 'float32' mode, or pass "
          "allow_float_ops=True to keep a mixed float/integer model (runs on LiteRT; TFLite Micro "
          "and integer accelerators need every op quantised).")
