r"""Training step time in float32 and mixed bfloat16 for the students tfkd trains and searches.

  .venv/bin/python -m bench.bf16_shapes --out=runs/bench_bf16_shapes

Mixed bfloat16 (`train.precision`, `tfkd.precision`) halved a ResNet-20 epoch on this
project's AMX CPU (BENCHMARKS §17). That does not hold for every shape: this times one
training step (batch --batch_size, 32x32x3, SGD, as `fit` runs it: `common.step_runner`)
of the ResNet-20 teacher, ResNet-8s of several widths, DS-CNNs and a MobileNetV2 from
`tfkd.models` (`common.STUDENT_SHAPES`), in both precisions, and gives the ratio. Writes
bf16_shapes.{md,json,png} to --out. Stop other work first.
"""

import os

from absl import flags

from bench import common
from tfkd import cli
from tflite import files

_OUT = flags.DEFINE_string("out", "runs/bench_bf16_shapes", "Output folder.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per model and precision.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")


def main(argv):
  del argv
  meta = common.provenance("bench.bf16_shapes")
  rows = []
  for name, kwargs in common.STUDENT_SHAPES:
    float_ms, parameters = common.training_step_ms(name, kwargs, "float32", _BATCH_SIZE.value,
                                                   _STEPS.value)
    bf16_ms, _ = common.training_step_ms(name, kwargs, "mixed_bfloat16", _BATCH_SIZE.value,
                                         _STEPS.value)
    rows.append({"model": common.described(name, kwargs), "parameters": parameters,
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
  common.ratio_plot(rows, "bfloat16 step time / float32 step time (below 1: bfloat16 faster)",
                    os.path.join(_OUT.value, "bf16_shapes.png"))
  print(text)


if __name__ == "__main__":
  cli.run(main)
