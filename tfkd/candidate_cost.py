"""What a search candidate costs on the device, measured before it is trained, and whether it fits.

A candidate is converted to int8 (untrained: sizes, arena and latency do not
depend on the weights' values, once they are not all at their initial values) and measured on the real tools: flash bytes
(the `.tflite` size), MACs and parameters from the graph (`tflite.cost`), the
TFLite Micro arena (`tflite.micro.find_arena_size`, a real TFLM run) and the
LiteRT latency on this machine (`tflite.interpreter.latency_ms`, 1 thread).
Cheap checks run first and stop the measurement early: a candidate over the
flash or MAC budget, or whose peak-activation lower bound already exceeds the
arena budget, never reaches TFLM.

Measurements are cached per architecture (`workdir/search/costs/<key>.json`,
written atomically), so a candidate proposed again, by another study, device
or worker, is not converted twice; a cache entry measured under a tighter
budget is completed when a looser one needs more. The int8 file of a candidate
that reached TFLM is kept beside it (`<key>.tflite`, under the flash budget):
the search times all of them again together at its end (`time_together`),
since one short measurement on a shared machine reads over 1.3 times the idle
latency half the time (BENCHMARKS §19).

Example:
  cost = measure(cand, build, representative, "runs/s/search/costs", budget)
  if cost["rejected"]: print(cost["rejected"])
"""

import os
import time

import numpy as np

from tflite import convert, files, interpreter, micro
from tflite import cost as tflite_cost
from tflite.errors import TfliteError

from tfkd import search_space


def rejection(cost: dict, budget) -> str:
  """Why a measured candidate does not fit `budget` (a `search.profiles` entry), or ''."""
  if cost.get("conversion_error"):
    return f"does not convert to int8: {cost['conversion_error']}"
  if cost["flash_bytes"] > budget.flash_bytes:
    return f"flash {cost['flash_bytes']:,} B > {budget.flash_bytes:,} B"
  if budget.macs and cost["macs"] > budget.macs:
    return f"MACs {cost['macs']:,} > {budget.macs:,}"
  if cost["peak_activation_bytes"] > budget.arena_bytes:
    return (f"activations alone need {cost['peak_activation_bytes']:,} B > arena "
            f"{budget.arena_bytes:,} B")
  if cost.get("tflm_error"):
    return f"TFLite Micro cannot run it: {cost['tflm_error']}"
  if cost.get("arena_bytes") is None:  # over the arena budget: measured only up to it
    return f"TFLM arena > {cost['arena_limit']:,} B (budget {budget.arena_bytes:,} B)"
  if cost["arena_bytes"] > budget.arena_bytes:
    return f"TFLM arena {cost['arena_bytes']:,} B > {budget.arena_bytes:,} B"
  if budget.latency_ms and cost["latency_ms"] > budget.latency_ms:
    return f"latency {cost['latency_ms']:.2f} ms > {budget.latency_ms} ms"
  return ""


def _needs_more(cost: dict, budget) -> bool:
  """True when a cached measurement stopped short of what `budget` needs to decide."""
  if cost.get("conversion_error") or cost["flash_bytes"] > budget.flash_bytes:
    return False
  if (budget.macs and cost["macs"] > budget.macs) or cost["peak_activation_bytes"] > budget.arena_bytes:
    return False
  if cost.get("tflm_error"):
    return False
  return cost.get("arena_bytes") is None and cost.get("arena_limit", 0) < budget.arena_bytes


def measure(cand: dict, build, representative, cache_dir: str, budget, latency_runs: int = 50,
            for_export=lambda model: model) -> dict:
  """Measures (or reads from the cache) a candidate's int8 cost and checks it against `budget`.

  Args:
    cand: a candidate (`tfkd.search_space`).
    build: `build(cand)` → the candidate's untrained Keras model.
    representative: calibration inputs at the candidate's resolution (raw pixels).
    cache_dir: folder of the per-architecture cache.
    budget: the device's `search.profiles` entry (flash_bytes, arena_bytes, latency_ms, macs).
    latency_runs: timed LiteRT invokes.
    for_export: what the export does to a model before converting it (e.g. folding the
      input normalisation, `from_config.for_export`), so the cost is the exported file's.

  Returns:
    {"key", "flash_bytes", "parameters", "macs", "peak_activation_bytes", "arena_bytes"
     (None when over the budget or not measured), "latency_ms", "measure_seconds",
     "rejected" (the reason, '' when it fits)} plus error fields when a tool refused it.
  """
  key = search_space.candidate_key(cand)
  path = os.path.join(cache_dir, f"{key}.json")
  cost = files.read_json(path) if os.path.exists(path) else None
  if cost is None or _needs_more(cost, budget):
    cost, model_bytes = _measure(cand, lambda c: for_export(like_trained(build(c))),
                                 representative, budget, latency_runs)
    cost["key"] = key
    if cost["latency_ms"] is not None:
      files.write_atomic(tflite_path(cache_dir, key), model_bytes)
    files.write_json(path, cost)
  return dict(cost, rejected=rejection(cost, budget))


def tflite_path(cache_dir: str, key: str) -> str:
  """Where `measure` keeps the int8 file of a candidate that reached TFLM."""
  return os.path.join(cache_dir, f"{key}.tflite")


def time_together(cache_dir: str, samples: dict, runs: int, rounds: int = 10,
                  spread_s: float = 0.0) -> dict:
  """LiteRT latency of measured candidates, all timed together in interleaved rounds.

  Args:
    cache_dir: the cost cache (`measure`'s), holding `<key>.tflite` files.
    samples: candidate key → one input row at its resolution (raw pixels); keys without a
      kept file are left out.
    runs: timed invokes per candidate, shared by the rounds.
    rounds: interleaved rounds.
    spread_s: the rounds span about this many seconds, so that some fall outside the slow
      spells of a shared machine (up to about 2x, lasting up to seconds; BENCHMARKS §19).

  Returns:
    key → `tflite.interpreter.interleaved_latency_ms`'s dict; its "p50_quietest_round" is
    the estimate of the idle latency.
  """
  paths = {key: tflite_path(cache_dir, key) for key in samples}
  paths = {key: p for key, p in paths.items() if os.path.exists(p)}
  if not paths:
    return {}
  return interpreter.interleaved_latency_ms(
      paths, {key: samples[key] for key in paths}, rounds, max(1, runs // rounds), warmup=5,
      spread_s=spread_s)


def like_trained(model):
  """`model` with every weight nudged off its initial value.

  Fresh models have many identical constants (zero biases, BatchNorm's zero means and
  unit variances) that the converter stores once; trained ones do not, so untouched
  weights would understate the flash a trained candidate needs.
  """
  rng = np.random.default_rng(0)
  model.set_weights([w + rng.uniform(0, 1e-3, w.shape).astype(w.dtype) for w in model.get_weights()])
  return model


def _measure(cand, build, representative, budget, latency_runs) -> tuple:
  start = time.time()
  try:  # ValueError: Keras cannot build the candidate (e.g. an input too small for its strides)
    model_bytes = convert.convert(build(cand), "int8", representative)
  except (TfliteError, ValueError) as e:
    return {"conversion_error": str(e).splitlines()[0], "flash_bytes": None,
            "latency_ms": None, "measure_seconds": time.time() - start}, None
  graph_cost = tflite_cost.model_cost(model_bytes)
  cost = {"flash_bytes": micro.flash_bytes(model_bytes), "parameters": graph_cost["parameters"],
          "macs": graph_cost["macs"], "peak_activation_bytes": graph_cost["peak_activation_bytes"],
          "arena_bytes": None, "arena_limit": 0, "latency_ms": None}
  fits_so_far = (cost["flash_bytes"] <= budget.flash_bytes
                 and not (budget.macs and cost["macs"] > budget.macs)
                 and cost["peak_activation_bytes"] <= budget.arena_bytes)
  if fits_so_far:
    try:
      # Up to the budget's next power of two, so every arena up to the budget is found exactly.
      limit = 1 << (int(budget.arena_bytes) - 1).bit_length()
      cost["arena_bytes"] = micro.find_arena_size(model_bytes, max_size=limit).size
    except micro.MicroError as e:
      if micro.check_ops(model_bytes).runs:
        cost["arena_limit"] = limit  # needs more than the budget
      else:
        cost["tflm_error"] = str(e)
    cost["latency_ms"] = interpreter.latency_ms(model_bytes, representative[0],
                                                runs=latency_runs, warmup=5)["p50"]
  cost["measure_seconds"] = time.time() - start
  return cost, model_bytes
