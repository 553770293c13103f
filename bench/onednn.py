r"""Training step time with TensorFlow's oneDNN kernels off and on; a model they crash on.

  .venv/bin/python -m bench.onednn --out=runs/bench_onednn

TensorFlow uses its oneDNN kernels by default only on x86 CPUs with AVX512-VNNI,
AVX512-BF16 or AMX; `TF_ENABLE_ONEDNN_OPTS=1` turns them on elsewhere (an AVX2-only CPU,
say). TensorFlow reads the variable once, when it is imported, so each setting runs in
its own process. For each setting this times a float32 training step (batch
--batch_size, 32x32x3, SGD, as `fit` runs it) of `common.STUDENT_SHAPES`, then trains,
on one thread (as a search worker pinned to one core does), a ResNet-8 whose stem has 4
filters and records how the process ended: with oneDNN on, TensorFlow 2.21 aborted it
(SIGABRT, exit code -6) on heap corruption on an AVX2-only AMD EPYC: glibc reported
'double free or corruption', 'free(): invalid pointer' or a malloc assertion. That is
why tfkd leaves the setting to the user. Writes onednn.{md,json,png} to --out. Stop
other work first.
"""

import json
import os
import subprocess
import sys

from absl import flags

from bench import common
from tfkd import cli, precision
from tflite import files

_OUT = flags.DEFINE_string("out", "runs/bench_onednn", "Output folder.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per model and setting.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_CHILD = flags.DEFINE_bool("child", False, "Internal: time the models in this process, print JSON.")

# A 4-filter stem trained on one thread: the case that crashed with oneDNN on.
NARROW_STEM = """
import numpy as np, tf_keras, tfkd
from tfkd import models
model = models.build_model("resnet8", 3, (32, 32, 3), filters=(4, 8, 8))
model.compile(tf_keras.optimizers.SGD(0.01),
              tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
rng = np.random.default_rng(0)
model.fit(rng.uniform(size=(44, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 44),
          batch_size=8, epochs=3, verbose=0)
"""


def time_models() -> dict:
  """{'onednn': whether TensorFlow runs oneDNN here, 'rows': [step time of each model]}."""
  rows = []
  for name, kwargs in common.STUDENT_SHAPES:
    ms, parameters = common.training_step_ms(name, kwargs, "float32", _BATCH_SIZE.value,
                                              _STEPS.value)
    rows.append({"model": common.described(name, kwargs), "parameters": parameters, "ms": ms})
    print(rows[-1], file=sys.stderr, flush=True)
  return {"onednn": precision.onednn_enabled(), "rows": rows}


def run_setting(setting: str) -> dict:
  """Times the models and trains the narrow-stem model in fresh processes with `setting`."""
  env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
  timed = subprocess.run([sys.executable, "-m", "bench.onednn", "--child",
                          f"--steps={_STEPS.value}", f"--batch_size={_BATCH_SIZE.value}"],
                         env=env, capture_output=True, text=True, check=False)
  if timed.returncode != 0:
    raise RuntimeError(f"Timing with TF_ENABLE_ONEDNN_OPTS={setting} failed:\n"
                       f"{timed.stderr[-3000:]}")
  result = json.loads(timed.stdout.strip().splitlines()[-1])
  narrow = subprocess.run([sys.executable, "-c", NARROW_STEM], capture_output=True,
                          env={**env, "TF_NUM_INTRAOP_THREADS": "1"}, check=False)
  result["narrow_stem_exit_code"] = narrow.returncode
  return result


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(time_models()), flush=True)
    return
  meta = {**common.provenance("bench.onednn"), "onednn": None}  # each setting has its own process
  off, on = run_setting("0"), run_setting("1")
  rows = [{"model": a["model"], "parameters": a["parameters"], "off_ms": a["ms"], "on_ms": b["ms"],
           "ratio": b["ms"] / a["ms"]} for a, b in zip(off["rows"], on["rows"])]
  lines = [common.header(meta),
           f"Float32, batch {_BATCH_SIZE.value}, 32x32x3, {_STEPS.value} timed steps. "
           f"TensorFlow ran oneDNN: {off['onednn']} with TF_ENABLE_ONEDNN_OPTS=0, "
           f"{on['onednn']} with TF_ENABLE_ONEDNN_OPTS=1.",
           "", "| model | parameters | oneDNN off ms/step | oneDNN on ms/step | on / off |",
           "|---|---:|---:|---:|---:|"]
  lines += [f"| {r['model']} | {r['parameters']:,} | {r['off_ms']:.1f} | {r['on_ms']:.1f} | "
            f"{r['ratio']:.2f} |" for r in rows]
  lines += ["", "A ResNet-8 with filters (4, 8, 8), trained on one thread "
            "(exit code; a negative code is the signal that ended it):", ""]
  lines += [f"- oneDNN {label}: exit code {result['narrow_stem_exit_code']}"
            for label, result in (("off", off), ("on", on))]
  text = "\n".join(lines) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "onednn.md"), text)
  files.write_json(os.path.join(_OUT.value, "onednn.json"),
                   {**meta, "off": off, "on": on, "rows": rows})
  common.ratio_plot(rows, "float32 step time, oneDNN on / off (below 1: oneDNN faster)",
                    os.path.join(_OUT.value, "onednn.png"))
  print(text)


if __name__ == "__main__":
  cli.run(main)
