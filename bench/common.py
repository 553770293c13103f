"""What the benchmarks share: the provenance printed beside their numbers, a step timer, and
untrained models made to compute like trained ones (`settle_batch_norm`)."""

import datetime
import itertools
import json
import os
import platform
import sys
import time
from typing import Dict, List, Mapping


def provenance(module: str) -> dict:
  """The exact command, the date (UTC), the CPU and its count, oneDNN, the Python/TF versions.

  Args:
    module: the benchmark's module name, e.g. "bench.cifar10".
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfkd import precision  # pylint: disable=import-outside-toplevel
  from tflite import interpreter  # pylint: disable=import-outside-toplevel
  return {
      "command": " ".join([".venv/bin/python -m", module] + sys.argv[1:]),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "cpu": interpreter.cpu_name(),
      "onednn": precision.onednn_enabled(),
      "python": platform.python_version(),
      "tensorflow": tf.__version__,
  }


def header(meta: dict) -> str:
  """A markdown preamble for BENCHMARKS.md."""
  onednn = {True: ", oneDNN on", False: ", oneDNN off"}.get(meta.get("onednn"), "")
  return (f"- date: {meta['date']}\n- machine: {meta['cpu_count']} CPU cores ({meta['machine']}, "
          f"{meta.get('cpu', 'CPU not recorded')}{onednn}), "
          f"Python {meta['python']}, TensorFlow {meta['tensorflow']}\n"
          f"- command: `{meta['command']}`\n")


def write_table(out: str, stem: str, meta: dict, lines: List[str], rows: list) -> str:
  """Writes `<out>/<stem>.md` (the provenance, then the table's `lines`) and `<stem>.json`
  (`meta` and `rows`), each atomically, prints the markdown and returns it."""
  from tflite import files  # pylint: disable=import-outside-toplevel
  table = header(meta) + "\n" + "\n".join(lines) + "\n"
  os.makedirs(out, exist_ok=True)
  files.write_atomic(os.path.join(out, f"{stem}.md"), table.encode())
  files.write_json(os.path.join(out, f"{stem}.json"), {"meta": meta, "rows": rows})
  print(table)
  return table


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


# The ResNet-20 teacher and students tfkd trains and searches: (model name, build_model kwargs).
STUDENT_SHAPES = (
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


def described(name: str, kwargs: dict) -> str:
  """'resnet8 filters=[16, 32, 64]': a model of `STUDENT_SHAPES` as a table cell."""
  knobs = " ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in kwargs.items())
  return f"{name} {knobs}".strip()


def training_step_ms(name: str, kwargs: dict, policy: str, batch_size: int, steps: int) -> tuple:
  """(ms per training step, parameters) of `tfkd.models.build_model(name, **kwargs)`.

  Args:
    name, kwargs: the model, as in `STUDENT_SHAPES`; 10 classes, 32x32x3 inputs.
    policy: 'float32' or 'mixed_bfloat16' (`tfkd.precision`).
    batch_size: one batch of random pixels and labels, trained on at every step (SGD, the
      step `fit` runs: `step_runner`).
    steps: timed steps, after 3 untimed ones.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  from tfkd import models, precision  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 255, (batch_size, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 10, batch_size)
  model = precision.with_policy(models.build_model(name, 10, (32, 32, 3), **kwargs), policy)
  model.compile(tf_keras.optimizers.SGD(0.01),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  step = step_runner(model, [(x, y)])
  for _ in range(3):
    step()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  return 1e3 * (time.perf_counter() - start) / steps, model.count_params()


def ratio_plot(rows: list, xlabel: str, path: str) -> str:
  """Saves to `path` a bar per row of its 'ratio' (green below 1, red above), labelled 'model'."""
  from tflite import files  # pylint: disable=import-outside-toplevel
  fig, ax = files.new_figure(figsize=(9, 4), layout="constrained")
  ax.barh(range(len(rows)), [r["ratio"] for r in rows],
          color=["tab:green" if r["ratio"] < 1 else "tab:red" for r in rows])
  ax.axvline(1, color="black", linewidth=1)
  ax.set_yticks(range(len(rows)), [r["model"] for r in rows], fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel(xlabel)
  return files.save_figure(fig, path)


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


def settle_batch_norm(model, inputs) -> None:
  """Sets every BatchNormalization's moving statistics to its batch statistics on `inputs`.

  An untrained model's moving statistics (mean 0, variance 1) shrink a deep network's
  activations: MobileNetV2's logits come out near 1e-11, equal to any tolerance, and a check
  of its outputs would pass whatever the weights. Settled, inference mode computes what
  training mode does on these inputs, at the scale a trained model works at.

  Args:
    model: a Keras 3 (or tf_keras) model.
    inputs: a batch it reads.
  """
  from tfkd import batch_norm  # pylint: disable=import-outside-toplevel
  batch_norm.reestimate(model, [inputs], batches=1)
