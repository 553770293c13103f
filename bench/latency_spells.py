r"""How steady is this machine's LiteRT latency, and which way of measuring it holds up?

  .venv/bin/python -m bench.latency_spells --model=runs/cifar10_e80/export/distill_int8.tflite \
      --out=runs/bench_latency_spells

Times one `.tflite` model (1 thread) in back-to-back blocks of `--block`
invokes for `--seconds`. The baseline is the 5th percentile of the block
medians (the machine at its quietest); a block over 1.3 times it is slow, and
a spell is a run of slow blocks. Then, from every start second of the trace,
it reads off what a measurement started then would have said: one block of
about 50 invokes (a search candidate's own measurement), and the quietest of
10 short rounds spread over 20, 60 or 120 s (`candidate_cost.time_together`,
what `tfkd.search` reports), each as a ratio to the baseline.

Writes latency_spells.{md,json,png} to --out and prints the tables. Stop other
work first: anything else running is part of what this measures.
"""

import os
import time

from absl import flags

import numpy as np

from bench import common
from tfkd import cli
from tflite import files, interpreter

_MODEL = flags.DEFINE_string("model", None, "The .tflite model to time.")
_OUT = flags.DEFINE_string("out", "runs/bench_latency_spells", "Output folder.")
_SECONDS = flags.DEFINE_float("seconds", 300.0, "How long to time.")
_BLOCK = flags.DEFINE_integer("block", 20, "Invokes per block.")
SLOW = 1.3        # a block this many times the baseline is slow
SPREADS = (20, 60, 120)


def time_blocks(model, seconds: float, block: int) -> np.ndarray:
  """[(seconds since start, block median ms)] of back-to-back blocks for `seconds`."""
  runner = interpreter.load(model)
  runner.allocate_tensors()
  detail = runner.get_input_details()[0]
  runner.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
  for _ in range(20):
    runner.invoke()
  rows, start = [], time.perf_counter()
  while time.perf_counter() - start < seconds:
    times = []
    for _ in range(block):
      t = time.perf_counter()
      runner.invoke()
      times.append(time.perf_counter() - t)
    rows.append((time.perf_counter() - start, 1e3 * np.median(times)))
  return np.array(rows)


def spells(trace: np.ndarray, limit: float) -> list:
  """Lengths (s) of the runs of blocks slower than `limit` in `trace`."""
  found, start = [], None
  for t, ms in trace:
    if ms > limit and start is None:
      start = t
    elif ms <= limit and start is not None:
      found.append(t - start)
      start = None
  if start is not None:
    found.append(trace[-1, 0] - start)
  return found


def estimator_rows(trace: np.ndarray, baseline: float, block: int) -> list:
  """For each way of measuring, its readings from every start second, as ratios to `baseline`."""
  at = lambda t: trace[min(np.searchsorted(trace[:, 0], t), len(trace) - 1), 1]
  ways = {"one block of ~50 invokes": (0.0, max(1, round(50 / block)))}
  ways.update({f"quietest of 10 rounds over {s} s": (float(s), 10) for s in SPREADS})
  rows = []
  for name, (spread, rounds) in ways.items():
    starts = np.arange(0.0, trace[-1, 0] - spread, 1.0)
    if not len(starts):
      continue
    if spread:
      readings = [min(at(t0 + t) for t in np.linspace(0, spread, rounds)) for t0 in starts]
    else:  # `rounds` consecutive blocks from t0
      readings = [np.median(trace[i:i + rounds, 1]) for i in np.searchsorted(trace[:, 0], starts)]
    ratio = np.array(readings) / baseline
    rows.append({"measurement": name, "starts": len(starts), "median_ratio": float(np.median(ratio)),
                 "p90_ratio": float(np.percentile(ratio, 90)),
                 "share_slow": float(np.mean(ratio > SLOW))})
  return rows


def plot(trace: np.ndarray, baseline: float, path: str) -> str:
  fig, ax = files.new_figure(figsize=(10, 4))
  ax.plot(trace[:, 0], trace[:, 1], linewidth=0.5)
  ax.axhline(baseline, color="black", linestyle=":", linewidth=1, label="baseline (p5)")
  ax.axhline(SLOW * baseline, color="tab:red", linestyle=":", linewidth=1,
             label=f"slow ({SLOW:g}x baseline)")
  ax.set_xlabel("seconds")
  ax.set_ylabel(f"median of {_BLOCK.value} invokes (ms)")
  ax.set_title(f"LiteRT latency over time, 1 thread: {os.path.basename(_MODEL.value)}")
  ax.grid(alpha=0.3)
  ax.legend(loc="upper right")
  fig.tight_layout()
  return files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.latency_spells")
  trace = time_blocks(_MODEL.value, _SECONDS.value, _BLOCK.value)
  baseline = float(np.percentile(trace[:, 1], 5))
  found = spells(trace, SLOW * baseline)
  summary = {"blocks": len(trace), "baseline_ms": baseline,
             "median_ms": float(np.median(trace[:, 1])),
             "slow_share": float(np.mean(trace[:, 1] > SLOW * baseline)),
             "spells_over_1s": sum(s > 1 for s in found),
             "longest_spell_s": max(found, default=0.0)}
  rows = estimator_rows(trace, baseline, _BLOCK.value)
  text = "\n".join([
      common.header(meta),
      "| blocks | baseline p5 (ms) | median (ms) | time slow | spells > 1 s | longest spell (s) |",
      "|---:|---:|---:|---:|---:|---:|",
      f"| {summary['blocks']} | {baseline:.3f} | {summary['median_ms']:.3f} | "
      f"{summary['slow_share']:.0%} | {summary['spells_over_1s']} | "
      f"{summary['longest_spell_s']:.1f} |", "",
      "| measurement | start times | median / baseline | p90 / baseline | reads slow |",
      "|---|---:|---:|---:|---:|",
      *(f"| {r['measurement']} | {r['starts']} | {r['median_ratio']:.2f} | {r['p90_ratio']:.2f} | "
        f"{r['share_slow']:.0%} |" for r in rows)]) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "latency_spells.md"), text)
  files.write_json(os.path.join(_OUT.value, "latency_spells.json"),
                   {**meta, "summary": summary, "measurements": rows, "slow_factor": SLOW})
  plot(trace, baseline, os.path.join(_OUT.value, "latency_spells.png"))
  print(text)


if __name__ == "__main__":
  flags.mark_flag_as_required("model")
  cli.run(main)
