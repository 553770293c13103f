r"""What a second trace of the training step costs at the start of every `fit`.

  .venv/bin/python -m bench.first_step --repeats=3

Keras makes the optimizer's slots and the compiled metrics' variables inside its first traced
training step, and TensorFlow traces a step that makes variables a second time.
`tfkd.training.fit_resumable` makes them before `fit` (`training.build_step_variables`). For
each model this times one `fit_resumable` call of 4 batches of 32 CIFAR-sized images, with the
variables made first (now) and left to `fit` (before), alternating, on fresh models each time,
and reads how often the step was traced. Writes first_step.{md,json,png} to --out.
"""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras
from absl import flags

import tfkd
from bench import common
from tfkd import cli, models, training
from tflite import files

_OUT = flags.DEFINE_string("out", "runs/bench_first_step", "Output folder.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per model and way (median kept).")

MODELS = ("resnet8", "resnet20", "distiller resnet20 -> resnet8")


def compiled(name: str):
  optimizer = tf_keras.optimizers.SGD(0.05, momentum=0.9)
  if name.startswith("distiller"):
    teacher = models.build_model("resnet20", 10, (32, 32, 3))
    model = tfkd.Distiller(teacher, models.build_model("resnet8", 10, (32, 32, 3)),
                           [tfkd.LogitsDistillation(temperature=4.0)])
    model.compile(optimizer, metrics=["accuracy"])
    return model
  model = models.build_model(name, 10, (32, 32, 3))
  model.compile(optimizer, tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model


def timed_fit(name: str, batches, variables_first: bool) -> tuple:
  """(seconds, traces) of one fit_resumable call on a fresh model."""
  model = compiled(name)
  build = training.build_step_variables
  if not variables_first:
    training.build_step_variables = lambda *args: None
  try:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as stage_dir:
      training.fit_resumable(model, batches, None, 1, stage_dir)
    seconds = time.perf_counter() - start
  finally:
    training.build_step_variables = build
  return seconds, model.train_function.experimental_get_tracing_count()


def plot(rows, path: str) -> str:
  fig, ax = files.new_figure(figsize=(6, 4))
  positions = np.arange(len(rows))
  ax.bar(positions - 0.2, [r["before_s"] for r in rows], 0.4, label="variables made in the step")
  ax.bar(positions + 0.2, [r["now_s"] for r in rows], 0.4, label="variables made before fit")
  ax.set_xticks(positions)
  ax.set_xticklabels([r["model"] for r in rows], fontsize=8)
  ax.set_ylabel("seconds for fit of 4 batches (median)")
  ax.set_ylim(0, 1.3 * max(r["before_s"] for r in rows))  # room for the legend
  ax.legend()
  return files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.first_step")
  rng = np.random.default_rng(0)
  batches = tf.data.Dataset.from_tensor_slices((
      rng.uniform(0, 255, (128, 32, 32, 3)).astype(np.float32),
      rng.integers(0, 10, 128))).batch(32)
  rows = []
  for name in MODELS:
    runs = {True: [], False: []}
    for _ in range(_REPEATS.value):
      for variables_first in (False, True):
        runs[variables_first].append(timed_fit(name, batches, variables_first))
    rows.append({"model": name, "before_s": float(np.median([s for s, _ in runs[False]])),
                 "now_s": float(np.median([s for s, _ in runs[True]])),
                 "traces_before": runs[False][0][1], "traces_now": runs[True][0][1]})
    print(rows[-1], flush=True)
  lines = ["| model | traces before | traces now | fit of 4 batches before (s) | now (s) | saved (s) |",
           "|---|---:|---:|---:|---:|---:|",
           *[f"| {r['model']} | {r['traces_before']} | {r['traces_now']} | {r['before_s']:.2f} | "
             f"{r['now_s']:.2f} | {r['before_s'] - r['now_s']:.2f} |" for r in rows], "",
           f"Plot: {plot(rows, os.path.join(_OUT.value, 'first_step.png'))}"]
  common.write_table(_OUT.value, "first_step", meta, lines, rows)


if __name__ == "__main__":
  cli.run(main)
