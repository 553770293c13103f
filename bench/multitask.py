r"""Benchmark of multi-task distillation on CIFAR-10: one two-head student against two single-task
students of the same total size.

  .venv/bin/python -m bench.multitask --teacher_a=runs/cifar10_e80/teacher/model.keras \
      --epochs=20 --seeds=0,1 --out=runs/bench_multitask
  .venv/bin/python -m bench.multitask --teacher_a=... --teacher_epochs=1 --epochs=1 --seeds=0 \
      --train_limit=500 --test_limit=200 --micro_examples=20 --out=/tmp/mt_try   # a try, not a result

Task A is CIFAR-10's 10 classes, task B the 4-way grouping of configs/cifar10_multitask.py
(vehicles on land, other vehicles, mammals, other animals). Teachers: --teacher_a (a trained
ResNet-20 on task A) and --teacher_b (on task B); a missing one is trained here into
--out/teacher_{a,b}/ for --teacher_epochs (0: stop with an error). Per seed, with the same
epochs, schedule and augmented views (`distill.temperature`, `student_loss_weight` defaults):
  multitask  a ResNet-8 (16, 32, 64) with two heads (`tfkd.multitask.two_head_model`), head A
             taught by teacher A and head B by teacher B (`MultiTaskDistiller`, λ = 1, 1);
  single     two ResNet-8s of --single_filters, together about the multi-task student's size:
             one distilled from teacher A on task A, one from teacher B on task B (`Distiller`).
Each model is measured float (Keras, whole test set), int8 on LiteRT (whole test set, raw-pixel
int8 input, normalisation folded as the pipeline exports) and int8 on TFLite Micro
(--micro_examples test images spread over the test set); the multi-task student is one `.tflite`
file with two outputs, read by name (`tflite.multi_output`). Every model is saved and measured
once: a rerun resumes. Writes multitask.{md,json,png} to --out and prints the table.

With --cached_teacher (the default) each teacher labels --cache_epochs epochs of augmented
views once (`tfkd.view_cache`, --out/teacher_views_{a,b}/, resumable and refused if made for
another teacher, data or views): every seed sees the first seed's views (`views.train_dataset`'s
`view_seed`) in its own order, from its own initial weights, and the three students train on those
logits without running a teacher: a student step then costs about a plain one (BENCHMARKS.md
§6). --cache_epochs=0 caches --epochs epochs: exactly the views a live run would show.
"""

import os
import time

import numpy as np
import tf_keras
from absl import app, flags, logging

from bench import common
from configs import cifar10_multitask
from tfkd import (cli, data, from_config, model_files, multitask, precision, training, view_cache,
                  views)
from tflite import convert, files, micro, multi_output

_TEACHER_A = flags.DEFINE_string("teacher_a", "runs/cifar10_resnet/teacher/model.keras",
                                 "Trained task-A (10-class) teacher.")
_TEACHER_B = flags.DEFINE_string("teacher_b", "", "Trained task-B (4-group) teacher; '' = "
                                 "--out/teacher_b/model.keras, trained here if missing.")
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 0, "Epochs of a ResNet-20 teacher trained "
                                       "here when its file is missing (0: stop with an error).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Epochs of every student.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds: weights and batch order (and views with "
                           "--nocached_teacher; cached, every seed sees the first seed's).")
_SINGLE_FILTERS = flags.DEFINE_list("single_filters", ["11", "22", "46"],
                                    "Filters of each single-task ResNet-8 (two of them sum to about "
                                    "the two-head ResNet-8's parameters).")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", 0, "Use only this many training images (0: all).")
_TEST_LIMIT = flags.DEFINE_integer("test_limit", 0, "Test images measured, spread over the test "
                                   "set (0: all).")
_MICRO_EXAMPLES = flags.DEFINE_integer("micro_examples", 1000, "Test images run on TFLite Micro.")
_OUT = flags.DEFINE_string("out", "runs/bench_multitask", "Output folder.")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                                "train.precision of every model trained here (tfkd.precision).")
_CACHED_TEACHER = flags.DEFINE_bool("cached_teacher", True, "Teachers label the views once (a "
                                    "cache per teacher) instead of running every step.")
_CACHE_EPOCHS = flags.DEFINE_integer("cache_epochs", 0, "Epochs of views cached (0: --epochs); "
                                     "fewer are cycled (epoch e reads e mod E).")

TASKS = multitask.TASKS


def run_config():
  config = from_config.with_defaults(cifar10_multitask.get_config())
  config.data.path = _DATA.value
  config.data.train_limit = _TRAIN_LIMIT.value
  config.train.epochs, config.train.precision = _EPOCHS.value, _PRECISION.value
  return config


def train(config, splits, name: str, student, labels: np.ndarray, seed: int, trainer=None,
          epochs: int = 0, teacher_logits=None, view_seed=None) -> str:
  """Trains `student` (inside `trainer`, a distiller, if given) into --out/<name>/model.keras,
  resumably, unless that file exists; returns its path. `teacher_logits`: the views' cached
  logits ([E, N, classes], or {task: ...}), given to `views.train_dataset` with `view_seed`."""
  folder = os.path.join(_OUT.value, name)
  path = os.path.join(folder, "model.keras")
  if os.path.exists(path):
    return path
  train_config = config.train.copy_and_resolve_references()
  train_config.epochs = epochs or train_config.epochs
  steps = len(labels) // train_config.batch_size
  trainer = trainer or student
  if trainer is student:
    student.compile(loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    optimizer=from_config.optimizer(train_config, steps), metrics=["accuracy"])
  else:
    trainer.compile(optimizer=from_config.optimizer(train_config, steps))
  train_ds = views.train_dataset(splits.train[0], labels, batch_size=train_config.batch_size,
                                 augment=True, seed=seed, start_epoch=training.resume_epoch(folder),
                                 teacher_logits=teacher_logits, view_seed=view_seed)
  start = time.time()
  training.fit_resumable(trainer, train_ds, None, train_config.epochs, folder,
                         steps_per_epoch=steps)
  training.save_final_model(student, path, folder)
  files.write_json(os.path.join(folder, "train.json"), {
      "seconds": time.time() - start, "epochs": train_config.epochs, "steps_per_epoch": steps})
  return path


def measure(config, splits, path: str, labels: dict, test_x: np.ndarray) -> dict:
  """Float, int8 LiteRT and int8 TFLite Micro accuracy of each named output (cached in
  measured.json beside the model). A single-output model's output is named by `labels`' one key."""
  out = os.path.join(os.path.dirname(path), "measured.json")
  if os.path.exists(out):
    return files.read_json(out)
  model = model_files.load_model(path)
  scores = model.predict(test_x, batch_size=500, verbose=0)
  single = len(labels) == 1
  named = lambda s: ({next(iter(labels)): s} if single else
                     s if isinstance(s, dict) else dict(zip(model.output_names, s)))
  tflite = convert.convert(from_config.for_export(config.export, model), "int8",
                           data.evenly_spaced(splits.train[0], 500))
  files.write_atomic(path.replace(".keras", "_int8.tflite"), tflite)
  arena = micro.find_arena_size(tflite).size
  picked = np.linspace(0, len(test_x) - 1, min(_MICRO_EXAMPLES.value, len(test_x))).astype(int)
  if single:  # its output is the signature's only name, whatever the layer is called
    rename = lambda s: {next(iter(labels)): next(iter(s.values()))}
  else:
    rename = lambda s: s
  lite = rename(multi_output.litert_predict(tflite, test_x, 500))
  on_micro = rename(multi_output.micro_predict(tflite, test_x[picked], arena))
  result = {"parameters": model.count_params(), "int8_bytes": len(tflite), "arena_bytes": arena,
            "float": multi_output.accuracy(named(scores), labels),
            "int8_litert": multi_output.accuracy(lite, labels),
            "int8_tflm": multi_output.accuracy(on_micro, {k: v[picked] for k, v in labels.items()}),
            "tflm_examples": int(len(picked))}
  files.write_json(out, result)
  return result


def rows(results: dict) -> list:
  """(model, runtime, {task: [per-seed accuracies]}, parameters, int8 bytes) of the table."""
  table = []
  for runtime, key in (("Keras float", "float"), ("int8, LiteRT", "int8_litert"),
                       ("int8, TFLite Micro", "int8_tflm")):
    multi = results["multitask"]
    table.append(("multi-task ResNet-8, two heads", runtime,
                  {t: [r[key][t] for r in multi] for t in TASKS},
                  multi[0]["parameters"], multi[0]["int8_bytes"]))
    a, b = results["single_a"], results["single_b"]
    table.append(("two single-task ResNet-8s", runtime,
                  {TASKS[0]: [r[key][TASKS[0]] for r in a], TASKS[1]: [r[key][TASKS[1]] for r in b]},
                  a[0]["parameters"] + b[0]["parameters"], a[0]["int8_bytes"] + b[0]["int8_bytes"]))
  return table


def markdown(teachers: dict, results: dict, groups, single_filters) -> str:
  lines = ["| model | runtime | seeds | task A (10 classes) | task B (4 groups) | parameters | "
           "int8 bytes |", "|---|---|---:|---:|---:|---:|---:|"]
  for task, result in teachers.items():
    cells = [common.seed_cell([result["float"][task]]) if t == task else "—" for t in TASKS]
    lines.append(f"| {task} teacher ResNet-20 | Keras float | — | {cells[0]} | {cells[1]} | "
                 f"{result['parameters']} | — |")
  for model, runtime, accuracies, parameters, size in rows(results):
    lines.append(f"| {model} | {runtime} | {len(accuracies[TASKS[0]])} | "
                 f"{common.seed_cell(accuracies[TASKS[0]])} | {common.seed_cell(accuracies[TASKS[1]])} | {parameters} | "
                 f"{size} |")
  tflm = results["multitask"][0]["tflm_examples"]
  lines += ["", f"Task B groups: {groups}. Single-task students: ResNet-8 filters "
            f"{tuple(single_filters)}, one per task; their parameters and bytes are summed. TFLite "
            f"Micro rows: {tflm} test images spread over the test set; the other rows: "
            f"{results['test_examples']} test images. Cells: mean over seeds (range)."]
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  fig, axes = files.new_figure(1, 2, figsize=(9, 3.5))
  table = rows(results)
  for axis, task, title in zip(axes, TASKS, ("task A: 10 classes", "task B: 4 groups")):
    short = {"Keras float": "float", "int8, LiteRT": "int8\nLiteRT", "int8, TFLite Micro": "int8\nTFLM"}
    labels = [f"{'multi' if m.startswith('multi') else 'single'}\n{short[r]}" for m, r, *_ in table]
    means = [100 * np.mean(a[task]) for _, _, a, *_ in table]
    spans = [[100 * (np.mean(a[task]) - min(a[task])) for _, _, a, *_ in table],
             [100 * (max(a[task]) - np.mean(a[task])) for _, _, a, *_ in table]]
    axis.bar(range(len(table)), means, yerr=spans, capsize=3,
             color=["tab:blue" if m.startswith("multi") else "tab:gray" for m, *_ in table])
    axis.set_xticks(range(len(table)), labels, fontsize=7)
    axis.set_ylim(min(means) - 5, min(100, max(means) + 3))
    axis.set_title(title)
    axis.set_ylabel("test accuracy (%)")
  fig.tight_layout()
  files.save_figure(fig, path)


def teacher(config, splits, task: str, path: str, labels: np.ndarray, classes: int) -> str:
  """`path`, or a ResNet-20 trained on `labels` into --out/teacher_<a|b>/ when it is missing."""
  if os.path.exists(path):
    return path
  if not _TEACHER_EPOCHS.value:
    raise app.UsageError(f"No {task} teacher at {path}: pass --teacher_{task[-1]} or set "
                         "--teacher_epochs to train one here.")
  tf_keras.utils.set_random_seed(config.seed)
  model = precision.with_policy(
      from_config.model(config.teacher, splits, f"teacher_{task[-1]}", num_classes=classes),
      config.train.precision)
  return train(config, splits, f"teacher_{task[-1]}", model, labels, config.seed,
               epochs=_TEACHER_EPOCHS.value)


def cached_logits(paths: dict, teachers: dict, x: np.ndarray, y: np.ndarray, view_seed: int) -> dict:
  """{task: [E, N, classes]}: each teacher's logits of the views of `view_seed`, labelled once
  into --out/teacher_views_<a|b>/ (resumed; refused if made for anything else)."""
  logits = {}
  for task, path in paths.items():
    cache_dir = os.path.join(_OUT.value, f"teacher_views_{task[-1]}")
    fingerprint = view_cache.make_fingerprint([path], None, x, y, augment=True, seed=view_seed,
                                              epochs=_CACHE_EPOCHS.value or _EPOCHS.value)
    view_cache.build(cache_dir, fingerprint, [teachers[task]], x)
    logits[task] = view_cache.load(cache_dir, fingerprint, teachers[task].output_shape[-1])
  return logits


def main(argv):
  del argv
  meta = common.provenance("bench.multitask")
  print(common.header(meta))
  config = run_config()
  splits = from_config.splits(config.data)
  mapping = multitask.parse_class_mapping(config.multitask.task_b_classes)
  relabel = lambda y: multitask.task_b_labels(y, splits.class_names, mapping)[0]
  groups = multitask.task_b_labels(splits.train[1], splits.class_names, mapping)[1]
  y_a = splits.train[1]
  y_b = relabel(y_a)
  count = _TEST_LIMIT.value or len(splits.test[1])
  test_x, test_a = (data.evenly_spaced(a, count) for a in splits.test)
  test = {TASKS[0]: test_a, TASKS[1]: relabel(test_a)}
  paths = {TASKS[0]: teacher(config, splits, TASKS[0], _TEACHER_A.value, y_a, 10),
           TASKS[1]: teacher(config, splits, TASKS[1], _TEACHER_B.value or os.path.join(
               _OUT.value, "teacher_b", "model.keras"), y_b, len(groups))}
  teachers = {t: model_files.load_model(p) for t, p in paths.items()}
  teacher_results = {}
  for task, model in teachers.items():
    scores = model.predict(test_x, batch_size=500, verbose=0)
    teacher_results[task] = {"parameters": model.count_params(),
                             "float": multi_output.accuracy({task: scores}, {task: test[task]})}
  single_filters = [int(f) for f in _SINGLE_FILTERS.value]
  results = {"multitask": [], "single_a": [], "single_b": [], "test_examples": int(count)}
  seeds = [int(s) for s in _SEEDS.value]
  view_seed = seeds[0] if _CACHED_TEACHER.value else None  # live teachers: each seed's own views
  logits = (cached_logits(paths, teachers, splits.train[0], y_a, view_seed)
            if _CACHED_TEACHER.value else None)
  for seed in seeds:
    live = {t: None for t in TASKS} if logits else teachers  # cached: no teacher runs in training
    tf_keras.utils.set_random_seed(seed)
    student = precision.with_policy(multitask.two_head_model(
        from_config.model(config.multitask.student, splits, "multitask"), len(groups),
        "multitask"), config.train.precision)
    distiller = multitask.MultiTaskDistiller(
        live, student, config.distill.temperature, config.distill.student_loss_weight,
        dict(zip(TASKS, config.multitask.task_weights)))
    path = train(config, splits, f"multitask_seed{seed}", student, np.stack([y_a, y_b], 1), seed,
                 distiller, teacher_logits=logits, view_seed=view_seed)
    results["multitask"].append(measure(config, splits, path, test, test_x))
    for key, task, labels, classes in (("single_a", TASKS[0], y_a, 10),
                                       ("single_b", TASKS[1], y_b, len(groups))):
      tf_keras.utils.set_random_seed(seed)
      single = config.student.copy_and_resolve_references()
      single.kwargs.filters = tuple(single_filters)
      student = precision.with_policy(
          from_config.model(single, splits, key, num_classes=classes), config.train.precision)
      distiller = from_config.distiller(config.distill, [live[task]] if live[task] else [], student)
      path = train(config, splits, f"{key}_seed{seed}", student, labels, seed, distiller,
                   teacher_logits=logits[task] if logits else None, view_seed=view_seed)
      results[key].append(measure(config, splits, path, {task: test[task]}, test_x))
    logging.info("[seed %d] %s", seed, {k: v[-1] for k, v in results.items() if isinstance(v, list)})
  table = markdown(teacher_results, results, groups, single_filters)
  print(table)
  files.write_atomic(os.path.join(_OUT.value, "multitask.md"),
                     common.header(meta) + "\n" + table + "\n")
  plot(results, os.path.join(_OUT.value, "multitask.png"))
  files.write_json(os.path.join(_OUT.value, "multitask.json"), {
      **meta, "teachers": paths, "cached_teacher": _CACHED_TEACHER.value,
      "cache_epochs": (_CACHE_EPOCHS.value or _EPOCHS.value) if _CACHED_TEACHER.value else 0,
      "teacher_results": teacher_results, "epochs": _EPOCHS.value,
      "task_b_groups": groups, "single_filters": single_filters,
      "train_examples": int(len(y_a)), "results": results})


if __name__ == "__main__":
  cli.run(main)
