"""The multi-task stages: 'teacher_b' (a teacher of the second task) and 'multitask' (the
two-head student distilled from both teachers), and the report's multi-task section.

Task B's labels come from `config.multitask.task_b_classes` ('class:group' pairs,
`tfkd.multitask.task_b_labels`). The 'export' stage converts the saved student to
`export/multitask_<mode>.tflite`, one file with outputs 'task_a' and 'task_b'; the
report measures both outputs on LiteRT (whole test set) and the int8 file on TFLite
Micro (`multitask.micro_examples` test images), going by the outputs' names
(`tflite.multi_output`). With `distill.cached_teacher` the multitask stage reads both
teachers' logits of `distill.cache_epochs` epochs of training views from disk instead of
running them (`cached_teacher_logits`). See docs/distillation.md, "Multi-task distillation".

Example:
  python -m tfkd.train --config=configs/cifar10_multitask.py --workdir=runs/cifar10_multitask
"""

import os
from typing import Callable, List, Optional, Tuple

import numpy as np
import tf_keras
from absl import logging

from tfkd import (config_checks, from_config, model_files, multitask, precision, teacher_checks,
                  training, view_cache)
from tfkd.errors import ConfigError, TeacherError
from tfkd.run_context import Run
from tflite import micro, multi_output


def task_b(run: Run) -> Tuple[Callable[[np.ndarray], np.ndarray], List[str]]:
  """(task-A labels → task-B labels, task B's class names) from `multitask.task_b_classes`."""
  pairs = run.config.multitask.task_b_classes
  if not pairs:
    raise ConfigError("config.multitask.task_b_classes is empty: give every class its task-B class "
                      "as 'class:group' pairs, e.g. ('cat:mammal', 'truck:vehicle', ...) "
                      "(configs/cifar10_multitask.py).")
  names = run.splits.class_names
  with from_config.reading("multitask"):
    mapping = multitask.parse_class_mapping(pairs)
    groups = multitask.task_b_labels(np.zeros(0, np.int32), names, mapping)[1]
  return (lambda y: multitask.task_b_labels(y, names, mapping)[0]), groups


def both_tasks(run: Run) -> Callable[[np.ndarray], np.ndarray]:
  """Task-A labels → [examples, 2] labels of both tasks, the multi-task student's."""
  relabel_b = task_b(run)[0]
  return lambda y: np.stack([np.asarray(y, np.int32), relabel_b(y)], axis=1)


def teacher_b_file(run: Run) -> str:
  return run.config.multitask.teacher_b.path or run.model_path("teacher_b")


def stage_teacher_b(run: Run) -> None:
  """Trains the task-B teacher on task B's labels, unless `multitask.teacher_b.path` names one."""
  cfg = run.config.multitask.teacher_b
  relabel, groups = task_b(run)
  if cfg.path:
    run.require([cfg.path], "teacher_b")
    logging.info("[teacher_b] multitask.teacher_b.path=%s: using that model.", cfg.path)
    return
  train_config = run.config.train.copy_and_resolve_references()
  train_config.epochs = cfg.epochs or train_config.epochs
  if run.done("teacher_b", run.model_path("teacher_b"), train_config.epochs):
    return
  with run.strategy.scope():
    model = precision.with_policy(
        from_config.model(cfg, run.splits, "teacher_b", num_classes=len(groups)),
        run.config.train.precision)
    model.compile(optimizer=from_config.optimizer(train_config,
                                                  run.steps_per_epoch(train_config.batch_size)),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
  logging.info("[teacher_b] %s on task B %s, %d parameters, %d epochs.", cfg.model, groups,
               model.count_params(), train_config.epochs)
  run.fit(model, "teacher_b", train_config, labels=relabel)
  training.save_final_model(model, run.model_path("teacher_b"), run.path("teacher_b"))


def load_teacher_b(run: Run) -> tf_keras.Model:
  """The task-B teacher, returning logits, checked on task B's labels like the teacher is."""
  path = teacher_b_file(run)
  if not os.path.exists(path):
    raise ConfigError(f"The multitask stage needs the task-B teacher {path}: run the 'teacher_b' "
                      "stage first (list it before 'multitask' in config.stages), or set "
                      "multitask.teacher_b.path.")
  relabel, groups = task_b(run)
  loaded = model_files.load_model(path, run.config.teacher.allow_legacy_formats,
                                  opt_in=config_checks.LEGACY_OPT_IN)
  model, how = teacher_checks.as_logits(loaded, run.splits.train[0][:64])
  if how:
    logging.warning("[teacher_b] %s outputs probabilities, not logits: %s.", path, how)
  val_x, val_y = run.splits.val or (None, None)
  try:
    teacher_checks.check_teacher(model, path, len(groups), run.splits.train[0],
                                 relabel(run.splits.train[1]), val_x,
                                 None if val_y is None else relabel(val_y),
                                 fix=f"replace {path}")
  except TeacherError as e:
    if run.config.distill.check_teacher:
      raise
    logging.warning("%s (distill.check_teacher=False: distilling anyway.)", e)
  return model


def cached_teacher_logits(run: Run) -> Optional[dict]:
  """Both teachers' logits of the run's cached training views, {task: [E, N, classes]}; None
  when they run live (`distill.cached_teacher` off).

  Task A's are the 'teacher_views' stage's cache (`Run.teacher_view_logits`, `distill.cache_dir`);
  task B's are workdir/teacher_views_b/, filled from the task-B teacher the same way (resumably;
  its fingerprint names that teacher's file, so a cache made for another one is refused).
  """
  if not run.config.distill.cached_teacher:
    return None
  if run.teacher_paths() != [run.teacher_file()]:
    raise ConfigError(f"The multitask stage's task-A teacher is {run.teacher_file()}, but the cached "
                      f"teacher views would be labelled by {run.teacher_paths()}: set "
                      "teacher.compress='none' and distill.extra_teachers=(), or turn off "
                      "distill.cached_teacher.")
  x, y = run.splits.train
  if len(run.training_split()[1]) != len(y):
    raise ConfigError("The multitask stage trains on the labelled examples only, but cached teacher "
                      "views cover every training example: set data.label_fraction=1 or turn off "
                      "distill.cached_teacher.")
  cache_dir, groups = run.path("teacher_views_b"), task_b(run)[1]
  fingerprint = from_config.view_cache_fingerprint(run.config, [teacher_b_file(run)], x, y)
  fill = lambda: view_cache.build(cache_dir, fingerprint, [load_teacher_b(run)], x,
                                  run.config.distill.cache_batch_size)
  return {multitask.TASK_A: run.teacher_view_logits(),
          multitask.TASK_B: run.view_logits(cache_dir, fingerprint, fill, len(groups))}


def stage_multitask(run: Run) -> None:
  """Distils the two-head student: head 'task_a' from the teacher, 'task_b' from the task-B
  teacher; saves the student alone to multitask/model.keras.

  Trains with the distill stage's settings (`train`, `distill.temperature`,
  `distill.student_loss_weight`) and `multitask.task_weights`. Both teachers run live, or with
  `distill.cached_teacher` their cached logits are read (`cached_teacher_logits`) and no
  teacher runs during training.
  """
  cfg, train_config = run.config.multitask, from_config.stage_train_config(run.config, "distill")
  if run.done("multitask", run.model_path("multitask"), train_config.epochs):
    return
  groups = task_b(run)[1]
  run.require([run.teacher_file()], "multitask")
  logits = cached_teacher_logits(run)
  with run.strategy.scope():
    teachers = ({task: None for task in multitask.TASKS} if logits is not None else
                {multitask.TASK_A: run.load_teachers([run.teacher_file()])[0],
                 multitask.TASK_B: load_teacher_b(run)})
    backbone = from_config.model(cfg.student, run.splits, "multitask")
    student = precision.with_policy(
        multitask.two_head_model(backbone, len(groups), name="multitask"),
        run.config.train.precision)
    with from_config.reading("multitask"):
      distiller = multitask.MultiTaskDistiller(
          teachers, student, temperature=run.config.distill.temperature,
          student_loss_weight=run.config.distill.student_loss_weight,
          task_weights=dict(zip(multitask.TASKS, cfg.task_weights)))
    distiller.compile(optimizer=from_config.optimizer(
        train_config, run.steps_per_epoch(train_config.batch_size)))
  logging.info("[multitask] %s + %s → two-head %s (%d parameters; task B %s), λ=%s, %d epochs, %s.",
               run.teacher_file(), teacher_b_file(run), cfg.student.model, student.count_params(),
               groups, tuple(cfg.task_weights), train_config.epochs,
               "live teachers" if logits is None else
               f"{len(logits[multitask.TASK_A])} cached epochs of both teachers' logits")
  run.fit(distiller, "multitask", train_config, labels=both_tasks(run), teacher_logits=logits)
  training.save_final_model(student, run.model_path("multitask"), run.path("multitask"))


def _cell(value: Optional[float]) -> str:
  return "—" if value is None else f"{100 * value:.2f}%"


def report_section(run: Run) -> Optional[Tuple[dict, str]]:
  """Both tasks' accuracies of the multi-task student (Keras, every exported `.tflite` on LiteRT,
  the int8 file on TFLite Micro) and of the two teachers: (JSON, markdown), None without it."""
  if not os.path.exists(run.model_path("multitask")):
    return None
  test_x, test_a = run.splits.test
  relabel_b, groups = task_b(run)
  labels = {multitask.TASK_A: test_a, multitask.TASK_B: relabel_b(test_a)}
  batch = run.config.report.batch_size
  rows = []
  for task, path in ((multitask.TASK_A, run.teacher_file()), (multitask.TASK_B, teacher_b_file(run))):
    if os.path.exists(path):
      teacher, _ = teacher_checks.as_logits(model_files.load_model(
          path, run.config.teacher.allow_legacy_formats, opt_in=config_checks.LEGACY_OPT_IN),
                                            test_x[:64])
      scores = {task: teacher.predict(test_x, batch_size=batch, verbose=0)}
      rows.append({"model": f"{task} teacher (Keras float)", "runtime": "Keras",
                   "parameters": teacher.count_params(), **multi_output.accuracy(
                       scores, {task: labels[task]})})
  student = model_files.load_model(run.model_path("multitask"))
  scores = student.predict(test_x, batch_size=batch, verbose=0)
  scores = scores if isinstance(scores, dict) else dict(zip(student.output_names, scores))
  rows.append({"model": "multi-task student (Keras float)", "runtime": "Keras",
               "parameters": student.count_params(), **multi_output.accuracy(scores, labels)})
  parity = None
  for mode in run.config.export.modes:
    path = run.tflite_path("multitask", mode)
    if not os.path.exists(path):
      continue
    size = os.path.getsize(path)
    rows.append({"model": f"multi-task student, {mode} TFLite", "runtime": "LiteRT",
                 "bytes": size, **multi_output.accuracy(
                     multi_output.litert_predict(path, test_x, batch), labels)})
    if mode == "int8":
      count = run.config.multitask.micro_examples or len(test_a)
      model_bytes = open(path, "rb").read()
      arena = micro.find_arena_size(model_bytes).size
      picked = np.linspace(0, len(test_a) - 1, min(count, len(test_a))).astype(int)
      on_micro = multi_output.micro_predict(model_bytes, test_x[picked], arena)
      rows.append({"model": f"multi-task student, int8 TFLite ({len(picked)} images)",
                   "runtime": "TFLite Micro", "bytes": size, "arena_bytes": arena,
                   **multi_output.accuracy(on_micro, {k: v[picked] for k, v in labels.items()})})
      parity = multi_output.parity(model_bytes, test_x[:run.config.report.parity_samples], arena)
  lines = ["| model | runtime | task A accuracy | task B accuracy | parameters | bytes |",
           "|---|---|---:|---:|---:|---:|"]
  for row in rows:
    lines.append(f"| {row['model']} | {row['runtime']} | {_cell(row.get(multitask.TASK_A))} | "
                 f"{_cell(row.get(multitask.TASK_B))} | {row.get('parameters', '—')} | "
                 f"{row.get('bytes', '—')} |")
  lines += ["", f"Task A: the data's {len(run.splits.class_names)} classes; task B: {groups} "
            "(multitask.task_b_classes). One `.tflite` file, outputs found by name."]
  if parity:
    lines.append("TFLite Micro vs LiteRT reference kernels, raw int8 outputs: " + "; ".join(
        f"{name} {p['identical']}/{p['samples']} identical, max {p['max_abs_diff']:g} LSB"
        for name, p in sorted(parity.items())) + ".")
  return {"rows": rows, "task_b_classes": groups, "parity": parity}, "\n".join(lines)
