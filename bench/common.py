"""What the benchmarks share: the provenance printed beside their numbers, and a step timer."""

import datetime
import itertools
import json
import os
import platform
import sys
import time
from typing import Dict, List, Mapping


def provenance(module: str) -> dict:
  """The exact command, the date (UTC), the CPU count and the Python/TF versions.

  Args:
    module: the benchmark's module name, e.g. "bench.cifar10".
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return {
      "command": " ".join([".venv/bin/python -m", module] + sys.argv[1:]),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "python": platform.python_version(),
      "tensorflow": tf.__version__,
  }


def header(meta: dict) -> str:
  """A markdown preamble for BENCHMARKS.md."""
  return (f"- date: {meta['date']}\n- machine: {meta['cpu_count']} CPU cores ({meta['machine']}), "
          f"Python {meta['python']}, TensorFlow {meta['tensorflow']}\n"
          f"- command: `{meta['command']}`\n")


def step_runner(model, batches, train_on_batch: bool = False):
  """A callable running one training step of a compiled model the way `fit` runs it.

  `fit` (tf_keras and Keras 3 alike) calls the model's `train_function` on an iterator over
  a `tf.data` pipeline, once per step; so does this, over `batches` cycled. Not
  `train_on_batch`: tf_keras' builds a one-batch `tf.data` pipeline and iterator on every
  call and Keras 3's does not, a per-call cost outside the step that `fit` never pays.

  Args:
    model: a compiled tf_keras or Keras 3 model; built by its first `train_on_batch`, here.
    batches: [(features, labels)], tensors of equal shapes, batch i of step i mod len(batches).
    train_on_batch: time `model.train_on_batch` instead, per-call costs included.

  Returns:
    A function of no arguments that runs the next step and returns its logs as numbers
    (so the step has finished when it returns).
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  model.train_on_batch(*batches[0])   # builds the model and its train_function, traces the step
  if train_on_batch:
    steps = itertools.cycle(batches)
    return lambda: model.train_on_batch(*next(steps))
  stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
  iterator = iter(tf.data.Dataset.from_tensor_slices(stacked).repeat())
  train_function = model.make_train_function() or model.train_function  # Keras 3 returns None
  return lambda: tf.nest.map_structure(lambda t: t.numpy(), train_function(iterator))


def time_variants(variants: Mapping[str, tuple], steps: int, warmup_steps: int,
                  train_on_batch: bool = False) -> Dict[str, List[float]]:
  """Seconds of each training step of each variant, the variants' steps interleaved.

  Args:
    variants: {name: (compiled model, batches)}; step i trains on batch i mod len(batches),
      each through `step_runner` (the step `fit` runs).
    steps: timed steps per variant.
    warmup_steps: untimed steps per variant first (tracing, XLA compilation).
    train_on_batch: see `step_runner`.

  Returns:
    {name: [seconds of each timed step]}.
  """
  runners = {name: step_runner(model, batches, train_on_batch)
             for name, (model, batches) in variants.items()}
  seconds = {name: [] for name in variants}
  for step in range(warmup_steps + steps):
    # A B C … A B C …: a burst of background load slows every variant alike.
    for name, run_step in runners.items():
      start = time.perf_counter()
      run_step()
      if step >= warmup_steps:
        seconds[name].append(time.perf_counter() - start)
  return seconds


def seed_cell(values) -> str:
  """Accuracies of several seeds as a table cell: mean in %, with the seeds' range."""
  values = [100 * v for v in values]
  if len(values) == 1:
    return f"{values[0]:.2f}%"
  return f"{sum(values) / len(values):.2f}% ({min(values):.2f}–{max(values):.2f})"


def run_stages(run, stages, label: str) -> dict:
  """Runs pipeline stages on a prepared `tfkd.run_context.Run`, printing each one's seconds.

  Returns:
    The run's report.json (so the last stage should be 'report').
  """
  from tfkd import pipeline  # here: the benchmarks of .tflite files alone never import tfkd
  for stage in stages:
    start = time.time()
    pipeline.STAGE_FUNCTIONS[stage](run)
    print(f"[{label}] {stage}: {time.time() - start:.0f}s", flush=True)
  with open(run.path("report.json")) as f:
    return json.load(f)


def given_or_trained_teacher(config, teacher_path: str, out: str) -> str:
  """The teacher a benchmark's students learn from: `teacher_path`, or else `config`'s teacher
  stage run once (resumable) in `out`/teacher, on every label. Returns its model file."""
  if teacher_path:
    return teacher_path
  from tfkd import pipeline
  teacher_config = config.copy_and_resolve_references()
  teacher_config.stages = ("teacher",)
  pipeline.run_pipeline(teacher_config, os.path.join(out, "teacher"))
  return os.path.join(out, "teacher", "teacher", "model.keras")
