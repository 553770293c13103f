"""Model cost read from the `.tflite` graph: parameters, MACs, peak activation memory.

All three come from the flatbuffer alone (`tflite.graph`), per invocation of the
model as stored (batch 1 for Keras conversions).

Parameters: the elements of the constant tensors that carry learned values:
every float or 8/16-bit constant, plus the int32/int64 bias inputs of conv,
depthwise, dense and transpose-conv ops. Shape and index constants (the target
of a RESHAPE, PAD's paddings) are not parameters. BatchNormalization is folded
into the convolutions by the converter, so this is lower than Keras'
`count_params()`; each constant counts once even if several ops use it (the
converter shares equal constants and drops all-zero biases, so an untrained
model can count fewer than its layers hold).

MACs (multiply-accumulates), for the ops that do almost all the arithmetic:
  CONV_2D            out_h * out_w * out_c * k_h * k_w * in_c_per_group
  DEPTHWISE_CONV_2D  out_h * out_w * out_c * k_h * k_w
  FULLY_CONNECTED    rows * units * inputs
  TRANSPOSE_CONV     in_h * in_w * in_c * k_h * k_w * out_c
  BATCH_MATMUL       output elements * contracted dimension
Element-wise ops, pooling and activations are not MACs and are not counted.

Peak activation memory, lower bound. The interpreter runs the operators in the
flatbuffer's order. A non-constant tensor is live from the op that produces it
(model inputs: from the start) to the last op that reads it (model outputs:
to the end; variable tensors: always). While op i runs, its inputs and outputs
must all exist, as must every tensor produced before i and read at or after i.
So the memory in use during op i is at least

  live(i) = sum of bytes of the tensors produced before op i and read by op i
            or later, plus the bytes of op i's outputs,

and no memory plan for this execution order can use less than max_i live(i)
(assuming, as TFLM's planner does, that an op's outputs never overwrite its
inputs). Planner alignment, kernel scratch buffers and per-op persistent data
(TFLM's arena "tail") come on top, which is why a real arena is a little larger.

Example:
  cost = model_cost(open("model_int8.tflite", "rb").read())
  print(cost["parameters"], cost["macs"], cost["peak_activation_bytes"])
"""

from typing import Union

import numpy as np

from tflite import graph as tflite_graph

_WEIGHT_OPS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}
_SHAPE_TYPES = ("INT32", "INT64")


def _constant_weights(graph) -> set:
  """Tensors of the graph that hold learned values (see the module docstring)."""
  biases = set()
  for op in graph.operators:
    position = _WEIGHT_OPS.get(op.name)
    if position is not None and len(op.inputs) > position:
      biases.add(op.inputs[position])
  return {t.index for t in graph.tensors
          if t.is_constant and (t.dtype not in _SHAPE_TYPES or t.index in biases)}


def count_parameters(graph) -> int:
  """Elements of the learned constants (weights, biases, folded normalisation)."""
  return sum(graph.tensors[i].size for i in _constant_weights(graph))


def op_macs(graph, op) -> int:
  """Multiply-accumulates of one operator (0 for ops that are not conv/dense/matmul)."""
  shape = lambda i: graph.tensors[i].shape
  if op.name == "CONV_2D":
    out, weights = shape(op.outputs[0]), shape(op.inputs[1])     # weights [out_c, kh, kw, in_c]
    return int(np.prod(out, dtype=np.int64)) * int(np.prod(weights[1:], dtype=np.int64))
  if op.name == "DEPTHWISE_CONV_2D":
    out, weights = shape(op.outputs[0]), shape(op.inputs[1])     # weights [1, kh, kw, out_c]
    return int(np.prod(out, dtype=np.int64)) * weights[1] * weights[2]
  if op.name == "FULLY_CONNECTED":
    out, weights = shape(op.outputs[0]), shape(op.inputs[1])     # weights [units, inputs]
    return int(np.prod(out, dtype=np.int64)) * weights[1]
  if op.name == "TRANSPOSE_CONV":
    weights, data = shape(op.inputs[1]), shape(op.inputs[2])    # weights [out_c, kh, kw, in_c]
    return int(np.prod(data, dtype=np.int64)) * weights[0] * weights[1] * weights[2]
  if op.name == "BATCH_MATMUL":
    out, lhs = shape(op.outputs[0]), shape(op.inputs[0])
    adj_x = bool(getattr(op.options, "adjX", False))
    contracted = lhs[-2] if adj_x else lhs[-1]
    return int(np.prod(out, dtype=np.int64)) * contracted
  return 0


def count_macs(graph) -> dict:
  """MACs per op name, e.g. {'CONV_2D': 12_000_000, 'FULLY_CONNECTED': 640}."""
  totals = {}
  for op in graph.operators:
    macs = op_macs(graph, op)
    if macs:
      totals[op.name] = totals.get(op.name, 0) + macs
  return totals


def _activation_tensors(graph) -> set:
  """Non-constant tensors; dequantised weights (DEQUANTIZE of a constant, as in float16 models)
  count as weights, since interpreters compute them once at load time."""
  weight_like = {t.index for t in graph.tensors if t.is_constant}
  for op in graph.operators:
    if op.name == "DEQUANTIZE" and all(i in weight_like for i in op.inputs):
      weight_like.update(op.outputs)
  return {t.index for t in graph.tensors if t.index not in weight_like}


def live_bytes_per_op(graph) -> list:
  """live(i) of the module docstring for every operator i, in execution order."""
  activations = _activation_tensors(graph)
  last = len(graph.operators) - 1
  produced = {i: -1 for i in graph.inputs if i in activations}   # model inputs exist before op 0
  last_read = {}
  for op in graph.operators:
    for i in op.outputs:
      if i in activations:
        produced.setdefault(i, op.index)
    for i in op.inputs:
      if i in activations:
        last_read[i] = op.index
  for i in graph.outputs:
    last_read[i] = last
  for t in graph.tensors:
    if t.is_variable and t.index in activations:
      produced[t.index], last_read[t.index] = -1, last
  live = []
  for op in graph.operators:
    earlier = sum(graph.tensors[i].nbytes for i, start in produced.items()
                  if start < op.index and last_read.get(i, start) >= op.index)
    outputs = sum(graph.tensors[i].nbytes for i in set(op.outputs)
                  if i in activations and produced.get(i) == op.index)
    live.append(earlier + outputs)
  return live


def peak_activation_bytes(graph) -> int:
  """Lower bound of the activation memory any execution in this order needs (max of live(i))."""
  live = live_bytes_per_op(graph)
  return max(live) if live else sum(graph.tensors[i].nbytes for i in graph.inputs)


def model_cost(model: Union[bytes, str]) -> dict:
  """Parameters, MACs and the peak-activation lower bound of a `.tflite` model.

  Args:
    model: `.tflite` bytes or path.

  Returns:
    {"parameters", "macs", "macs_by_op", "peak_activation_bytes",
     "peak_op" (name and index of the op where the peak happens), "model_bytes"}.
  """
  graph = tflite_graph.read(model)
  live = live_bytes_per_op(graph)
  peak_index = int(np.argmax(live)) if live else None
  macs_by_op = count_macs(graph)
  return {"parameters": count_parameters(graph), "macs": int(sum(macs_by_op.values())),
          "macs_by_op": macs_by_op, "peak_activation_bytes": peak_activation_bytes(graph),
          "peak_op": (f"{graph.operators[peak_index].name} #{peak_index}"
                      if peak_index is not None else None),
          "model_bytes": graph.model_bytes}
