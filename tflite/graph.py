"""Read a `.tflite` flatbuffer into plain Python: tensors, operators, buffers, execution order.

The flatbuffer is parsed with the TFLite schema that LiteRT ships
(`ai_edge_litert.schema_py_generated`), so no interpreter is needed. This is
the project's only `.tflite` parser: the cost model (`tflite.cost`), the
TFLite Micro op check (`tflite.micro`), the float-op check of the converter
(`tflite.convert`) and the weight measurements (`tflite.sparsity`) all start
from a `Graph`. `read` returns the first subgraph (the model's main function),
`read_subgraphs` all of them; an operator list is the order the interpreters
execute it in.

Example:
  graph = read("model_int8.tflite")
  print(graph.op_names())          # ['CONV_2D', 'ADD', ..., 'FULLY_CONNECTED']
  print(graph.tensors[graph.inputs[0]].shape)
  kernel = graph.constant(graph.operators[0].inputs[1])   # int8 array, TFLite layout
"""

import dataclasses
import os
from typing import List, Optional, Tuple, Union

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite.errors import TfliteError

# Enum value → name, e.g. 3 → 'CONV_2D', 9 → 'INT8'.
_OPERATOR_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_TYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT32": 4,
               "INT64": 8, "UINT64": 8, "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1,
               "BOOL": 1, "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 0.5}
# Types whose stored bytes are a plain numpy array (INT4 packs two values per byte, so not it).
_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64,
                "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16,
                "INT32": np.int32, "UINT32": np.uint32, "INT64": np.int64, "UINT64": np.uint64,
                "BOOL": np.bool_}
# Every builtin op name the schema knows, e.g. 'CONV_2D', to check names users pass.
BUILTIN_OPERATORS = frozenset(_OPERATOR_NAMES.values())


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
    buffer: index of the model buffer holding its data (0: none).
    scale, zero_point: quantisation parameters, one per channel for per-channel
      quantisation, empty for float tensors.
    quantized_dimension: the axis `scale` and `zero_point` run along.
    is_sparse: stored in TFLite's sparse format (a compressed encoding, not an array).
  """
  index: int
  name: str
  shape: Tuple[int, ...]
  dtype: str
  nbytes: int
  is_constant: bool
  is_variable: bool = False
  buffer: int = 0
  scale: Tuple[float, ...] = ()
  zero_point: Tuple[int, ...] = ()
  quantized_dimension: int = 0
  is_sparse: bool = False

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
  """One subgraph of a `.tflite` model (from `read`: the main one).

  Attributes:
    tensors: every tensor, indexed by `Tensor.index`.
    operators: operators in execution order.
    inputs / outputs: tensor indices of the subgraph's inputs and outputs.
    model_bytes: size of the whole flatbuffer.
    buffers: the model's buffers as uint8 arrays (empty where a buffer holds
      no data), indexed by `Tensor.buffer`; shared by every subgraph of a model.
  """
  tensors: list
  operators: list
  inputs: Tuple[int, ...]
  outputs: Tuple[int, ...]
  model_bytes: int
  buffers: list = dataclasses.field(default_factory=list, repr=False)

  def op_names(self) -> list:
    """Op names in execution order (with repeats)."""
    return [op.name for op in self.operators]

  def producer(self, tensor_index: int) -> Optional[Operator]:
    """The operator that writes a tensor, or None for inputs and constants."""
    for op in self.operators:
      if tensor_index in op.outputs:
        return op
    return None

  def constant(self, tensor_index: int) -> Optional[np.ndarray]:
    """The values a constant tensor stores, as a read-only array of its type and shape.

    Quantised values are returned raw (no scale or zero point applied), in
    TFLite's layout (a CONV_2D kernel is [out, height, width, in]).

    Args:
      tensor_index: index into `tensors`.

    Returns:
      The array, or None for a tensor without data (activations, inputs).

    Raises:
      TfliteError: the tensor is stored in a form that is not a plain array
        (TFLite's sparse format, or a packed type such as INT4).

    Example:
      weights = graph.constant(conv.inputs[1])   # e.g. int8, shape (16, 3, 3, 8)
    """
    tensor = self.tensors[tensor_index]
    if not tensor.is_constant:
      return None
    if tensor.dtype not in _NUMPY_TYPES or tensor.is_sparse:
      form = "TFLite's sparse format" if tensor.is_sparse else f"type {tensor.dtype}"
      raise TfliteError(
          f"Tensor {tensor.name!r} (index {tensor_index}) is stored in {form}, which "
          f"tflite.graph cannot read as an array (it reads {sorted(_NUMPY_TYPES)}, dense). "
          "Fix: measure a model converted by tflite.convert, which stores dense weights.")
    values = self.buffers[tensor.buffer].view(_NUMPY_TYPES[tensor.dtype])
    return values.reshape(tensor.shape)


def read_model_bytes(model: Union[bytes, str]) -> bytes:
  """A `.tflite` model's bytes, from a path or bytes, checked to be a TFLite flatbuffer.

  Args:
    model: a path to a `.tflite` file, or the bytes.

  Returns:
    The bytes.

  Raises:
    TfliteError: naming the file, when it is missing, empty or not a TFLite
      flatbuffer (no 'TFL3' identifier: e.g. a `.keras` or `.h5` file).

  Example:
    model_bytes = read_model_bytes("runs/x/export/distill_int8.tflite")
  """
  if isinstance(model, (bytes, bytearray)):
    data, name = bytes(model), "The model bytes"
  else:
    name = f"{model!r}"
    if not os.path.isfile(model):
      raise TfliteError(f"{name} is not a file: pass the path of a .tflite model.")
    with open(model, "rb") as f:
      data = f.read()
  if not data:
    raise TfliteError(f"{name} is empty (0 bytes): convert the model again (tflite.convert) "
                      "or copy the whole file.")
  if len(data) < 8 or data[4:8] != b"TFL3":
    raise TfliteError(f"{name} is not a TFLite model (no 'TFL3' identifier in its first 8 bytes, "
                      f"{len(data)} bytes in all): pass a .tflite file written by the TFLite "
                      "converter (tflite.convert), not a Keras or other file.")
  return data


def read(model: Union[bytes, str]) -> Graph:
  """Parses a `.tflite` flatbuffer and returns its main (first) subgraph.

  Args:
    model: the model's bytes or a path to a `.tflite` file.

  Returns:
    A `Graph` of the first subgraph.

  Raises:
    TfliteError: the file is missing, empty, truncated or not a TFLite flatbuffer.

  Example:
    read("model_int8.tflite").op_names()   # ['CONV_2D', ..., 'FULLY_CONNECTED']
  """
  return read_subgraphs(model)[0]


def read_subgraphs(model: Union[bytes, str]) -> List[Graph]:
  """Parses a `.tflite` flatbuffer into one `Graph` per subgraph.

  Models with control flow (WHILE, IF) keep the branch bodies in further
  subgraphs; weights there are only seen through this function.

  Args:
    model: the model's bytes or a path to a `.tflite` file.

  Returns:
    The subgraphs in file order; the first is the model's main function.

  Raises:
    TfliteError: the file is missing, empty, truncated or not a TFLite flatbuffer.

  Example:
    weights = sum(len(g.tensors) for g in read_subgraphs("model.tflite"))
  """
  data = read_model_bytes(model)
  try:
    model_t = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    buffers = [_buffer_data(data, b) for b in (model_t.buffers or [])]
  except Exception as e:  # pylint: disable=broad-except  (flatbuffers reads past a cut file anyhow)
    where = "The model bytes" if isinstance(model, (bytes, bytearray)) else repr(model)
    raise TfliteError(f"{where} is not a complete TFLite flatbuffer ({len(data)} bytes; "
                      f"{type(e).__name__}: {e}): the file is truncated or damaged; convert "
                      "or copy it again.") from e
  if buffers:
    buffers[0] = np.zeros(0, np.uint8)  # Buffer 0 is the schema's "no data" sentinel.
  return [_subgraph(model_t, subgraph, buffers, len(data)) for subgraph in model_t.subgraphs]


def _buffer_data(data: bytes, buffer) -> np.ndarray:
  """A buffer's bytes, without copying: inline data, or the range after the flatbuffer."""
  if (buffer.offset or 0) > 1:  # Models over 2 GB keep buffers after the flatbuffer.
    return np.frombuffer(data, np.uint8, count=buffer.size, offset=buffer.offset)
  if buffer.data is not None and len(buffer.data):
    return np.asarray(buffer.data, np.uint8)
  return np.zeros(0, np.uint8)


def _tuple(values, kind) -> tuple:
  """A schema vector (numpy array, list or None) as a tuple of `kind`."""
  return tuple(kind(v) for v in values) if values is not None else ()


def _subgraph(model_t, subgraph, buffers: list, model_bytes: int) -> Graph:
  """One schema subgraph as a `Graph`."""
  tensors = []
  for i, t in enumerate(subgraph.tensors or []):
    shape = _tuple(t.shape, int)
    dtype = _TYPE_NAMES.get(t.type, str(t.type))
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    q = t.quantization
    tensors.append(Tensor(
        index=i, name=(t.name or b"").decode(), shape=shape, dtype=dtype,
        nbytes=int(np.ceil(size * _TYPE_BYTES.get(dtype, 1))),
        is_constant=bool(len(buffers[t.buffer])) if t.buffer < len(buffers) else False,
        is_variable=bool(t.isVariable), buffer=int(t.buffer),
        scale=_tuple(q.scale, float) if q else (), zero_point=_tuple(q.zeroPoint, int) if q else (),
        quantized_dimension=int(q.quantizedDimension) if q else 0,
        is_sparse=t.sparsity is not None))
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
        outputs=_tuple(op.outputs, int), options=op.builtinOptions))
  return Graph(tensors=tensors, operators=operators, inputs=_tuple(subgraph.inputs, int),
               outputs=_tuple(subgraph.outputs, int), model_bytes=model_bytes, buffers=buffers)
