r"""Benchmark of adversarially robust distillation on CIFAR-10: scratch, soft targets and ARD.

  .venv/bin/python -m bench.robust --epochs=20 --seeds=0,1 --out=runs/bench_robust
  .venv/bin/python -m bench.robust --epochs=1 --seeds=0 --train_limit=1000 --teacher_epochs=1 \
      --robust_examples=100 --out=/tmp/robust_try        # a try of the command, not a result

One teacher (--teacher, a trained ResNet-20; if it does not exist and --teacher_epochs > 0,
one is trained here into --out/teacher/) and a ResNet-8 student trained with the same
epochs, schedule and augmented views per seed by each method of --methods:
  scratch  labels alone;
  soft     soft targets (α = 0.1, T = 4, the defaults);
  ard      the same loss with the student on PGD images (`distill.adversarial.method='ard'`:
           ε = 8 px, --train_attack_steps steps of 2 px, docs/distillation.md);
  rslad    RSLAD as in its paper (T = 1, α = 0, β = 5/6), when listed.
Each student (and the teacher) is then measured on the whole test set (clean) and on
--robust_examples test images spread over it, before and after a PGD attack of
--pgd_epsilon pixels, --pgd_steps steps of --pgd_step_size (white-box on the Keras float
model); its full-integer int8 `.tflite` (input normalisation folded, as the pipeline exports)
is measured on LiteRT on the same clean images and on the images crafted on the float
model (transferred). Every student is saved and measured once: a rerun resumes at the
first missing epoch or measurement. Writes robust.{md,json,png} to --out and prints the table.

With --cached_teacher (the default) the teacher labels --epochs epochs of the first seed's
augmented views once (`tfkd.view_cache`, --out/teacher_views/, resumable, refused if made
for another teacher, data or views), and every student of every method and seed trains on
those views (`views.train_dataset`'s `view_seed`) in its own batch order, from its own
initial weights; soft, ard and rslad read the teacher's logits there instead of running it
(ARD's and RSLAD's targets are the teacher's outputs on the clean view, so the cache serves
them too). --nocached_teacher runs the teacher live, each seed on its own views.
"""

import json
import os
import time

import numpy as np
import tf_keras
from absl import app, flags, logging

from bench import common
from configs import cifar10_resnet
from tfkd import (adversarial, cli, data, from_config, model_files, precision, training,
                  view_cache, views)
from tflite import convert, files, interpreter

_TEACHER = flags.DEFINE_string("teacher", "runs/cifar10_resnet/teacher/model.keras",
                               "The trained teacher (`python -m bench.cifar10` makes a ResNet-20).")
_TEACHER_EPOCHS = flags.DEFINE_integer(
    "teacher_epochs", 0, "If --teacher does not exist: train a ResNet-20 for this many epochs into "
    "--out/teacher/ (0: stop with an error instead).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Epochs of every student.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds: weights, views and the attacks' starts.")
_METHODS = flags.DEFINE_list("methods", ["scratch", "soft", "ard"], "Methods, from METHODS.")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", 0, "Use only this many training images (0: all).")
_TRAIN_ATTACK_STEPS = flags.DEFINE_integer("train_attack_steps", 10,
                                           "PGD steps per training batch of ard and rslad.")
_ROBUST_EXAMPLES = flags.DEFINE_integer("robust_examples", 1000,
                                        "Test images attacked, spread over the test set (0: all).")
_PGD_EPSILON = flags.DEFINE_float("pgd_epsilon", 8.0, "Evaluation PGD radius, pixels (0-255).")
_PGD_STEP_SIZE = flags.DEFINE_float("pgd_step_size", 2.0, "Evaluation PGD step, pixels.")
_PGD_STEPS = flags.DEFINE_integer("pgd_steps", 10, "Evaluation PGD steps.")
_OUT = flags.DEFINE_string("out", "runs/bench_robust", "Output folder.")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                                "train.precision of every model trained here (tfkd.precision).")
_CACHED_TEACHER = flags.DEFINE_bool("cached_teacher", True, "The teacher labels the views once "
                                    "instead of running every step.")

# Each method as `config.distill` overrides (None: trained on labels alone).
METHODS = {
    "scratch": None,
    "soft": {},
    "ard": {"adversarial.method": "ard"},
    "rslad": {"adversarial.method": "rslad", "temperature": 1.0, "student_loss_weight": 0.0},
}


def run_config():
  config = from_config.with_defaults(cifar10_resnet.get_config())
  config.data.path = _DATA.value
  config.data.train_limit = _TRAIN_LIMIT.value
  config.train.epochs, config.train.precision = _EPOCHS.value, _PRECISION.value
  config.distill.adversarial.steps = _TRAIN_ATTACK_STEPS.value
  return config


def distill_config(config, overrides: dict):
  distill = config.distill.copy_and_resolve_references()
  for key, value in overrides.items():
    node, *rest = key.split(".")
    if rest:
      distill[node][rest[0]] = value
    else:
      distill[key] = value
  return distill


def train(config, splits, name: str, model_config, seed: int, teacher=None,
          overrides=None, epochs: int = 0, teacher_logits=None, view_seed=None) -> str:
  """Trains one model into --out/<name>/model.keras (resumably) unless it is there; its path.

  `teacher_logits`: the cached views' logits [E, N, classes], read instead of running
  `teacher` when given; `view_seed`: the key of the views (None: `seed`).
  """
  folder = os.path.join(_OUT.value, name)
  path = os.path.join(folder, "model.keras")
  if os.path.exists(path):
    return path
  epochs = epochs or config.train.epochs
  train_config = config.train.copy_and_resolve_references()
  train_config.epochs = epochs
  steps = len(splits.train[1]) // train_config.batch_size
  tf_keras.utils.set_random_seed(seed)
  student = precision.with_policy(from_config.model(model_config, splits, model_config.model),
                                 config.train.precision)
  optimizer = from_config.optimizer(train_config, steps)
  if overrides is None:
    trainer = student
    trainer.compile(optimizer=optimizer, metrics=["accuracy"],
                    loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  else:
    trainer = from_config.distiller(distill_config(config, overrides),
                                    [] if teacher_logits is not None else [teacher], student)
    trainer.compile(optimizer=optimizer, metrics=["accuracy"])
  train_ds = views.train_dataset(*splits.train, batch_size=train_config.batch_size, augment=True,
                                 seed=seed, start_epoch=training.resume_epoch(folder),
                                 teacher_logits=None if overrides is None else teacher_logits,
                                 view_seed=view_seed)
  start = time.time()
  training.fit_resumable(trainer, train_ds, None, epochs, folder, steps_per_epoch=steps)
  training.save_final_model(student, path, folder)
  files.write_json(os.path.join(folder, "train.json"), {"seconds": time.time() - start,
                                                        "epochs": epochs, "steps_per_epoch": steps})
  return path


def measure(config, splits, path: str, out: str, seed: int, int8: bool = True) -> dict:
  """Clean and PGD accuracy of a saved model, float (white-box) and int8 (transferred), cached in
  the JSON file `out`."""
  if os.path.exists(out):
    with open(out) as f:
      return json.load(f)
  model = model_files.load_model(path)
  (test_x, test_y), count = splits.test, _ROBUST_EXAMPLES.value or len(splits.test[1])
  x, y = data.evenly_spaced(test_x, count), data.evenly_spaced(test_y, count)
  start = time.time()
  x_adv = adversarial.pgd_examples(model, x, y, _PGD_EPSILON.value, _PGD_STEP_SIZE.value,
                                   _PGD_STEPS.value, seed=seed)
  attack_seconds = time.time() - start
  accuracy = lambda scores, labels: float(np.mean(np.argmax(scores, axis=-1) == labels))
  keras = lambda images: model.predict(images, batch_size=500, verbose=0)
  result = {"float": {"test": accuracy(keras(test_x), test_y), "clean": accuracy(keras(x), y),
                      "pgd": accuracy(keras(x_adv), y)},
            "attack_seconds": attack_seconds, "examples": int(count)}
  if int8:
    exported = from_config.for_export(config.export, model)
    tflite = convert.convert(exported, "int8", data.evenly_spaced(splits.train[0], 500))
    lite = lambda images: interpreter.predict(tflite, images, 500)
    result["int8"] = {"test": accuracy(lite(test_x), test_y), "clean": accuracy(lite(x), y),
                      "pgd_transferred": accuracy(lite(x_adv), y), "bytes": len(tflite)}
  files.write_json(out, result)
  return result


def markdown(teacher: dict, results: dict, seeds) -> str:
  examples = teacher["examples"]
  lines = [f"| model | seeds | test accuracy | clean ({examples} images) | PGD | int8 test | "
           "int8 clean | int8 PGD (transferred) |", "|---|---:|---:|---:|---:|---:|---:|---:|",
           f"| teacher | — | {common.seed_cell([teacher['float']['test']])} | "
           f"{common.seed_cell([teacher['float']['clean']])} | {common.seed_cell([teacher['float']['pgd']])} | — | — | — |"]
  for method, per_seed in results.items():
    col = lambda kind, key: common.seed_cell([r[kind][key] for r in per_seed])
    lines.append(f"| {method} | {len(per_seed)} | {col('float', 'test')} | {col('float', 'clean')} | "
                 f"{col('float', 'pgd')} | {col('int8', 'test')} | {col('int8', 'clean')} | "
                 f"{col('int8', 'pgd_transferred')} |")
  lines += ["", f"PGD: L∞ ε = {_PGD_EPSILON.value:g} px of 0–255 ({_PGD_EPSILON.value / 255:.4f}), "
            f"{_PGD_STEPS.value} steps of {_PGD_STEP_SIZE.value:g} px, random start (seed "
            f"{', '.join(map(str, seeds))}), CE on the labels, on {examples} test images spread "
            "over the test set; white-box on the Keras float model, its images fed to the int8 "
            "`.tflite` (transferred). Cells: mean over seeds (range)."]
  return "\n".join(lines)


# The plot's bars: (runtime, measurement, label).
PLOT_BARS = (("float", "clean", "Keras float, clean"), ("float", "pgd", "Keras float, PGD"),
             ("int8", "clean", "int8, clean"), ("int8", "pgd_transferred", "int8, PGD (transferred)"))


def plot(teacher: dict, results: dict, path: str) -> None:
  """Clean and PGD accuracy of each method's students, float and int8 (bars: mean, dots: seeds)."""
  fig, axis = files.new_figure(figsize=(8, 4))
  width = 0.8 / len(PLOT_BARS)
  colours = ("tab:blue", "lightsteelblue", "tab:orange", "navajowhite")
  for b, ((kind, key, label), colour) in enumerate(zip(PLOT_BARS, colours)):
    for i, per_seed in enumerate(results.values()):
      values = [r[kind][key] * 100 for r in per_seed]
      x = i + (b - (len(PLOT_BARS) - 1) / 2) * width
      axis.bar(x, np.mean(values), width=width, color=colour, label=label if i == 0 else None)
      axis.scatter([x] * len(values), values, color="black", s=8, zorder=3)
  for key, style in (("clean", "-"), ("pgd", "--")):
    axis.axhline(teacher["float"][key] * 100, color="tab:red", linestyle=style, linewidth=1,
                 label=f"teacher, {'clean' if key == 'clean' else 'PGD'}")
  axis.set(xticks=range(len(results)), xticklabels=list(results), ylabel="accuracy (%)",
           title=f"{teacher['examples']} test images, PGD ε = {_PGD_EPSILON.value:g} px, "
                 f"{_PGD_STEPS.value} steps (dots: seeds)")
  axis.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.robust")
  print(common.header(meta))
  unknown = [m for m in _METHODS.value if m not in METHODS]
  if unknown:
    raise app.UsageError(f"Unknown --methods {unknown}: choose from {list(METHODS)}.")
  config = run_config()
  splits = from_config.splits(config.data)
  seeds = [int(s) for s in _SEEDS.value]
  teacher_path = _TEACHER.value
  if not os.path.exists(teacher_path):
    if not _TEACHER_EPOCHS.value:
      raise app.UsageError(f"No teacher at {teacher_path}: pass --teacher, train one "
                           "(`python -m bench.cifar10`), or set --teacher_epochs to train it here.")
    teacher_path = train(config, splits, "teacher", config.teacher, config.seed,
                         epochs=_TEACHER_EPOCHS.value)
  teacher = model_files.load_model(teacher_path)
  teacher_result = measure(config, splits, teacher_path,
                           os.path.join(_OUT.value, "teacher", "measured.json"), config.seed,
                           int8=False)
  view_seed, logits = None, None
  if _CACHED_TEACHER.value:
    view_seed = seeds[0]
    cache_dir = os.path.join(_OUT.value, "teacher_views")
    fingerprint = view_cache.make_fingerprint([teacher_path], None, *splits.train, augment=True,
                                              seed=view_seed, epochs=_EPOCHS.value)
    view_cache.build(cache_dir, fingerprint, [teacher], splits.train[0])
    logits = view_cache.load(cache_dir, fingerprint, splits.num_classes)
  results = {}
  for method in _METHODS.value:
    results[method] = []
    for seed in seeds:
      path = train(config, splits, f"{method}_seed{seed}", config.student, seed, teacher,
                   METHODS[method], teacher_logits=logits, view_seed=view_seed)
      results[method].append(measure(config, splits, path,
                                     os.path.join(os.path.dirname(path), "measured.json"), seed))
      logging.info("[%s seed %d] %s", method, seed, results[method][-1])
  table = markdown(teacher_result, results, seeds)
  print(table)
  files.write_atomic(os.path.join(_OUT.value, "robust.md"), common.header(meta) + "\n" + table + "\n")
  files.write_json(os.path.join(_OUT.value, "robust.json"), {
      **meta, "teacher": teacher_path, "epochs": _EPOCHS.value, "seeds": seeds,
      "train_examples": int(len(splits.train[1])), "test_examples": int(len(splits.test[1])),
      "train_attack_steps": _TRAIN_ATTACK_STEPS.value, "cached_teacher": _CACHED_TEACHER.value,
      "pgd": {"epsilon": _PGD_EPSILON.value, "step_size": _PGD_STEP_SIZE.value,
              "steps": _PGD_STEPS.value}, "teacher_result": teacher_result, "results": results})
  plot(teacher_result, results, os.path.join(_OUT.value, "robust.png"))


if __name__ == "__main__":
  cli.run(main)
