r"""Trials an hour: one process on all cores against one process pinned to each core.

  .venv/bin/python -m bench.core_split --out=runs/bench_core_split

`tfkd.search --workers=N` runs the trials in N processes, each pinned to its share of
the cores (`tfkd.search_workers`). That pays only if TensorFlow trains a search-sized
student less than N times as fast on N cores as on one. This times a training step
(float32, batch --batch_size, as `fit` runs it: `common.step_runner`) of a few of the
search's shapes, first in one process on every core, then in one process per core at
once, and gives the throughput ratio (steps a second, all processes together, over the
single process's). Writes core_split.{md,json} to --out. Stop other work first.
"""

import json
import os
import subprocess
import sys
import time

from absl import flags

import numpy as np

from bench import common
from tfkd import cli, models
from tflite import files

_OUT = flags.DEFINE_string("out", "runs/bench_core_split", "Output folder.")
_SECONDS = flags.DEFINE_float("seconds", 8.0, "Timed seconds per model and process.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_TIME_ONLY = flags.DEFINE_bool("time_only", False, "Internal: time the cases in this process "
                               "and print them as JSON lines.")

CASES = (  # (model, its kwargs, input size): shapes the CIFAR-10 search trains
    ("resnet8", {"filters": (16, 32, 64)}, 32),
    ("resnet8", {"filters": (16, 32, 64)}, 16),
    ("ds_cnn", {"filters": (24, 48, 96, 96), "strides": (1, 2, 2, 1)}, 32),
    ("mobilenet_v2", {"width_multiplier": 0.5}, 24),
)


def time_cases() -> None:
  """Prints {"case", "ms"} for each case: its mean training step over --seconds."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for index, (name, kwargs, size) in enumerate(CASES):
    x = tf.constant(rng.uniform(0, 255, (_BATCH_SIZE.value, size, size, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, _BATCH_SIZE.value))
    model = models.build_model(name, 10, (size, size, 3), **kwargs)
    model.compile(tf_keras.optimizers.SGD(0.01),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    step = common.step_runner(model, [(x, y)])
    for _ in range(3):
      step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < _SECONDS.value:
      step()
      steps += 1
    print(json.dumps({"case": index, "ms": 1e3 * (time.perf_counter() - start) / steps}),
          flush=True)


def run_timers(core_sets: list) -> list:
  """Runs `time_cases` in one process per core set, all at once: [{case: ms}] per process."""
  command = [sys.executable, "-m", "bench.core_split", "--time_only",
             f"--seconds={_SECONDS.value}", f"--batch_size={_BATCH_SIZE.value}"]
  procs = [subprocess.Popen(["taskset", "-c", ",".join(map(str, cores)), *command],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
           for cores in core_sets]
  outputs = [p.communicate()[0] for p in procs]
  if any(p.returncode for p in procs):
    raise RuntimeError(f"a timing process failed: {[p.returncode for p in procs]}")
  return [{row["case"]: row["ms"] for row in map(json.loads, out.splitlines())} for out in outputs]


def main(argv):
  del argv
  if _TIME_ONLY.value:
    time_cases()
    return
  meta = common.provenance("bench.core_split")
  cores = sorted(os.sched_getaffinity(0))
  together = run_timers([cores])[0]
  pinned = run_timers([[core] for core in cores])
  rows = []
  for index, (name, kwargs, size) in enumerate(CASES):
    per_core = [p[index] for p in pinned]
    ratio = sum(1 / ms for ms in per_core) / (1 / together[index])
    described = " ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in kwargs.items())
    rows.append({"model": f"{name} {described} @{size}", "all_cores_ms": together[index],
                 "pinned_ms": per_core, "throughput_ratio": ratio})
    print(rows[-1], flush=True)
  lines = [common.header(meta),
           f"{len(cores)} cores; batch {_BATCH_SIZE.value}, float32, {_SECONDS.value:g} s timed "
           "per model and process.", "",
           f"| model | one process on {len(cores)} cores (ms/step) | one pinned process per "
           "core, at once (ms/step each) | steps a second, pinned over one |",
           "|---|---:|---:|---:|"]
  lines += [f"| {r['model']} | {r['all_cores_ms']:.1f} | "
            f"{', '.join(f'{ms:.1f}' for ms in r['pinned_ms'])} | {r['throughput_ratio']:.2f} |"
            for r in rows]
  text = "\n".join(lines) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "core_split.md"), text)
  files.write_json(os.path.join(_OUT.value, "core_split.json"), {**meta, "rows": rows})
  print(text)


if __name__ == "__main__":
  cli.run(main)
