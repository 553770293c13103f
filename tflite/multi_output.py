"""`.tflite` models with several named outputs (e.g. a multi-task student) on LiteRT and TFLM.

The converter names a model's outputs after the Keras output layers in the model's
signature ('task_a', 'task_b'), but the output *tensors* are called
'StatefulPartitionedCall:0', ':1', ... and their order in the subgraph is the
converter's choice. Everything here goes by the signature's names: each name is
mapped to its tensor index, and that index to its position among the subgraph's
outputs, which is the index TFLite Micro's `get_output(i)` takes.

Example:
  names = output_names(model_bytes)                      # ['task_a', 'task_b']
  scores = litert_predict(model_bytes, test_x)           # {'task_a': [N, 10], 'task_b': [N, 4]}
  on_micro = micro_predict(model_bytes, test_x[:100])    # the same, from TFLite Micro
  accuracy(scores, {"task_a": y_a, "task_b": y_b})       # {'task_a': 0.81, 'task_b': 0.90}
"""

from typing import Dict, List, Optional, Union

import numpy as np
from tflite_micro.python.tflite_micro import runtime

from tflite import graph
from tflite import interpreter as litert
from tflite import micro
from tflite.errors import TfliteError


def output_details(model) -> Dict[str, dict]:
  """Signature output name → LiteRT output detail (index, shape, dtype, quantization) and
  'position', its place among the subgraph's outputs (TFLite Micro's output index).

  Args:
    model: `.tflite` bytes, a path, or an allocated LiteRT interpreter.

  Raises:
    TfliteError: the model has no signature (a `.tflite` file not written by
      `tflite.convert.convert` or a converter's SavedModel path), so its outputs have no names.
  """
  interp = model if isinstance(model, litert.Interpreter) else litert.load(model)
  interp.allocate_tensors()
  signatures = interp.get_signature_list()
  if len(signatures) != 1:
    raise TfliteError(f"The model has {len(signatures)} signatures ({sorted(signatures)}), so its "
                      "outputs cannot be told apart by name: convert it with "
                      "tflite.convert.convert (one 'serving_default' signature).")
  key = next(iter(signatures))
  by_name = interp.get_signature_runner(key).get_output_details()
  order = [d["index"] for d in interp.get_output_details()]
  return {name: {**detail, "position": order.index(detail["index"])}
          for name, detail in by_name.items()}


def output_names(model) -> List[str]:
  """The model's output names, sorted (the signature's names, not the tensors')."""
  return sorted(output_details(model))


def litert_predict(model: Union[bytes, str], x: np.ndarray, batch_size: int = 256,
                   dequantize: bool = True) -> Dict[str, np.ndarray]:
  """Every named output of the model for every row of `x`, on LiteRT.

  Args:
    model: `.tflite` bytes or a path.
    x: inputs in the Keras model's units (pixels 0..255).
    batch_size: rows per invoke.
    dequantize: float outputs (True) or the raw integer tensors (False).

  Returns:
    name → outputs, one row per input.
  """
  interp = litert.load(model)
  outputs: Dict[str, list] = {}
  current = None
  for start in range(0, len(x), batch_size):
    batch = np.asarray(x[start:start + batch_size])
    if len(batch) != current:
      detail = interp.get_input_details()[0]
      interp.resize_tensor_input(detail["index"], [len(batch), *x.shape[1:]])
      interp.allocate_tensors()
      current, detail = len(batch), interp.get_input_details()[0]
      named = output_details(interp)
    interp.set_tensor(detail["index"], litert.quantize_input(batch, detail))
    interp.invoke()
    for name, out in named.items():
      y = interp.get_tensor(out["index"])
      outputs.setdefault(name, []).append(litert.dequantize_output(y, out) if dequantize
                                          else y.copy())
  return {name: np.concatenate(parts) for name, parts in outputs.items()}


def micro_predict(model_bytes: bytes, x: np.ndarray, arena_size: Optional[int] = None,
                  dequantize: bool = True) -> Dict[str, np.ndarray]:
  """Every named output for every row of `x`, on TFLite Micro (one row per invoke).

  Args:
    model_bytes: the `.tflite` model (batch 1 as converted).
    x: inputs in the Keras model's units, quantised with the model's input parameters.
    arena_size: tensor arena bytes (default: `micro.find_arena_size`).
    dequantize: float outputs (True) or the raw integer tensors (False).

  Returns:
    name → outputs, one row per input.
  """
  model_bytes = graph.read_model_bytes(model_bytes)
  arena_size = arena_size or micro.find_arena_size(model_bytes).size
  named = output_details(model_bytes)
  in_detail = litert.load(model_bytes).get_input_details()[0]
  interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
  outputs = {name: [] for name in named}
  for row in np.asarray(x):
    interp.set_input(litert.quantize_input(row[None], in_detail), 0)
    interp.invoke()
    for name, out in named.items():
      y = interp.get_output(out["position"])
      outputs[name].append(litert.dequantize_output(y, out) if dequantize else y.copy())
  return {name: np.concatenate(parts) for name, parts in outputs.items()}


def accuracy(scores: Dict[str, np.ndarray], labels: Dict[str, np.ndarray]) -> Dict[str, float]:
  """Top-1 accuracy of each named output against its labels.

  Raises:
    TfliteError: a name of `labels` is not an output.
  """
  missing = sorted(set(labels) - set(scores))
  if missing:
    raise TfliteError(f"No output named {missing}: the model's outputs are {sorted(scores)}; "
                      "name the Keras output layers as the labels are named.")
  return {name: float(np.mean(np.argmax(scores[name], axis=-1) == np.asarray(y)))
          for name, y in labels.items()}


def parity(model_bytes: bytes, x: np.ndarray, arena_size: Optional[int] = None) -> Dict[str, dict]:
  """TFLite Micro against LiteRT's reference kernels on the same inputs, output by output.

  Returns:
    name → {"samples", "identical" (rows with bit-identical raw outputs),
    "max_abs_diff" (LSB), "argmax_agreement"}.
  """
  on_micro = micro_predict(model_bytes, x, arena_size, dequantize=False)
  interp = litert.load(model_bytes, reference_kernels=True)
  named = output_details(interp)
  in_detail = interp.get_input_details()[0]
  result = {}
  expected = {name: [] for name in named}
  for row in np.asarray(x):
    interp.set_tensor(in_detail["index"], litert.quantize_input(row[None], in_detail))
    interp.invoke()
    for name, out in named.items():
      expected[name].append(interp.get_tensor(out["index"]).copy())
  for name in named:
    want, got = np.concatenate(expected[name]), on_micro[name]
    diff = np.abs(want.astype(np.float64) - got.astype(np.float64))
    result[name] = {"samples": len(x), "identical": int(np.sum(np.all(diff == 0, axis=-1))),
                    "max_abs_diff": float(diff.max()) if diff.size else 0.0,
                    "argmax_agreement": float(np.mean(np.argmax(want, -1) == np.argmax(got, -1)))}
  return result
