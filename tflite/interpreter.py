"""Run `.tflite` models on the LiteRT interpreter: batched prediction, accuracy, latency.

Inputs are quantised with the model's own input scale and zero point, and
outputs dequantised with its output parameters, so the same call serves float,
int8, uint8 and int16 models.

Example:
  accuracy = evaluate_accuracy(open("model.tflite", "rb").read(), test_x, test_y)
"""

import functools
import platform
import time
from typing import Union

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tflite import graph
from tflite.errors import TfliteError


def load(model: Union[bytes, str], num_threads: int = 1,
         reference_kernels: bool = False) -> Interpreter:
  """A LiteRT interpreter from `.tflite` bytes or a file path.

  Args:
    model: `.tflite` bytes or a path.
    num_threads: interpreter threads.
    reference_kernels: use LiteRT's reference kernels (no XNNPACK, no optimised
      kernels): slow, but they round as TFLite Micro's do (nearly everywhere).

  Raises:
    TfliteError: naming the file, when it is missing, empty, truncated or not a
      `.tflite` model.
  """
  data = graph.read_model_bytes(model)
  resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
  try:
    return Interpreter(model_content=data, num_threads=num_threads,
                       experimental_op_resolver_type=resolver)
  except (ValueError, RuntimeError) as e:  # LiteRT's message names neither the file nor the fix
    where = repr(model) if isinstance(model, str) else "The model bytes"
    raise TfliteError(f"{where} cannot be loaded by LiteRT ({len(data)} bytes; "
                      f"{' '.join(str(e).split())}): the file is truncated or damaged, or uses "
                      "ops this LiteRT lacks; convert or copy it again.") from e


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
  """Float features → the input tensor's dtype, using its scale and zero point."""
  dtype = detail["dtype"]
  scale, zero_point = detail["quantization"]
  if np.issubdtype(dtype, np.floating) or not scale:
    return x.astype(dtype)
  info = np.iinfo(dtype)
  return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
  """The output tensor's values as float32 (a no-op for float models)."""
  scale, zero_point = detail["quantization"]
  if np.issubdtype(y.dtype, np.floating) or not scale:
    return y.astype(np.float32)
  return (y.astype(np.float32) - zero_point) * scale


def predict(model: Union[bytes, str, Interpreter], x: np.ndarray, batch_size: int = 256,
            dequantize: bool = True) -> np.ndarray:
  """Runs the model on every row of `x`, `batch_size` rows per invocation.

  Args:
    model: `.tflite` bytes, a path, or a LiteRT interpreter.
    x: inputs in the Keras model's units (e.g. pixels 0..255, token ids).
    batch_size: rows per invoke; the batch dimension is resized to it.
    dequantize: return float outputs (True) or the raw output tensor (False).

  Returns:
    The outputs, one row per input.
  """
  interpreter = model if isinstance(model, Interpreter) else load(model)
  input_detail = interpreter.get_input_details()[0]
  outputs, current = [], None
  for start in range(0, len(x), batch_size):
    batch = x[start:start + batch_size]
    if len(batch) != current:
      interpreter.resize_tensor_input(input_detail["index"], [len(batch), *x.shape[1:]])
      interpreter.allocate_tensors()
      current = len(batch)
      input_detail = interpreter.get_input_details()[0]
      output_detail = interpreter.get_output_details()[0]
    interpreter.set_tensor(input_detail["index"], quantize_input(np.asarray(batch), input_detail))
    interpreter.invoke()
    y = interpreter.get_tensor(output_detail["index"])
    outputs.append(dequantize_output(y, output_detail) if dequantize else y.copy())
  return np.concatenate(outputs)


def evaluate_accuracy(model: Union[bytes, str], x: np.ndarray, y: np.ndarray,
                      batch_size: int = 256) -> float:
  """Top-1 accuracy of a `.tflite` classifier on (x, y)."""
  return float(np.mean(np.argmax(predict(model, x, batch_size), axis=-1) == np.asarray(y)))


@functools.lru_cache(maxsize=1)  # read once: every latency result carries it
def cpu_name() -> str:
  """The CPU's model name, e.g. 'AMD EPYC': latencies (and training times) differ
  several-fold between machines, so they are reported with it."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown CPU"


def latency_ms(model: Union[bytes, str], sample: np.ndarray, runs: int = 100, warmup: int = 10,
               num_threads: int = 1) -> dict:
  """Single-stream latency as in MLPerf Tiny: one input, warm-up, then `runs` timed invokes.

  Args:
    model: `.tflite` bytes or path.
    sample: one input row (without batch dimension).
    runs: timed invocations.
    warmup: untimed invocations first.
    num_threads: interpreter threads.

  Returns:
    `interleaved_latency_ms`'s dict for one round: {"p50", "p90", "mean" (ms), "runs", ...}.
  """
  return interleaved_latency_ms({"model": model}, sample, 1, runs, warmup, num_threads)["model"]


def interleaved_latency_ms(models: dict, sample, rounds: int = 10, runs: int = 50,
                           warmup: int = 20, num_threads: int = 1, spread_s: float = 0.0) -> dict:
  """Single-stream latency of several models, timed in interleaved rounds.

  Each round times every model `runs` times in turn, so a burst of background
  load falls on every model rather than one. A shared machine also has slow
  spells of up to seconds, which slow models by different factors (up to 2x;
  BENCHMARKS §19): `spread_s` spreads the rounds out so that some fall outside
  them, and "p50_quietest_round" then estimates the idle latency.

  Args:
    models: name → `.tflite` bytes or path.
    sample: one input row in model units (no batch dimension) for every model, or
      name → input row when the models' inputs differ.
    rounds: rounds over all models.
    runs: timed invokes per model per round.
    warmup: untimed invokes per model before the first round.
    num_threads: interpreter threads.
    spread_s: the rounds span about this many seconds (equal sleeps between them).

  Returns:
    name → {"p50", "p90", "mean" (ms over all rounds), "p50_quietest_round" (the lowest
    of the rounds' medians), "runs", "rounds", "threads", "cpu" (`cpu_name()`)}.

  Example:
    interleaved_latency_ms({"float32": f32_bytes, "int8": int8_bytes}, test_x[0])
  """
  ready = {}
  for name, model in models.items():
    interpreter = load(model, num_threads=num_threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    row = sample[name] if isinstance(sample, dict) else sample
    interpreter.set_tensor(detail["index"], quantize_input(np.asarray(row)[None], detail))
    for _ in range(warmup):
      interpreter.invoke()
    ready[name] = interpreter
  times = {name: np.zeros((rounds, runs)) for name in models}
  for r in range(rounds):
    if r and spread_s:
      time.sleep(spread_s / (rounds - 1))
    for name, interpreter in ready.items():
      for i in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times[name][r, i] = (time.perf_counter() - start) * 1e3
  return {name: {"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
                 "mean": float(np.mean(t)), "p50_quietest_round": float(np.median(t, 1).min()),
                 "runs": t.size, "rounds": rounds, "threads": num_threads, "cpu": cpu_name()}
          for name, t in times.items()}


def idle_ms(latency: dict) -> float:
  """The latency to report from a `latency_ms`/`interleaved_latency_ms` dict: the quietest
  round's p50 when it was timed in rounds (an estimate of the idle machine's), else the p50."""
  return latency.get("p50_quietest_round", latency["p50"])
