r"""The pipeline report's LiteRT latency figure, timed back to back and spread over time.

  .venv/bin/python -m bench.report_latency --workdir=runs/cifar10_e80 \
      --out=runs/bench_report_latency

Times a run's distilled student files (`export/distill_<mode>.tflite`) as the report
does (`report_stage.report_latencies`: `report.latency_runs` invokes over 10
interleaved rounds, 1 thread), `--attempts` times each way, the two ways taking
turns: the rounds back to back (`report.latency_spread_s=0`, the report before that
key) and spread over `--spread_s` (the key's default). Each attempt's figure is a
file's quietest round's median, what a report row gives. Writes
report_latency.{md,json,png} to --out and prints the table. Stop other work first:
anything else running is part of what this measures.
"""

import os
import time

import numpy as np
from absl import flags

from bench import common
from configs import defaults
from tfkd import cli, report_stage
from tflite import benchmark, files, interpreter

_WORKDIR = flags.DEFINE_string("workdir", None, "A pipeline run holding export/distill_*.tflite.")
_MODES = flags.DEFINE_list("modes", ["int8", "float32"], "Export modes of the files timed.")
_ATTEMPTS = flags.DEFINE_integer("attempts", 3, "Timings each way.")
_SPREAD = flags.DEFINE_float("spread_s", defaults.get_config().report.latency_spread_s,
                             "Seconds the spread rounds span.")
_OUT = flags.DEFINE_string("out", "runs/bench_report_latency", "Output folder.")


def time_both_ways(paths: dict, sample: np.ndarray) -> list:
  """[{"way", "attempt", "start", mode: the report's figure (ms)}], the ways taking turns."""
  report = defaults.get_config().report
  found = []
  for attempt in range(_ATTEMPTS.value):
    for way, spread in (("back to back", 0.0), (f"spread over {_SPREAD.value:g} s", _SPREAD.value)):
      start = time.strftime("%H:%M:%S", time.gmtime())
      report.latency_spread_s = spread
      timed = report_stage.report_latencies(report, list(paths.values()), sample)
      found.append({"way": way, "attempt": attempt, "start": start,
                    **{mode: interpreter.idle_ms(timed[path]) for mode, path in paths.items()}})
  return found


def plot(found: list, modes: list, path: str) -> str:
  fig, axes = files.new_figure(1, len(modes), figsize=(4.5 * len(modes), 3.5))
  ways = list(dict.fromkeys(r["way"] for r in found))
  for axis, mode in zip(np.atleast_1d(axes), modes):
    for x, way in enumerate(ways):
      values = [r[mode] for r in found if r["way"] == way]
      axis.scatter([x] * len(values), values, zorder=3)
    axis.set_xticks(range(len(ways)), ways)
    axis.set_xlim(-0.5, 1.5)
    axis.set_ylim(0, None)
    axis.set_ylabel("report's figure (ms)")
    axis.set_title(f"distill_{mode}.tflite, one dot per attempt")
    axis.grid(alpha=0.3)
  fig.tight_layout()
  return files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.report_latency")
  paths = {mode: os.path.join(_WORKDIR.value, "export", f"distill_{mode}.tflite")
           for mode in _MODES.value}
  with open(paths[_MODES.value[0]], "rb") as f:
    sample = benchmark.random_inputs(f.read(), 1)[0]
  found = time_both_ways(paths, sample)
  modes = _MODES.value
  lines = [common.header(meta),
           "| attempt | started (UTC) | rounds | " + " | ".join(f"{m} ms" for m in modes) + " |",
           "|---:|---|---|" + "---:|" * len(modes)]
  lines += [f"| {r['attempt'] + 1} | {r['start']} | {r['way']} | "
            + " | ".join(f"{r[m]:.3f}" for m in modes) + " |" for r in found]
  lines += ["", "| rounds | " + " | ".join(f"{m}: lowest / highest (ms)" for m in modes) + " |",
            "|---|" + "---:|" * len(modes)]
  for way in dict.fromkeys(r["way"] for r in found):
    values = {m: [r[m] for r in found if r["way"] == way] for m in modes}
    lines.append(f"| {way} | " + " | ".join(f"{min(v):.3f} / {max(v):.3f}"
                                            for v in values.values()) + " |")
  text = "\n".join(lines) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "report_latency.md"), text)
  files.write_json(os.path.join(_OUT.value, "report_latency.json"), {**meta, "timings": found})
  plot(found, modes, os.path.join(_OUT.value, "report_latency.png"))
  print(text)


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  cli.run(main)
