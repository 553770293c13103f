"""Read a `.tflite` flatbuffer into plain Python: tensors, operators, execution order.

The flatbuffer is parsed with the TFLite schema that LiteRT ships
(`ai_edge_litert.schema_py_generated`), so no interpreter is needed: the cost
model (`tflite.cost`) and the TFLite Micro op check (`tflite.micro`) both start
from a `Graph`. Only the first subgraph (the model's main function) is read;
its operator list is the order the interpreters execute it in.

Example:
  graph = read("model_int8.tflite")
  print(graph.op_names())          # ['CONV_2D', 'ADD', ..., 'FULLY_CONNECTED']
  print(graph.tensors[graph.inputs[0]].shape)
"""

import dataclasses
from typing import Optional, Tuple, Union

import numpy as np
from ai_edge_litert import schema_py_generated as schema

# Enum value → name, e.g. 3 → 'CONV_2D', 9 → 'INT8'.
_OPERATOR_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_TYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT32": 4,
               "INT64": 8, "UINT64": 8, "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1,
               "BOOL": 1, "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 0.5}


@dataclasses.dataclass
class Tensor:
  """One tensor of the graph.

  Attributes:
    index: position in the subgraph's tensor list (what operators refer to).
    name: the converter's name; it carries the TF op and Keras layer, e.g.
      'model/s1b1_a_conv/Conv2D'.
    shape: static shape (the batch dimension of a Keras conversion is 1).
    dtype: schema type name, e.g. 'INT8', 'FLOAT32'.
    nbytes: bytes the tensor's data takes.
    is_constant: True for weights and other data stored in the flatbuffer.
    is_variable: True for state tensors (e.g. RNN state) that live for the whole run.
  """
  index: int
  name: str
  shape: Tuple[int, ...]
  dtype: str
  nbytes: int
  is_constant: bool
  is_variable: bool = False

  @property
  def size(self) -> int:
    """Number of elements."""
    return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclasses.dataclass
class Operator:
  """One operator, in execution order.

  Attributes:
    index: position in the execution order.
    name: builtin op name ('CONV_2D'), or the custom code for custom ops.
    inputs: tensor indices (optional inputs the model leaves out are dropped).
    outputs: tensor indices.
    options: the schema's options object (e.g. `Conv2DOptionsT`), or None.
  """
  index: int
  name: str
  inputs: Tuple[int, ...]
  outputs: Tuple[int, ...]
  options: object = None


@dataclasses.dataclass
class Graph:
  """The main subgraph of a `.tflite` model.

  Attributes:
    tensors: every tensor, indexed by `Tensor.index`.
    operators: operators in execution order.
    inputs / outputs: tensor indices of the model's inputs and outputs.
    model_bytes: size of the whole flatbuffer.
  """
  tensors: list
  operators: list
  inputs: Tuple[int, ...]
  outputs: Tuple[int, ...]
  model_bytes: int

  def op_names(self) -> list:
    """Op names in execution order (with repeats)."""
    return [op.name for op in self.operators]

  def producer(self, tensor_index: int) -> Optional[Operator]:
    """The operator that writes a tensor, or None for inputs and constants."""
    for op in self.operators:
      if tensor_index in op.outputs:
        return op
    return None


def _read_bytes(model: Union[bytes, str]) -> bytes:
  if isinstance(model, (bytes, bytearray)):
    return bytes(model)
  with open(model, "rb") as f:
    return f.read()


def read(model: Union[bytes, str]) -> Graph:
  """Parses a `.tflite` flatbuffer.

  Args:
    model: the model's bytes or a path to a `.tflite` file.

  Returns:
    A `Graph` of the first subgraph.

  Raises:
    ValueError: the bytes are not a TFLite flatbuffer.
  """
  data = _read_bytes(model)
  if len(data) < 8 or data[4:8] != b"TFL3":
    raise ValueError("Not a TFLite model (no 'TFL3' identifier): pass a .tflite file "
                     "written by the TFLite converter (tflite.convert).")
  model_t = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
  subgraph = model_t.subgraphs[0]

  def has_data(buffer_index):
    if not buffer_index:  # Buffer 0 is the empty sentinel.
      return False
    buffer = model_t.buffers[buffer_index]
    return (buffer.data is not None and len(buffer.data) > 0) or (buffer.offset or 0) > 1

  tensors = []
  for i, t in enumerate(subgraph.tensors):
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
    dtype = _TYPE_NAMES.get(t.type, str(t.type))
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    tensors.append(Tensor(index=i, name=(t.name or b"").decode(), shape=shape, dtype=dtype,
                          nbytes=int(np.ceil(size * _TYPE_BYTES.get(dtype, 1))),
                          is_constant=has_data(t.buffer), is_variable=bool(t.isVariable)))
  operators = []
  for i, op in enumerate(subgraph.operators or []):
    code = model_t.operatorCodes[op.opcodeIndex]
    # Newer schemas moved codes above 127 to `builtinCode`; older files use the deprecated field.
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = _OPERATOR_NAMES.get(builtin, str(builtin))
    if name == "CUSTOM":
      name = (code.customCode or b"CUSTOM").decode()
    operators.append(Operator(
        index=i, name=name,
        inputs=tuple(int(t) for t in (op.inputs if op.inputs is not None else ()) if t >= 0),
        outputs=tuple(int(t) for t in (op.outputs if op.outputs is not None else ())),
        options=op.builtinOptions))
  return Graph(tensors=tensors, operators=operators,
               inputs=tuple(int(t) for t in subgraph.inputs),
               outputs=tuple(int(t) for t in subgraph.outputs), model_bytes=len(data))
