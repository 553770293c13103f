r"""Benchmark of the distillation methods on CIFAR-10, and what distillation costs per step.

  .venv/bin/python -m bench.distill_methods --epochs=20 --out=runs/bench_distill_methods
  .venv/bin/python -m bench.distill_methods --epochs=1 --train_limit=2000 --out=/tmp/kd_small  # a try

Accuracy: a ResNet-8 student trained with the same epochs, schedule, seed and
augmented batches by each method — from scratch, soft targets, soft targets +
FitNets hints, the contrastive loss, and soft targets from two teachers (the
ResNet-20 teacher and a second model, averaged) — then its test accuracy, and
the full-integer int8 TFLite accuracy of the best student on the LiteRT
interpreter. The losses come from the same config keys as the pipeline
(`losses.make_distillation_losses`).

Cost: seconds per training step of each method on the same fixed batches, in
one process, the methods' steps alternating so that background load hits every
method alike; the ratio is a method's median step time over a plain student
step's median: with a live teacher, and with the teachers' logits cached.

Writes distill_methods.{md,json,png} to --out and prints the tables.
"""

import os
import time

from absl import app, flags, logging

import numpy as np
import tensorflow as tf
import tf_keras

from bench import common
from configs import cifar10_resnet
from tfkd import cli, data, from_config, model_files, teacher_cache, training, views
from tflite import convert, files, interpreter

_TEACHER = flags.DEFINE_string("teacher", "runs/cifar10_resnet/teacher/model.keras",
                               "The trained ResNet-20 teacher (`python -m bench.cifar10` makes it).")
_SECOND_TEACHER = flags.DEFINE_string(
    "second_teacher", "runs/cifar10_resnet/scratch/model.keras",
    "Second teacher of the multi-teacher method (any architecture with CIFAR-10's shapes).")
_TEACHER_WEIGHTS = flags.DEFINE_list("teacher_weights", ["1", "1"],
                                     "Weights of the two teachers' logits (normalised).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Epochs of every student (one budget for all).")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", 0, "Use only this many training images (0: all).")
_METHODS = flags.DEFINE_list("methods", ["scratch", "soft", "soft+features", "contrastive",
                                         "multi-teacher"], "Methods to train, from METHODS.")
_TIMING_STEPS = flags.DEFINE_integer("timing_steps", 100, "Timed training steps per method.")
_OUT = flags.DEFINE_string("out", "runs/bench_distill_methods", "Output folder.")

# Each method as `config.distill` overrides; α is `student_loss_weight`. The
# contrastive loss keeps CRD's balance (Tian et al. 2020: CE + 0.8·CRD), i.e.
# α = 0.5 and weight 0.8 here, because its scale is not the soft targets'.
METHODS = {
    "scratch": None,
    "soft": {"method": "soft", "student_loss_weight": 0.1},
    "soft+features": {"method": "soft+features", "student_loss_weight": 0.1},
    "contrastive": {"method": "contrastive", "weights": (0.8,), "student_loss_weight": 0.5},
    "multi-teacher": {"method": "soft", "student_loss_weight": 0.1, "two_teachers": True},
}


def distill_config(config, overrides: dict, teacher_weights=()):
  """`config.distill` with a method's overrides (and the teachers' weights for two teachers)."""
  distill = config.distill.copy_and_resolve_references()
  for key, value in overrides.items():
    if key != "two_teachers":
      distill[key] = value
  if overrides.get("two_teachers"):
    distill.teacher_weights = tuple(teacher_weights)
  return distill


def build_student(config, splits, seed: int) -> tf_keras.Model:
  tf_keras.utils.set_random_seed(seed)   # every method starts from the same weights
  return from_config.model(config.student, splits, "student")


def make_distiller(name, config, student, live_teachers, teacher_weights=()):
  """An uncompiled `Distiller` for a method; `live_teachers=None`: cached logits."""
  overrides = METHODS[name]
  distill = distill_config(config, overrides, teacher_weights)
  if live_teachers is None:  # cached logits are already the weighted ensemble
    distill.teacher_weights = ()
  elif not overrides.get("two_teachers"):
    live_teachers = live_teachers[:1]
  return from_config.distiller(distill, live_teachers, student)


def make_trainer(name, config, splits, teachers, teacher_weights, steps_per_epoch):
  """The compiled model a method trains: the student itself (scratch) or a `Distiller`."""
  student = build_student(config, splits, config.seed)
  optimizer = from_config.optimizer(config.train, steps_per_epoch)
  if METHODS[name] is None:
    student.compile(optimizer=optimizer, metrics=["accuracy"],
                    loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return student, student
  distiller = make_distiller(name, config, student, teachers, teacher_weights)
  distiller.compile(optimizer=optimizer, metrics=["accuracy"])
  return distiller, student


def train_methods(config, splits, teachers, teacher_weights):
  """Trains one student per method; returns a result dict per method and the students."""
  results, students = [], {}
  steps = len(splits.train[1]) // config.train.batch_size
  test_ds = data.eval_dataset(*splits.test, 500)
  for name in _METHODS.value:
    trainer, student = make_trainer(name, config, splits, teachers, teacher_weights, steps)
    train_ds = views.train_dataset(*splits.train, batch_size=config.train.batch_size,
                                   augment=True, seed=config.seed)
    start = time.time()
    trainer.fit(train_ds, epochs=config.train.epochs, verbose=0, steps_per_epoch=steps,
                callbacks=[training.EpochProgress(name, config.train.epochs)])
    seconds = time.time() - start
    student.compile(metrics=["accuracy"])
    _, accuracy = student.evaluate(test_ds, verbose=0)
    overrides = METHODS[name] or {}
    results.append({"name": name, "method": overrides.get("method", "—"),
                    "student_loss_weight": overrides.get("student_loss_weight", 1.0),
                    "weights": list(overrides.get("weights", ())),
                    "teachers": 0 if not overrides else 2 if overrides.get("two_teachers") else 1,
                    "test_accuracy": float(accuracy), "train_seconds": seconds})
    students[name] = student
    logging.info("[%s] test accuracy %.4f (%.0fs)", name, accuracy, seconds)
  return results, students


def int8_accuracy(student, splits, representative_size: int = 500) -> dict:
  """Full-integer int8 conversion of `student`, evaluated on the whole test set on LiteRT."""
  representative = data.evenly_spaced(splits.train[0], representative_size)
  model_bytes = convert.convert(student, "int8", representative)
  return {"accuracy": interpreter.evaluate_accuracy(model_bytes, *splits.test),
          "bytes": len(model_bytes)}


def time_steps(config, splits, teachers, teacher_weights) -> dict:
  """Seconds per training step of each method on the same batches, and ratios to a plain step."""
  batch_size, count = config.train.batch_size, 4
  x = splits.train[0][:batch_size * count].astype(np.float32)
  y = splits.train[1][:batch_size * count]
  one_teacher = teacher_cache.compute_teacher_logits(teachers[:1], x)
  ensemble = teacher_cache.compute_teacher_logits(teachers, x, teacher_weights)
  def batches(logits=None):
    out = []
    for i in range(count):
      rows = slice(i * batch_size, (i + 1) * batch_size)
      features = tf.constant(x[rows]) if logits is None else (tf.constant(x[rows]),
                                                              tf.constant(logits[rows]))
      out.append((features, tf.constant(y[rows])))
    return out

  def distiller(method_name, live_teachers):
    model = make_distiller(method_name, config, build_student(config, splits, 0), live_teachers,
                           teacher_weights)
    model.compile(optimizer=from_config.optimizer(config.train, 100))
    return model

  plain = build_student(config, splits, 0)
  plain.compile(optimizer=from_config.optimizer(config.train, 100),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  variants = {
      "student alone (no distillation)": (plain, batches()),
      "soft, live teacher": (distiller("soft", teachers), batches()),
      "soft, cached teacher logits": (distiller("soft", None), batches(one_teacher)),
      "soft+features, live teacher": (distiller("soft+features", teachers), batches()),
      "contrastive, live teacher": (distiller("contrastive", teachers), batches()),
      "multi-teacher, live teachers": (distiller("multi-teacher", teachers), batches()),
      "multi-teacher, cached logits": (distiller("multi-teacher", None), batches(ensemble)),
  }
  seconds = common.time_variants(variants, _TIMING_STEPS.value, warmup_steps=2)
  plain = float(np.median(seconds[next(iter(variants))]))
  return {name: {"seconds_per_step": s, "median_seconds_per_step": float(np.median(s)),
                 "ratio": float(np.median(s)) / plain}
          for name, s in seconds.items()}


def markdown(results, int8, timing, goals) -> str:
  lines = ["| method | losses (weights) | α | teachers | test accuracy | train time |",
           "|---|---|---:|---:|---:|---:|"]
  for r in results:
    weights = f" ({', '.join(map(str, r['weights']))})" if r["weights"] else ""
    lines.append(f"| {r['name']} | {r['method']}{weights} | {r['student_loss_weight']} | "
                 f"{r['teachers']} | {r['test_accuracy'] * 100:.2f}% | {r['train_seconds']:.0f} s |")
  if int8:
    lines += ["", f"Best student ({int8['method']}) as full-integer int8 TFLite on LiteRT: "
              f"{int8['accuracy'] * 100:.2f}% test accuracy, {int8['bytes']:,} bytes."]
  lines += ["", "| training step | seconds per step (median) | ratio to plain student step | goal |",
            "|---|---:|---:|---:|"]
  for name, t in timing.items():
    goal = goals.get(name)
    lines.append(f"| {name} | {t['median_seconds_per_step']:.4f} | {t['ratio']:.2f}× | "
                 f"{'≤ %.2f×' % goal if goal else '—'} |")
  return "\n".join(lines)


def plot(results, timing, goals, path: str) -> None:
  fig, (left, right) = files.new_figure(1, 2, figsize=(12, 4.5))
  names = [r["name"] for r in results]
  left.barh(names, [r["test_accuracy"] * 100 for r in results], color="tab:blue")
  for i, r in enumerate(results):
    left.annotate(f"{r['test_accuracy'] * 100:.2f}%", (r["test_accuracy"] * 100, i), fontsize=8,
                  xytext=(3, -3), textcoords="offset points")
  left.set_xlim(0, max(r["test_accuracy"] for r in results) * 100 * 1.15)
  left.set_xlabel("test accuracy (%)")
  left.set_title("ResNet-8 student, same epoch budget")
  left.invert_yaxis()
  steps = list(timing)
  right.barh(steps, [timing[s]["ratio"] for s in steps], color="tab:orange")
  for i, s in enumerate(steps):
    if s in goals:
      right.plot([goals[s]] * 2, [i - 0.4, i + 0.4], color="black", linestyle="--")
  right.axvline(1.0, color="grey", linewidth=0.8)
  right.set_xlabel("step time / plain student step (dashed: goal)")
  right.set_title("Training cost, same batches")
  right.invert_yaxis()
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.distill_methods")
  print(common.header(meta))
  unknown = [m for m in _METHODS.value if m not in METHODS]
  if unknown:
    raise app.UsageError(f"Unknown --methods {unknown}: choose from {list(METHODS)}.")
  for path in (_TEACHER.value, _SECOND_TEACHER.value):
    if not os.path.exists(path):
      raise app.UsageError(f"No model at {path}: train the CIFAR-10 run first "
                           "(`python -m bench.cifar10`) or pass --teacher / --second_teacher.")
  config = from_config.with_defaults(cifar10_resnet.get_config())
  config.data.path = _DATA.value
  config.data.train_limit = _TRAIN_LIMIT.value
  config.train.epochs = _EPOCHS.value
  splits = from_config.splits(config.data)
  teachers = [model_files.load_model(p) for p in (_TEACHER.value, _SECOND_TEACHER.value)]
  teacher_weights = [float(w) for w in _TEACHER_WEIGHTS.value]

  timing = time_steps(config, splits, teachers, teacher_weights)
  results, students = train_methods(config, splits, teachers, teacher_weights)
  best = max(results, key=lambda r: r["test_accuracy"])
  int8 = {"method": best["name"], **int8_accuracy(students[best["name"]], splits)}
  goals = {"soft, live teacher": 1.3, "soft, cached teacher logits": 1.05}

  table = markdown(results, int8, timing, goals)
  print(table)
  files.write_atomic(os.path.join(_OUT.value, "distill_methods.md"),
                     common.header(meta) + "\n" + table + "\n")
  plot(results, timing, goals, os.path.join(_OUT.value, "distill_methods.png"))
  files.write_json(os.path.join(_OUT.value, "distill_methods.json"), {
      **meta, "epochs": _EPOCHS.value, "train_examples": int(len(splits.train[1])),
      "test_examples": int(len(splits.test[1])), "batch_size": config.train.batch_size,
      "teachers": [_TEACHER.value, _SECOND_TEACHER.value], "teacher_weights": teacher_weights,
      "methods": results, "int8_best": int8, "timing": timing, "goals": goals,
      "timing_steps": _TIMING_STEPS.value})


if __name__ == "__main__":
  cli.run(main)
