r"""What a distillation step costs: against a plain student step and against Keras 3's Distiller.

  .venv/bin/python -m bench.distill_speed --out=runs/bench_distill_speed
  .venv/bin/python -m bench.distill_speed --steps=3 --train_limit=512 --out=/tmp/ds_smoke  # a try

Times one training step of each variant, as `fit` runs it (the model's
`train_function` on a `tf.data` iterator, `bench.common.step_runner`; its logs
are read as numbers, so the step has finished), in one process, on the same few
real CIFAR-10 training batches (the same tensors):
  plain         tfkd's ResNet-8 alone, SGD and sparse cross-entropy on logits;
  tfkd_live     `tfkd.Distiller` with a live ResNet-20 teacher, soft targets (T=4, α=0.1);
  tfkd_cached   the same with the teacher's logits computed once beforehand
                (batches `((x, logits), y)`, teacher=None);
  keras3_auto   Keras 3's `keras.distillation.Distiller`, same networks built in
                Keras 3 (`build_model(..., keras_module=keras)`) from the same
                initial weights, same loss and optimizer settings, compiled with
                Keras 3's default `jit_compile="auto"`;
  keras3_nojit  the same with `jit_compile=False`;
  tfkd_cached_views  the Distiller on augmented views of those images (`tfkd.views`)
                with the teacher's logits of exactly those views, as a run with the
                teacher-logit cache trains (`extra_variants`);
  *_bf16        plain, tfkd_live and tfkd_cached_views with the student in mixed
                bfloat16 (`train.precision`, `tfkd.precision`; the teacher stays float32).
The report says what "auto" resolved to (Keras 3 turns XLA off on CPU-only
machines). Warm-up steps (tracing, compilation) come first and are not timed;
then the variants' steps alternate (A B C … A B C …) so background load hits
every variant alike, and medians ignore its bursts. Teachers are untrained:
weights do not change the cost of a step.

Goals: tfkd_cached(_views) ≤ 1.05× plain; tfkd_live ≤ 1.0× Keras 3's Distiller.
Then, with the input pipeline included, short `fit`s fed by `tfkd.views.train_dataset`
(plain student against the Distiller with cached logits), and the one-time cost of
labelling an epoch of views, in plain-student epochs.

Writes distill_speed.{md,json,png} to --out and prints the tables.
"""

import dataclasses
import hashlib
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from absl import app, flags, logging

import numpy as np
import tensorflow as tf
import tf_keras

from bench import common
from configs import cifar10_resnet
import tfkd
from tfkd import cli, from_config, precision, teacher_cache, teacher_compression, training, views
from tflite import files
# Keras 3 after tfkd: tfkd must pick Keras 2 for tf.keras before anything touches it.
import keras  # pylint: disable=wrong-import-order

_OUT = flags.DEFINE_string("out", "runs/bench_distill_speed", "Output folder.")
_STEPS = flags.DEFINE_integer("steps", 100, "Timed training steps per variant.")
_WARMUP_STEPS = flags.DEFINE_integer("warmup_steps", 3,
                                     "Untimed steps per variant first (tracing, compilation).")
_TRAIN_ON_BATCH = flags.DEFINE_bool(
    "train_on_batch", False, "Time `train_on_batch` calls instead of the step `fit` runs "
    "(tf_keras' builds a one-batch tf.data pipeline on every call; Keras 3's does not).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Examples per training step.")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_PIPELINE_STEPS = flags.DEFINE_integer(
    "pipeline_steps", 25, "Steps of each short fit timed with the input pipeline included.")
_PIPELINE_ROUNDS = flags.DEFINE_integer(
    "pipeline_rounds", 8, "Alternating short fits per variant (step times here come in bursts).")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", 0,
                                    "Training images to keep (0: batch_size × 8).")

BATCHES = 4   # distinct batches, cycled: a handful, so every variant sees the same data
TEMPERATURE = 4.0
STUDENT_LOSS_WEIGHT = 0.1
PLAIN = "plain"
LABELS = {
    PLAIN: "plain student step (ResNet-8)",
    "tfkd_live": "tfkd Distiller, live ResNet-20 teacher",
    "tfkd_cached": "tfkd Distiller, cached teacher logits",
    "keras3_auto": "Keras 3 Distiller, default compile (jit_compile='auto')",
    "keras3_nojit": "Keras 3 Distiller, jit_compile=False",
    "tfkd_cached_views": "tfkd Distiller, augmented views + their cached logits",
    "plain_bf16": "plain student step, mixed bfloat16",
    "tfkd_live_bf16": "tfkd Distiller, live float32 teacher, mixed bfloat16 student",
    "tfkd_cached_views_bf16": "tfkd Distiller, augmented views + cached logits, mixed bfloat16",
}
BF16 = "mixed_bfloat16"
# (numerator, denominator, goal or None): ratios of median seconds per step.
RATIOS = [
    ("tfkd_live", PLAIN, None),
    ("tfkd_cached", PLAIN, 1.05),
    ("tfkd_cached_views", PLAIN, 1.05),
    ("keras3_auto", PLAIN, None),
    ("keras3_nojit", PLAIN, None),
    ("tfkd_live", "keras3_auto", 1.0),
    ("tfkd_live", "keras3_nojit", 1.0),
    ("plain_bf16", PLAIN, None),
    ("tfkd_live_bf16", "tfkd_live", None),
    ("tfkd_cached_views_bf16", "tfkd_cached_views", None),
]

Batch = Tuple[Any, Any]              # (features, labels); features: x or (x, teacher_logits)
Variant = Tuple[Any, List[Batch]]    # a compiled model (tf_keras or Keras 3) and its batches


@dataclasses.dataclass
class BenchInputs:
  """What every variant is built from; also what `extra_variants` gets to build more.

  Attributes:
    images: the batches' images, float32 tf tensors [batch_size, 32, 32, 3].
    labels: their labels, int32 tf tensors [batch_size].
    teacher_logits: the tf_keras teacher's logits of each batch, computed once.
    teacher: the tf_keras ResNet-20 teacher (frozen inside Distillers).
    make_student: a fresh tf_keras ResNet-8, every call the same initial weights.
    make_optimizer: a fresh tf_keras SGD with the benchmark's settings.
    normalization: (mean, variance) per channel of the training images.
  """
  images: List[tf.Tensor]
  labels: List[tf.Tensor]
  teacher_logits: List[tf.Tensor]
  teacher: tf_keras.Model
  make_student: Callable[[], tf_keras.Model]
  make_optimizer: Callable[[], tf_keras.optimizers.Optimizer]
  normalization: Tuple[list, list]


def load_inputs(config, batch_size: int) -> BenchInputs:
  """Real CIFAR-10 training batches through tfkd's loader, the teacher and its cached logits.

  Args:
    config: a full CIFAR-10 config (`from_config.with_defaults`); reads `data`, `seed`, `train`.
    batch_size: examples per batch; up to `BATCHES` full batches are kept.

  Returns:
    A `BenchInputs`.
  """
  splits = from_config.splits(config.data)
  count = min(BATCHES, len(splits.train[1]) // batch_size)
  if not count:
    raise app.UsageError(f"{len(splits.train[1])} training images make no batch of "
                         f"{batch_size}: raise --train_limit or lower --batch_size.")
  x = splits.train[0][:count * batch_size].astype(np.float32)
  y = splits.train[1][:count * batch_size]
  normalization = splits.channel_stats()
  tf_keras.utils.set_random_seed(config.seed)
  shape = tuple(splits.input_shape)
  teacher = tfkd.build_model("resnet20", splits.num_classes, shape, normalization)
  student_weights = tfkd.build_model("resnet8", splits.num_classes, shape,
                                     normalization).get_weights()

  def make_student():
    student = tfkd.build_model("resnet8", splits.num_classes, shape, normalization)
    student.set_weights(student_weights)
    return student

  logits = teacher_cache.compute_teacher_logits([teacher], x)
  rows = [slice(i * batch_size, (i + 1) * batch_size) for i in range(count)]
  return BenchInputs(
      images=[tf.constant(x[r]) for r in rows], labels=[tf.constant(y[r]) for r in rows],
      teacher_logits=[tf.constant(logits[r]) for r in rows], teacher=teacher,
      make_student=make_student, normalization=normalization,
      make_optimizer=lambda: training.make_optimizer(
          "sgd", config.train.learning_rate, config.train.momentum, config.train.weight_decay))


def keras3_sgd(train_config) -> "keras.optimizers.Optimizer":
  """Keras 3's twin of the tf_keras variants' `training.make_optimizer("sgd", rate, ...)`.

  Args:
    train_config: `config.train`: `learning_rate` (constant here), `momentum`, `weight_decay`.

  Returns:
    A new Keras 3 SGD with Nesterov momentum and decoupled weight decay off BatchNorm and biases.
  """
  optimizer = keras.optimizers.SGD(train_config.learning_rate, momentum=train_config.momentum,
                                   nesterov=True, weight_decay=train_config.weight_decay)
  # Keras 3 matches these against a variable's short name (gamma, beta, bias): the same
  # variables tf_keras excludes by their full names.
  optimizer.exclude_from_weight_decay(var_names=["_bn", "bias", "gamma", "beta"])
  return optimizer


def keras3_twin(tf_keras_model: tf_keras.Model, name: str, normalization) -> "keras.Model":
  """The same network (`name`) built in Keras 3, holding a copy of the tf_keras model's weights."""
  twin = tfkd.build_model(name, tf_keras_model.output_shape[-1], tf_keras_model.input_shape[1:],
                          normalization, keras_module=keras)
  twin.set_weights(tf_keras_model.get_weights())
  return twin


def builtin_variants(inputs: BenchInputs, train_config) -> Dict[str, Variant]:
  """The five variants of the module docstring, compiled, each with its batches.

  The students start from the same weights and the Keras 3 teacher is a copy of the
  tf_keras one; Keras 3 and tf_keras objects (models, losses, optimizers) are never shared.
  """
  plain_batches = list(zip(inputs.images, inputs.labels))
  cached_batches = [((x, logits), y) for x, logits, y in
                    zip(inputs.images, inputs.teacher_logits, inputs.labels)]
  plain = inputs.make_student()
  plain.compile(optimizer=inputs.make_optimizer(),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  variants = {PLAIN: (plain, plain_batches)}
  for name, teacher, batches in (("tfkd_live", inputs.teacher, plain_batches),
                                 ("tfkd_cached", None, cached_batches)):
    distiller = tfkd.Distiller(teacher, inputs.make_student(), tfkd.LogitsDistillation(TEMPERATURE),
                               student_loss_weight=STUDENT_LOSS_WEIGHT)
    distiller.compile(optimizer=inputs.make_optimizer())
    variants[name] = (distiller, batches)
  keras3_teacher = keras3_twin(inputs.teacher, "resnet20", inputs.normalization)
  for name, compile_kwargs in (("keras3_auto", {}), ("keras3_nojit", {"jit_compile": False})):
    distiller = keras.distillation.Distiller(
        teacher=keras3_teacher,
        student=keras3_twin(inputs.make_student(), "resnet8", inputs.normalization),
        distillation_losses=keras.distillation.LogitsDistillation(temperature=TEMPERATURE),
        student_loss_weight=STUDENT_LOSS_WEIGHT)
    distiller.compile(optimizer=keras3_sgd(train_config),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      **compile_kwargs)
    variants[name] = (distiller, plain_batches)
  return variants


# ─── Extension point ─────────────────────────────────────────────────────────────────
def cached_view_logits(inputs: BenchInputs, seed: int = 0, epochs: int = 1):
  """The bench images, and the teacher's logits of `epochs` epochs of their augmented views.

  Computed as the 'teacher_views' stage does (`tfkd.view_cache`): every view of
  an epoch in index order, labelled in large inference batches.

  Returns:
    (images uint8-range float32 [N, 32, 32, 3], labels [N], logits [epochs, N, classes], seconds).
  """
  x = np.concatenate([t.numpy() for t in inputs.images])
  y = np.concatenate([t.numpy() for t in inputs.labels])
  predict = teacher_compression.inference_function(inputs.teacher)
  predict(next(views.epoch_views(x, seed, 0, augment=True)))  # traced before the clock starts
  start = time.perf_counter()
  logits = np.stack([np.concatenate([predict(v) for v in
                                     views.epoch_views(x, seed, epoch, augment=True)])
                     for epoch in range(epochs)])
  return x, y, logits, time.perf_counter() - start


def extra_variants(inputs: BenchInputs, train_config) -> Dict[str, Variant]:
  """More variants to time beside the built-in ones, `{name: (compiled model, batches)}`.

  "tfkd_cached_views": the distillation step of a run with the teacher-logit cache:
  augmented views (`tfkd.views`) with the cached logits of exactly those views.
  Its batches are views of the built-in images, not the images themselves.
  "*_bf16": plain, live and cached-views steps with the student in mixed bfloat16.
  """
  del train_config
  x, y, logits, _ = cached_view_logits(inputs)
  dataset = views.train_dataset(x, y, len(inputs.labels[0]), augment=True, teacher_logits=logits)
  view_batches = [((features, batch_logits), labels)
                  for (features, batch_logits), labels in dataset.take(len(inputs.images))]

  def distiller(teacher, policy):
    model = tfkd.Distiller(teacher, precision.with_policy(inputs.make_student(), policy),
                           tfkd.LogitsDistillation(TEMPERATURE),
                           student_loss_weight=STUDENT_LOSS_WEIGHT)
    model.compile(optimizer=inputs.make_optimizer())
    return model

  plain = precision.with_policy(inputs.make_student(), BF16)
  plain.compile(optimizer=inputs.make_optimizer(),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return {"tfkd_cached_views": (distiller(None, "float32"), view_batches),
          "plain_bf16": (plain, list(zip(inputs.images, inputs.labels))),
          "tfkd_live_bf16": (distiller(inputs.teacher, BF16),
                             list(zip(inputs.images, inputs.labels))),
          "tfkd_cached_views_bf16": (distiller(None, BF16), view_batches)}


def pipeline_seconds_per_step(inputs: BenchInputs, steps: int, rounds: int = 3) -> dict:
  """Seconds per step of `fit` fed by `tfkd.views.train_dataset`, input pipeline included.

  A plain student on augmented views against the Distiller on augmented views with
  their cached logits; short fits alternate so background load hits both alike.
  """
  x, y, logits, _ = cached_view_logits(inputs)
  batch_size = len(inputs.labels[0])
  plain = inputs.make_student()
  plain.compile(optimizer=inputs.make_optimizer(),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  cached = tfkd.Distiller(None, inputs.make_student(), tfkd.LogitsDistillation(TEMPERATURE),
                          student_loss_weight=STUDENT_LOSS_WEIGHT)
  cached.compile(optimizer=inputs.make_optimizer())
  runs = {"plain student, augmented views": (plain, views.train_dataset(x, y, batch_size)),
          "distiller, augmented views + cached logits":
              (cached, views.train_dataset(x, y, batch_size, teacher_logits=logits))}
  seconds = {name: [] for name in runs}
  for round_index in range(rounds + 1):   # round 0 traces and warms up
    for name, (model, dataset) in runs.items():
      start = time.perf_counter()
      model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
      if round_index:
        seconds[name].append((time.perf_counter() - start) / steps)
  result = {name: float(np.median(s)) for name, s in seconds.items()}
  result["ratio"] = result["distiller, augmented views + cached logits"] / result[
      "plain student, augmented views"]
  return result


def cache_cost(inputs: BenchInputs, plain_step_seconds: float) -> dict:
  """What labelling one epoch of views costs, in epochs of plain student training."""
  x, _, _, seconds = cached_view_logits(inputs, epochs=2)
  per_epoch = seconds / 2
  student_epoch = plain_step_seconds * len(x) / len(inputs.labels[0])
  return {"views_per_epoch": int(len(x)), "seconds_per_cached_epoch": per_epoch,
          "student_epoch_seconds": student_epoch,
          "cached_epoch_in_student_epochs": per_epoch / student_epoch}


def with_extra_variants(variants: Mapping[str, Variant],
                        extra: Optional[Mapping[str, Variant]]) -> Dict[str, Variant]:
  """The built-in variants followed by `extra` ones; refuses a clashing or empty variant."""
  merged = dict(variants)
  for name, (model, batches) in (extra or {}).items():
    if name in merged:
      raise ValueError(f"Extra variant {name!r} clashes with a built-in one: rename it.")
    if not batches:
      raise ValueError(f"Extra variant {name!r} has no batches.")
    merged[name] = (model, list(batches))
  return merged
# ─────────────────────────────────────────────────────────────────────────────────────


def shares_batches(batches: List[Batch], inputs: BenchInputs) -> bool:
  """Whether `batches` are the benchmark's own image and label tensors, in order."""
  images = [f[0] if isinstance(f, (tuple, list)) else f for f, _ in batches]
  return (len(batches) == len(inputs.images)
          and all(a is b for a, b in zip(images, inputs.images))
          and all(y is b for (_, y), b in zip(batches, inputs.labels)))


def summarize(variants: Mapping[str, Variant], seconds: Mapping[str, List[float]],
              inputs: BenchInputs) -> Tuple[Dict[str, dict], List[dict]]:
  """Per-variant statistics and the ratios of median step times, with their goals.

  Args:
    variants: what was timed, {name: (model, batches)}.
    seconds: `time_variants`' result.
    inputs: the built-in batches, to tell which variants trained on them.

  Returns:
    ({name: statistics}, [one dict per ratio in `RATIOS`, then each extra variant / plain]).
  """
  timing = {}
  for name, (model, batches) in variants.items():
    s = np.asarray(seconds[name])
    timing[name] = {
        "label": LABELS.get(name, name), "keras": "3" if isinstance(model, keras.Model) else "2",
        # What the step ran with: Keras 3 resolves "auto" at compile; tf_keras' None means off.
        "jit_compile": bool(model.jit_compile),
        "shares_batches": shares_batches(batches, inputs),
        "median_seconds_per_step": float(np.median(s)),
        "p90_seconds_per_step": float(np.percentile(s, 90)), "seconds_per_step": s.tolist()}
  ratios = []
  extras = [(name, PLAIN, None) for name in variants if name not in LABELS]
  for numerator, denominator, goal in RATIOS + extras:
    value = (timing[numerator]["median_seconds_per_step"]
             / timing[denominator]["median_seconds_per_step"])
    ratios.append({"numerator": numerator, "denominator": denominator, "ratio": value,
                   "goal": goal, "met": None if goal is None else value <= goal})
  return timing, ratios


def ratio_name(r: dict) -> str:
  return f"{r['numerator']} / {r['denominator']}"


def markdown(timing: Dict[str, dict], ratios: List[dict]) -> str:
  plain = timing[PLAIN]["median_seconds_per_step"]
  lines = ["| variant | Keras | XLA (jit_compile) | same batches | median s/step | p90 s/step "
           "| ratio to plain |", "|---|---|---|---|---:|---:|---:|"]
  for name, t in timing.items():
    lines.append(f"| {name}: {t['label']} | {t['keras']} | {t['jit_compile']} | "
                 f"{'yes' if t['shares_batches'] else 'no'} | {t['median_seconds_per_step']:.4f} "
                 f"| {t['p90_seconds_per_step']:.4f} | "
                 f"{t['median_seconds_per_step'] / plain:.2f}× |")
  lines += ["", "| ratio of median step times | value | goal | met |", "|---|---:|---:|---|"]
  for r in ratios:
    goal = "—" if r["goal"] is None else f"≤ {r['goal']:.2f}×"
    met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
    lines.append(f"| {ratio_name(r)} | {r['ratio']:.2f}× | {goal} | {met} |")
  return "\n".join(lines)


def markdown_pipeline(pipeline: dict, cost: dict) -> str:
  """The input-pipeline-included step times and the one-time cost of the cache."""
  lines = ["| `fit` fed by `tfkd.views.train_dataset` (input pipeline included) | s/step |",
           "|---|---:|"]
  lines += [f"| {name} | {value:.4f} |" for name, value in pipeline.items() if name != "ratio"]
  lines += [f"| ratio | {pipeline['ratio']:.2f}× (goal ≤ 1.05×) |", "",
            f"One-time cost of the cache: one epoch of {cost['views_per_epoch']:,} views labelled in "
            f"{cost['seconds_per_cached_epoch']:.2f} s = **{cost['cached_epoch_in_student_epochs']:.2f} "
            f"plain student epochs** per cached epoch (a student epoch of those images: "
            f"{cost['student_epoch_seconds']:.2f} s)."]
  return "\n".join(lines)


def plot(ratios: List[dict], path: str) -> None:
  """Horizontal bars of the ratios, each goal a dashed line on its bar."""
  fig, axis = files.new_figure(figsize=(8, 0.5 * len(ratios) + 1.5))
  names = [ratio_name(r) for r in ratios]
  colors = ["tab:green" if r["numerator"].endswith("_bf16") else
            "tab:orange" if r["denominator"].startswith("keras3") else "tab:blue" for r in ratios]
  axis.barh(names, [r["ratio"] for r in ratios], color=colors)
  for i, r in enumerate(ratios):
    axis.annotate(f"{r['ratio']:.2f}×", (r["ratio"], i), fontsize=8, xytext=(3, -3),
                  textcoords="offset points")
    if r["goal"] is not None:
      axis.plot([r["goal"]] * 2, [i - 0.45, i + 0.45], color="black", linestyle="--", zorder=3)
  axis.axvline(1.0, color="grey", linewidth=0.8)
  axis.set_xlim(0, max(max(r["ratio"] for r in ratios), 1.05) * 1.2)
  axis.set_xlabel("ratio of median seconds per training step (dashed: goal)")
  axis.set_title("Step cost on the same batches (blue: over a plain step;\n"
                 "orange: over Keras 3's Distiller; green: bfloat16 over float32)", fontsize=10)
  axis.invert_yaxis()
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.distill_speed")
  print(common.header(meta))
  batch_size = _BATCH_SIZE.value
  config = from_config.with_defaults(cifar10_resnet.get_config())
  config.data.path = _DATA.value
  # train_limit keeps only the first N images after the split; the whole folder is decoded.
  config.data.train_limit = _TRAIN_LIMIT.value or batch_size * 8
  config.train.batch_size = batch_size
  inputs = load_inputs(config, batch_size)
  variants = with_extra_variants(builtin_variants(inputs, config.train),
                                 extra_variants(inputs, config.train))
  logging.info("Timing %s: %d warm-up + %d timed steps each, %d batches of %d.",
               list(variants), _WARMUP_STEPS.value, _STEPS.value, len(inputs.images), batch_size)
  seconds = common.time_variants(variants, _STEPS.value, _WARMUP_STEPS.value,
                                 _TRAIN_ON_BATCH.value)
  timing, ratios = summarize(variants, seconds, inputs)
  pipeline = pipeline_seconds_per_step(inputs, _PIPELINE_STEPS.value, _PIPELINE_ROUNDS.value)
  cost = cache_cost(inputs, timing[PLAIN]["median_seconds_per_step"])

  table = markdown(timing, ratios) + "\n\n" + markdown_pipeline(pipeline, cost)
  print(table)
  files.write_atomic(os.path.join(_OUT.value, "distill_speed.md"),
                     common.header(meta) + "\n" + table + "\n")
  plot(ratios, os.path.join(_OUT.value, "distill_speed.png"))
  digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in inputs.images + inputs.labels))
  files.write_json(os.path.join(_OUT.value, "distill_speed.json"), {
      **meta, "tf_keras": tf_keras.__version__, "keras": keras.__version__,
      "batch_size": batch_size, "batches": len(inputs.images), "batches_sha256": digest.hexdigest(),
      "steps": _STEPS.value, "warmup_steps": _WARMUP_STEPS.value,
      "timed_call": "train_on_batch" if _TRAIN_ON_BATCH.value else "train_function",
      "temperature": TEMPERATURE, "student_loss_weight": STUDENT_LOSS_WEIGHT,
      "optimizer": {"name": "sgd", "nesterov": True, "learning_rate": config.train.learning_rate,
                    "momentum": config.train.momentum,
                    "weight_decay": config.train.weight_decay},
      "timing": timing, "ratios": ratios, "pipeline": pipeline, "cache_cost": cost})


if __name__ == "__main__":
  cli.run(main)
