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

Example:
  int8_bytes = convert(model, "int8", representative_data=train_x[:500])
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

MODES = ("float32", "float16", "dynamic", "int8", "uint8", "int16x8")
FULL_INTEGER_MODES = ("int8", "uint8", "int16x8")


class ConversionError(ValueError):
  """The converter refused the model; the message lists the ops or layers at fault."""


def representative_dataset(data: np.ndarray, batch_size: int = 1):
  """A generator function of float32 batches, as `converter.representative_dataset` wants."""
  def generate():
    for i in range(0, len(data), batch_size):
      batch = np.asarray(data[i:i + batch_size])
      yield [batch if batch.dtype == np.int32 else batch.astype(np.float32)]
  return generate


def convert(model: tf_keras.Model, mode: str = "float32",
            representative_data: Optional[np.ndarray] = None) -> bytes:
  """Converts a Keras model to a TFLite flatbuffer.

  Args:
    model: a `tf_keras.Model` (tfmot-stripped or QAT models included).
    mode: one of `MODES`.
    representative_data: inputs for calibration; required by full-integer modes.
      A few hundred training examples are enough.

  Returns:
    The `.tflite` model as bytes.

  Raises:
    ConversionError: the mode is unknown, data is missing, or an op cannot be
      converted or quantised (the message names them).
  """
  if mode not in MODES:
    raise ConversionError(f"Unknown TFLite mode {mode!r}: choose from {MODES}.")
  if mode in FULL_INTEGER_MODES and (representative_data is None or not len(representative_data)):
    raise ConversionError(f"Mode {mode!r} needs representative_data: pass a few hundred training inputs.")
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
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
    raise ConversionError(_explain_failure(model, mode, e)) from e


def _explain_failure(model, mode, error) -> str:
  """Names the ops the converter rejected and the Keras layers that made them."""
  import re  # pylint: disable=import-outside-toplevel
  text = str(error)
  ops = sorted(set(re.findall(r"'(?:tf|tfl)\.(\w+)'", text)))
  layers = sorted({l.__class__.__name__ + f"({l.name})" for l in model.layers
                   if any(op.lower() in l.__class__.__name__.lower() for op in ops)})
  hint = ("use layers with int8 kernels (Conv2D, DepthwiseConv2D, Dense, Add, pooling, ReLU) "
          "or export in 'float32'/'dynamic' mode")
  return (f"TFLite conversion to {mode!r} failed. Ops at fault: {ops or 'see below'}; "
          f"layers: {layers or 'not identified'}. Fix: {hint}.\nConverter said: {text[:2000]}")
