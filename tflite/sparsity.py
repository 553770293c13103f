"""Weights as a `.tflite` stores them: kernels, share of zeros, m:n pattern, gzip size.

Pruning is judged in the exported file, after conversion (BatchNorm folded,
weights rounded to int8), not in the Keras model: that is what ships. The
kernels are read with `tflite.graph`, the project's one flatbuffer reader.

Example:
  tflite_sparsity("runs/x/export/prune_int8.tflite")["sparsity"]   # e.g. 0.750
  tflite_sparsity(int8_bytes)["m_by_n_2_4"]                         # 1.0 after 2:4 pruning
  gzip_bytes(int8_bytes)                                            # what the zeros save
"""

import dataclasses
import gzip
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from tflite import graph as tflite_graph
from tflite.errors import TfliteError

# TFLite ops whose weights (input 1) come from layers tfmot prunes: Conv2D, Dense, ...
PRUNABLE_OPS = ("CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")
# Ops with a weight tensor at input 1: the prunable ones and depthwise convolutions.
WEIGHT_OPS = PRUNABLE_OPS + ("DEPTHWISE_CONV_2D",)


@dataclasses.dataclass
class Kernel:
  """The weights of one op in a `.tflite`, as stored (TFLite layout).

  Attributes:
    name: tensor name.
    op: builtin op that reads it, e.g. "CONV_2D".
    values: stored values minus their zero point, so 0 means a real zero weight.
  """
  name: str
  op: str
  values: np.ndarray


def _stored_weights(graph: tflite_graph.Graph, tensor_index: int) -> Optional[np.ndarray]:
  """A constant's values with the zero point removed; None for tensors without data."""
  values = graph.constant(tensor_index)
  zero_point = graph.tensors[tensor_index].zero_point
  if values is None or not any(zero_point):
    return values
  shape = [1] * values.ndim
  if len(zero_point) > 1:  # Per-channel: one zero point along the quantised axis.
    shape[graph.tensors[tensor_index].quantized_dimension] = -1
  return values.astype(np.int32) - np.asarray(zero_point, np.int32).reshape(shape)


def tflite_kernels(model_bytes: Union[bytes, str], ops: Sequence[str] = WEIGHT_OPS) -> List[Kernel]:
  """The weight tensors (input 1) of the given ops, in every subgraph.

  Float16 weights reached through a DEQUANTIZE op are followed back to their constant.

  Args:
    model_bytes: a `.tflite` model, or its path.
    ops: builtin op names whose weights to return, e.g. ("CONV_2D",).

  Returns:
    One `Kernel` per op, in graph order.

  Raises:
    TfliteError: an op name the TFLite schema does not have, or weights stored
      in a form that is not an array (see `tflite.graph.Graph.constant`).

  Example:
    [k.values.shape for k in tflite_kernels("m_int8.tflite", ("CONV_2D",))]  # [(8, 3, 3, 3), ...]
  """
  unknown = sorted(set(ops) - tflite_graph.BUILTIN_OPERATORS)
  if unknown:
    raise TfliteError(f"Unknown TFLite ops {unknown} in ops=: use builtin names such as "
                      "'CONV_2D' or 'FULLY_CONNECTED' (see tflite.graph.BUILTIN_OPERATORS).")
  kernels = []
  for graph in tflite_graph.read_subgraphs(model_bytes):
    producers = {out: op for op in graph.operators for out in op.outputs}
    for op in graph.operators:
      if op.name not in ops or len(op.inputs) < 2:
        continue
      index = op.inputs[1]
      while (not graph.tensors[index].is_constant and index in producers
             and producers[index].name == "DEQUANTIZE"):
        index = producers[index].inputs[0]
      values = _stored_weights(graph, index)
      if values is not None:
        kernels.append(Kernel(graph.tensors[index].name, op.name, values))
  return kernels


def _m_by_n_groups(values: np.ndarray, m: int, n: int) -> Tuple[int, int]:
  """(groups with at least m zeros, groups) along the last axis, padded with zeros to n."""
  rows = values.reshape(-1, values.shape[-1]) == 0
  rows = np.pad(rows, [(0, 0), (0, (-rows.shape[1]) % n)], constant_values=True)
  zeros_per_group = rows.reshape(rows.shape[0], -1, n).sum(axis=-1)
  return int((zeros_per_group >= m).sum()), int(zeros_per_group.size)


def m_by_n_fraction(values: np.ndarray, m: int = 2, n: int = 4) -> float:
  """Share of the groups of `n` consecutive last-axis values holding at least `m` zeros.

  The last axis is padded with zeros to a multiple of `n`, as tfmot does when it
  makes the mask, so a 3-channel kernel's single group needs one real zero.
  1.0 means the whole tensor has the m:n pattern.

  Args:
    values: a kernel in TFLite layout (input channels last), e.g. `Kernel.values`.
    m, n: at least `m` zeros in every `n` values.

  Returns:
    The share of groups that have the pattern, in [0, 1].

  Example:
    m_by_n_fraction(np.array([[0, 0, 1, 2, 0, 3, 4, 5]]))  # 0.5: the second group has one zero
  """
  ok, groups = _m_by_n_groups(values, m, n)
  return ok / groups


def tflite_sparsity(model_bytes: Union[bytes, str], ops: Sequence[str] = PRUNABLE_OPS) -> dict:
  """Share of zero weights in the kernels a `.tflite` stores, overall and per tensor.

  Counted in the file, after conversion (BatchNorm folding, int8 rounding), over the
  weights of the op kinds tfmot prunes (Conv2D, Dense, ...; DepthwiseConv2D is not pruned
  and not counted). Int8 rounding can turn tiny weights into zeros, so a dense model
  shows a little sparsity too.

  Args:
    model_bytes: a `.tflite` model, or its path.
    ops: builtin op names whose weights count.

  Returns:
    {"sparsity": zeros / weights, "zeros": int, "weights": int, "m_by_n_2_4": share of
    groups of 4 input-channel weights with >= 2 zeros, "tensors": [{name, op, shape, sparsity}]}.

  Example:
    tflite_sparsity("runs/x/export/prune_int8.tflite")["sparsity"]  # e.g. 0.750
  """
  kernels = tflite_kernels(model_bytes, ops)
  zeros = sum(int((k.values == 0).sum()) for k in kernels)
  weights = sum(k.values.size for k in kernels)
  ok_groups, groups = np.sum([_m_by_n_groups(k.values, 2, 4) for k in kernels] or [(0, 0)], axis=0)
  return {
      "sparsity": zeros / weights if weights else 0.0,
      "zeros": zeros,
      "weights": weights,
      "m_by_n_2_4": float(ok_groups / groups) if groups else 0.0,
      "tensors": [{"name": k.name, "op": k.op, "shape": list(k.values.shape),
                   "sparsity": float(np.mean(k.values == 0))} for k in kernels],
  }


def gzip_bytes(data: bytes) -> int:
  """Size of `data` after gzip at level 9: what sparsity saves in storage and download.

  Args:
    data: e.g. a `.tflite` model's bytes.

  Returns:
    The compressed size in bytes (deterministic: no timestamp in the header).

  Example:
    gzip_bytes(pruned_int8) < gzip_bytes(dense_int8)   # zeros compress
  """
  return len(gzip.compress(data, compresslevel=9, mtime=0))
