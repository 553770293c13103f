r"""Training step time in float32 and mixed bfloat16 for the students tfkd trains and searches.

  .venv/bin/python -m bench.bf16_shapes --out=runs/bench_bf16_shapes

Mixed bfloat16 (`train.precision`, `tfkd.precision`) halved a ResNet-20 epoch on this
project's AMX CPU (BENCHMARKS §17). That does not hold for every shape: this times one
training step (batch --batch_size, 32x32x3, SGD, as `fit` runs it: `common.step_runner`)
of the ResNet-20 teacher, ResNet-8s of several widths, DS-CNNs and a MobileNetV2 from
`tfkd.models`, in both precisions, and gives the ratio. Writes bf16_shapes.{md,json,png}
to --out. Stop other work first.
"""

import os
import time

from absl import flags

import numpy as np

from bench import common
from tfkd import cli, models, precision
from tflite import files

_OUT = flags.DEFINE_string("out", "runs/bench_bf16_shapes", "Output folder.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per model and precision.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")

CASES = (
    ("resnet20", {}),  # the chain's teacher: what a new machine pays first
    ("resnet8", {"filters": (16, 32, 64)}),
    ("resnet8", {"filters": (32, 64, 128)}),
    ("resnet8", {"filters": (8, 16, 32)}),
    ("resnet8", {"filters": (11, 22, 46)}),
    ("resnet8", {"filters": (24, 48, 96)}),
    ("ds_cnn", {"filters": (32, 64, 128, 128), "strides": (1, 2, 2, 1)}),
    ("ds_cnn", {"filters": (24, 48, 96, 96), "strides": (1, 2, 2, 1)}),
    ("mobilenet_v2", {"width_multiplier": 0.5}),
)


def step_ms(name: str, kwargs: dict, policy: str, x, y) -> tuple:
  """(ms per training step, parameters) of one model in one precision."""
  import tf_keras  # pylint: disable=import-outside-toplevel
  model = precision.with_policy(models.build_model(name, 10, (32, 32, 3), **kwargs), policy)
  model.compile(tf_keras.optimizers.SGD(0.01),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  step = common.step_runner(model, [(x, y)])
  for _ in range(3):
    step()
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    step()
  return 1e3 * (time.perf_counter() - start) / _STEPS.value, model.count_params()


def plot(rows: list, path: str) -> str:
  fig, ax = files.new_figure(figsize=(8, 4))
  labels = [r["model"] for r in rows]
  ax.barh(range(len(rows)), [r["ratio"] for r in rows],
          color=["tab:green" if r["ratio"] < 1 else "tab:red" for r in rows])
  ax.axvline(1, color="black", linewidth=1)
  ax.set_yticks(range(len(rows)), labels, fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("bfloat16 step time / float32 step time (below 1: bfloat16 faster)")
  fig.tight_layout()
  return files.save_figure(fig, path)


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  meta = common.provenance("bench.bf16_shapes")
  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(0, 255, (_BATCH_SIZE.value, 32, 32, 3)).astype(np.float32))
  y = tf.constant(rng.integers(0, 10, _BATCH_SIZE.value))
  rows = []
  for name, kwargs in CASES:
    float_ms, parameters = step_ms(name, kwargs, "float32", x, y)
    bf16_ms, _ = step_ms(name, kwargs, "mixed_bfloat16", x, y)
    described = " ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in kwargs.items())
    rows.append({"model": f"{name} {described}".strip(), "parameters": parameters,
                 "float32_ms": float_ms, "bfloat16_ms": bf16_ms, "ratio": bf16_ms / float_ms})
    print(rows[-1], flush=True)
  lines = [common.header(meta), f"Batch {_BATCH_SIZE.value}, 32x32x3, {_STEPS.value} timed steps.",
           "", "| model | parameters | float32 ms/step | mixed bfloat16 ms/step | bfloat16 / float32 |",
           "|---|---:|---:|---:|---:|"]
  lines += [f"| {r['model']} | {r['parameters']:,} | {r['float32_ms']:.1f} | {r['bfloat16_ms']:.1f} | "
            f"{r['ratio']:.2f} |" for r in rows]
  text = "\n".join(lines) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "bf16_shapes.md"), text)
  files.write_json(os.path.join(_OUT.value, "bf16_shapes.json"), {**meta, "rows": rows})
  plot(rows, os.path.join(_OUT.value, "bf16_shapes.png"))
  print(text)


if __name__ == "__main__":
  cli.run(main)
