"""TFLite Micro on the host: op support, smallest tensor arena, parity with LiteRT, flash.

Everything runs the real TFLM C++ interpreter through the `tflite-micro`
Python package (`tflite_micro.python.tflite_micro.runtime`), with its
reference kernels, so what passes here is what a microcontroller build with the
same TFLM version will accept.

- Op support: the model's op codes (read from the flatbuffer, `tflite.graph`)
  are compared with the builtin ops TFLM registers, then an interpreter is
  built and invoked; TFLM's own complaints ("Didn't find op for builtin opcode
  'TILE'", a kernel that rejects a dtype in Prepare) are parsed from its log.
- Arena: the tensor arena holds every activation (planned by TFLM's greedy
  memory planner, the "head") and per-op persistent data (quantisation
  multipliers, tensor structs: the "tail"). `find_arena_size` finds the
  smallest size for which building the interpreter and one invoke succeed:
  TFLM's own allocation record from a run with a generous arena, confirmed by
  two probes (that size runs and size - granularity does not), or, where the
  record is off, by doubling then bisecting to `granularity` bytes.
- Parity: the same quantised inputs go through TFLM and LiteRT; raw integer
  outputs are compared in LSB (units of the output scale). TFLM's kernels
  and LiteRT's reference kernels compute the same integer arithmetic almost
  everywhere (on the trained CIFAR-10 ResNet-8, every layer is bit-identical
  except the final FULLY_CONNECTED, 1 LSB apart on 3 of 100 images); LiteRT's
  default XNNPACK kernels round more requantisations differently (see `parity`).
- Crashes: this TFLM build can segfault (rather than fail) on some arenas that
  are too small, so every arena probe runs in a forked child process.
- Flash: the `.tflite` flatbuffer is linked into flash as is, so the model's
  flash cost is its byte size. TFLM's code (kernels, interpreter; tens of KB)
  and the application come on top.

Example:
  support = check_ops(model_bytes)
  arena = find_arena_size(model_bytes)
  agreement = parity(model_bytes, test_x[:100], arena.size)
"""

import contextlib
import dataclasses
import faulthandler
import os
import re
import sys
import tempfile
from typing import Optional, Sequence

import numpy as np
from tflite_micro.python.tflite_micro import runtime

from tflite import graph as tflite_graph
from tflite import interpreter as litert
from tflite.errors import TfliteError

# Builtin ops the TFLM Python interpreter registers (its PythonOpsResolver), as
# exported by the tflite-micro wheel pinned in requirements.txt. Used for the
# static check; the interpreter run below is the final word.
TFLM_BUILTIN_OPS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE
DEPTHWISE_CONV_2D DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS
FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH
IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOG_SOFTMAX LOGICAL_AND LOGICAL_NOT
LOGICAL_OR LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2
PRELU QUANTIZE READ_VARIABLE REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR
RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND
SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF
TANH TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
TFLite_Detection_PostProcess
""".split())

# Big enough for the activations of any model this project makes: the op check
# runs with it, and the arena search reads TFLM's allocation record of such a run.
_GENEROUS_ARENA = 64 << 20


class MicroError(TfliteError):
  """A model TFLite Micro cannot run; the message names the ops or the problem."""


@dataclasses.dataclass
class OpSupport:
  """Whether TFLM can run a model.

  Attributes:
    ops: the distinct ops the model uses, sorted.
    unsupported: ops TFLM lacks or rejects, each with the reason.
    runs: True if the TFLM interpreter was built and invoked successfully.
    log: what TFLM printed when it failed ('' when it ran).
  """
  ops: list
  unsupported: list
  runs: bool
  log: str = ""


@dataclasses.dataclass
class Arena:
  """The smallest tensor arena that runs a model.

  Attributes:
    size: bytes; TFLM builds and invokes with it (confirmed by a final run).
    smaller_fails: True: size - granularity was tried and TFLM refused it.
    granularity: search resolution in bytes (TFLM aligns buffers to 16).
    head: bytes of the planned activation buffers (TFLM's "head").
    tail: bytes of persistent data (TFLM's "tail": tensor structs, op data).
  """
  size: int
  smaller_fails: bool
  granularity: int
  head: Optional[int] = None
  tail: Optional[int] = None


@contextlib.contextmanager
def _captured_native_stderr(log: list):
  """Redirects file descriptor 2 (where TFLM's C++ code prints) into `log`."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      log.append(capture.read().decode(errors="replace"))


def _zero_inputs(graph) -> list:
  """One all-zero input per model input, in the tensor's dtype (what the arena search feeds)."""
  return [np.zeros(graph.tensors[i].shape, _NUMPY_TYPES.get(graph.tensors[i].dtype, np.float32))
          for i in graph.inputs]


_NUMPY_TYPES = {"FLOAT32": np.float32, "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16,
                "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_, "FLOAT16": np.float16}


def run_once(model_bytes: bytes, arena_size: int, inputs: Sequence[np.ndarray],
             log: Optional[list] = None):
  """Builds a TFLM interpreter with `arena_size` bytes and invokes it on `inputs`.

  Args:
    model_bytes: the `.tflite` model.
    arena_size: tensor arena bytes.
    inputs: one array per model input, already in the input tensor's dtype
      (quantised), with the batch dimension.
    log: if given, TFLM's printed messages are appended to it.

  Returns:
    The invoked interpreter (read results with `get_output(i)`).

  Raises:
    RuntimeError: TFLM could not allocate or invoke (its reason is in `log`).
  """
  messages = [] if log is None else log
  with _captured_native_stderr(messages):
    interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
    for i, x in enumerate(inputs):
      interpreter.set_input(x, i)
    interpreter.invoke()
  return interpreter


def runs_with_arena(model_bytes: bytes, arena_size: int,
                    inputs: Optional[Sequence[np.ndarray]] = None) -> bool:
  """True if TFLM builds the model with `arena_size` bytes of arena and invokes it.

  The attempt runs in a forked child process: with some too-small arenas TFLM
  does not fail cleanly but crashes (an unchecked failed tail allocation in
  Prepare: "available 4294967284"), which must count as "does not fit"
  instead of killing the caller. Where fork does not exist, it runs in-process.

  Args:
    model_bytes: the `.tflite` model.
    arena_size: tensor arena bytes.
    inputs: quantised inputs (default zeros).
  """
  inputs = list(inputs) if inputs is not None else _zero_inputs(tflite_graph.read(model_bytes))
  if not hasattr(os, "fork"):
    try:
      run_once(model_bytes, arena_size, inputs)
      return True
    except RuntimeError:
      return False
  sys.stdout.flush()
  sys.stderr.flush()
  pid = os.fork()
  if pid == 0:  # The child: report by exit code, never return into the caller's code.
    code = 2
    try:
      # The expected crash must not print a "Fatal Python error" report (pytest and
      # `python -X faulthandler` enable one on a copy of stderr that the dup2 misses).
      faulthandler.disable()
      devnull = os.open(os.devnull, os.O_WRONLY)
      os.dup2(devnull, 2)
      run_once(model_bytes, arena_size, inputs)
      code = 0
    except RuntimeError:
      code = 1
    finally:
      os._exit(code)  # pylint: disable=protected-access
  _, status = os.waitpid(pid, 0)
  return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def check_ops(model_bytes: bytes) -> OpSupport:
  """Lists the ops of a model that TFLite Micro cannot run.

  Args:
    model_bytes: the `.tflite` model.

  Returns:
    An `OpSupport`: the static check against `TFLM_BUILTIN_OPS` merged with
    what the TFLM interpreter said when built and invoked on zeros.
  """
  graph = tflite_graph.read(model_bytes)
  ops = sorted(set(graph.op_names()))
  unsupported = {op: "not in TFLM's op resolver" for op in ops if op not in TFLM_BUILTIN_OPS}
  log = []
  try:
    run_once(model_bytes, _GENEROUS_ARENA, _zero_inputs(graph), log)
    return OpSupport(ops=ops, unsupported=sorted(f"{op} ({why})" for op, why in unsupported.items()),
                     runs=True)
  except RuntimeError as e:
    text = "".join(log) + str(e)
  for op in re.findall(r"Didn't find op for builtin opcode '(\w+)'", text):
    unsupported[op] = "not in TFLM's op resolver"
  for op in re.findall(r"Failed to get registration from op code (\w+)", text):
    unsupported.setdefault(op, "not in TFLM's op resolver")
  # A kernel that exists but rejects this model's types or shapes fails in Prepare.
  lines = text.splitlines()
  for i, line in enumerate(lines):
    match = re.search(r"Node (\w+) \(number (\d+)\w*\) failed to (prepare|invoke)", line)
    if match:
      reason = next((l.strip() for l in reversed(lines[:i]) if l.strip()), "")
      unsupported[match.group(1)] = (f"op #{match.group(2)} failed to {match.group(3)}"
                                     + (f": {reason}" if reason else ""))
  if not unsupported:
    unsupported["(unknown)"] = f"TFLM failed: {text.strip()[:500]}"
  return OpSupport(ops=ops, unsupported=sorted(f"{op} ({why})" for op, why in unsupported.items()),
                   runs=False, log=text)


def _parse_allocations(text: str) -> dict:
  """{'total', 'head', 'tail'} bytes from `print_allocations()` output."""
  found = re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)
  return {kind: int(value) for kind, value in found}


def _allocations(model_bytes: bytes, arena_size: int, inputs: Sequence[np.ndarray]) -> dict:
  """TFLM's allocation record ({'total', 'head', 'tail'} bytes) of one run with `arena_size`."""
  interpreter = run_once(model_bytes, arena_size, inputs)
  log = []
  with _captured_native_stderr(log):
    interpreter.print_allocations()
  return _parse_allocations("".join(log))


def find_arena_size(model_bytes: bytes, inputs: Optional[Sequence[np.ndarray]] = None,
                    granularity: int = 16, max_size: int = 1 << 30) -> Arena:
  """Smallest tensor arena with which TFLM builds the model and invokes it.

  Starts from TFLM's allocation record of a run with a generous arena and
  confirms it with two probes: that size runs and size - granularity does
  not. Where the record is off, it doubles from 1 KiB until a size works and
  bisects down to `granularity` bytes instead. A final run at the result reads
  TFLM's allocation record. Each probe runs in a child process
  (`runs_with_arena`), since TFLM can crash on an arena that is too small.

  Args:
    model_bytes: the `.tflite` model.
    inputs: quantised inputs for the runs (default zeros; the arena does not
      depend on the values).
    granularity: resolution of the search in bytes.
    max_size: give up above this size.

  Returns:
    An `Arena`. On a device, align the arena to 16 bytes (`alignas(16)`), as
    the host run does.

  Raises:
    MicroError: TFLM cannot run the model (unsupported ops are listed), or it
      needs more than `max_size` bytes.
  """
  graph = tflite_graph.read(model_bytes)
  inputs = list(inputs) if inputs is not None else _zero_inputs(graph)

  def works(size):
    return runs_with_arena(model_bytes, size, inputs)

  support = check_ops(model_bytes)
  if not support.runs:
    raise MicroError(f"TFLite Micro cannot run this model: {'; '.join(support.unsupported)}. "
                     "Fix: convert in a full-integer mode with layers TFLM supports "
                     "(see tflite.micro.TFLM_BUILTIN_OPS).")
  too_big = MicroError(f"TFLite Micro needs more than {max_size} bytes of arena for this model "
                       "(argument max_size): shrink the model's activations (fewer channels, "
                       "lower resolution), or raise max_size if the target has that much RAM.")
  # The record's total was the smallest working size for all 40 candidates of the search space
  # tried (BENCHMARKS §22): two probes instead of the 14-22 of a search from 1 KiB.
  total = _allocations(model_bytes, _GENEROUS_ARENA, inputs).get("total", 0)
  guess = -(-total // granularity) * granularity
  if guess > max_size:
    if not works(max_size):
      raise too_big
    failing, working = 0, max_size
  elif guess > granularity and works(guess):
    smaller_works = works(guess - granularity)
    failing, working = (0, guess - granularity) if smaller_works else (guess - granularity, guess)
  else:
    failing, working = 0, 1024
    while not works(working):
      failing, working = working, working * 2
      if working > max_size:
        raise too_big
  while working - failing > granularity:
    middle = (failing + working) // 2 // granularity * granularity
    if middle <= failing:
      break
    if works(middle):
      working = middle
    else:
      failing = middle
  allocations = _allocations(model_bytes, working, inputs)  # The confirming run.
  return Arena(size=working, smaller_fails=working - failing <= granularity,
               granularity=granularity, head=allocations.get("head"),
               tail=allocations.get("tail"))


def parity(model_bytes: bytes, x: np.ndarray, arena_size: Optional[int] = None,
           reference_kernels: bool = False) -> dict:
  """Runs the same inputs through TFLM and LiteRT and compares the raw outputs.

  LiteRT's reference kernels (`reference_kernels=True`) compute nearly
  exactly as TFLM's do (identical outputs on most inputs, else 1 LSB). Its
  default CPU path (XNNPACK) requantises with float arithmetic and rounds some
  values the other way: 1 LSB apart from the first convolution on, which can
  grow to a few LSB through a deep, untrained network.

  Args:
    model_bytes: a `.tflite` model with one input and one output.
    x: inputs in the Keras model's units (e.g. pixels); each row is quantised
      with the model's input parameters and fed to both interpreters.
    arena_size: TFLM arena bytes (default: `find_arena_size`).
    reference_kernels: compare with LiteRT's reference kernels instead of its
      default CPU kernels.

  Returns:
    {"samples", "identical" (rows with bit-identical outputs), "max_abs_diff"
    (in LSB of the output for integer outputs, in output units for float ones),
    "integer_output", "argmax_agreement" (fraction of rows with the same top class),
    "litert_kernels" ('reference' or 'default')}.

  Example:
    parity(model_bytes, test_x[:100])["max_abs_diff"]   # e.g. 1.0 (LSB)
  """
  arena_size = arena_size or find_arena_size(model_bytes).size
  reference = litert.load(model_bytes, reference_kernels=reference_kernels)
  reference.allocate_tensors()
  in_detail = reference.get_input_details()[0]
  out_detail = reference.get_output_details()[0]
  micro = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
  identical, max_diff, same_top = 0, 0.0, 0
  for row in np.asarray(x):
    raw = litert.quantize_input(np.asarray(row)[None], in_detail)
    reference.set_tensor(in_detail["index"], raw)
    reference.invoke()
    expected = reference.get_tensor(out_detail["index"])
    micro.set_input(raw, 0)
    micro.invoke()
    got = micro.get_output(0)
    diff = np.abs(expected.astype(np.float64) - got.astype(np.float64))
    identical += int(np.array_equal(expected, got))
    max_diff = max(max_diff, float(diff.max()) if diff.size else 0.0)
    same_top += int(np.argmax(expected) == np.argmax(got))
  n = len(x)
  return {"samples": n, "identical": identical, "max_abs_diff": max_diff,
          "integer_output": bool(np.issubdtype(out_detail["dtype"], np.integer)),
          "argmax_agreement": same_top / n if n else None,
          "litert_kernels": "reference" if reference_kernels else "default"}


def flash_bytes(model_bytes: bytes) -> int:
  """Flash the model takes: the flatbuffer's size (it is linked in as a const array).

  TFLM's own code and the application need flash on top of this.
  """
  return len(model_bytes)
