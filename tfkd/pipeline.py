"""The stages of a tfkd run: teacher → scratch → distill → export → report (and compression).

Each stage reads and writes `workdir/<stage>/`. A stage whose final artifact
exists is skipped, and an interrupted training stage resumes from its last
epoch (see `training.fit_resumable`), so rerunning the same command continues
where it stopped. Artifacts are written atomically. The prune, qat,
prune_qat and teacher_compress stages live in `tfkd.compression_stages`, the self-supervised
route (selfsup_pretrain, selfsup) in `tfkd.selfsup_stages`, the report in `tfkd.report_stage`;
`Run` in `tfkd.run_context`.

Example:
  run_pipeline(config, "runs/cifar10")   # or: python -m tfkd.train --config=... --workdir=...
"""

import os
import time

import tf_keras
from absl import logging

from tfkd import compression_stages, config_checks, from_config, hub_stage, keras3_files, model_files
from tfkd import multitask_stages, report_stage, selfsup_stages
from tfkd import training, workers
from tfkd.errors import ConfigError
from tfkd.run_context import Run, make_workdir
from tflite import convert, files


def train_supervised(run: Run, stage: str, model_config) -> None:
  """Trains a model on labels alone (the teacher, or the student from scratch)."""
  train_config = from_config.stage_train_config(run.config, stage)
  if run.done(stage, run.model_path(stage), train_config.epochs):
    return
  with run.strategy.scope():
    model = run.build(model_config, stage)
    steps = run.steps_per_epoch(train_config.batch_size)
    model.compile(optimizer=from_config.optimizer(train_config, steps),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
  logging.info("[%s] %s, %d parameters, %d epochs.", stage, model_config.model,
               model.count_params(), train_config.epochs)
  run.fit(model, stage, train_config)
  training.save_final_model(model, run.model_path(stage), run.path(stage))


def stage_teacher(run: Run) -> None:
  """Trains the teacher, unless `teacher.path` names one (then only checks the file is there).

  With `teacher.kind='keras_hub'` fine-tunes the pretrained preset instead (`tfkd.hub_stage`).
  """
  if run.hub_teacher:
    hub_stage.stage_fine_tune(run)
    return
  if run.config.teacher.path:
    run.require([run.config.teacher.path], "teacher")
    logging.info("[teacher] teacher.path=%s: using that model, none is trained.",
                 run.config.teacher.path)
    return
  train_supervised(run, "teacher", run.config.teacher)


def stage_scratch(run: Run) -> None:
  train_supervised(run, "scratch", run.config.student)


def stage_teacher_views(run: Run) -> None:
  """Labels `distill.cache_epochs` epochs of training views with the teachers, once."""
  if run.teacher_view_logits() is None:
    logging.info("[teacher_views] distill.cached_teacher is off: the teacher runs live.")


def stage_distill(run: Run) -> None:
  """Trains a fresh student against the trained teacher(s); saves the student alone.

  `distill.extra_teachers` (paths of `.keras` models) join the teacher (trained,
  or `teacher.path`); their logits are averaged with `distill.teacher_weights`.
  Each teacher is checked first and a softmax output turned back into logits
  (`Run.load_teachers`). With
  `distill.cached_teacher` (or `distill.teacher_logits_path`) the teachers'
  logits for the training views come from the cache and the training epochs
  run the student alone (`Run.teacher_view_logits`). See
  docs/distillation.md.
  """
  cfg, train_config = run.config.distill, from_config.stage_train_config(run.config, "distill")
  if run.done("distill", run.model_path("distill"), train_config.epochs):
    return
  transfer = run.config.data.transfer_set
  adds_rows = transfer.copies or transfer.long_copies
  # A keras-hub teacher's cached logits cover the transfer set; other caches do not.
  if (cfg.cached_teacher or cfg.teacher_logits_path) and adds_rows and not run.hub_teacher:
    raise ConfigError("Cached teacher logits cover the training split only, but "
                      "data.transfer_set adds inputs the teacher must label live: turn off "
                      "distill.cached_teacher or set data.transfer_set.copies=0 and long_copies=0.")
  logits = run.teacher_view_logits()
  teacher_paths = [] if logits is not None else run.teacher_paths()
  run.require(teacher_paths, "distill")
  with run.strategy.scope():
    teachers = run.load_teachers(teacher_paths)
    student = run.build(run.config.student, "student")
    distiller = from_config.distiller(cfg, teachers, student)
    distiller.compile(
        optimizer=from_config.optimizer(train_config, run.steps_per_epoch(train_config.batch_size,
                                                                        distillation=True)),
        metrics=["accuracy"])
  taught_by = [run.path("teacher", hub_stage.WEIGHTS)] if run.hub_teacher else run.teacher_paths()
  logging.info("[distill] %s → %s, method=%s%s, %s, α=%.2f, %d epochs.", taught_by,
               run.config.student.model, cfg.method,
               report_stage.adversarial_summary(cfg.adversarial),
               f"{len(logits)} cached epochs of teacher logits" if logits is not None
               else f"{len(teachers)} live teacher(s)", cfg.student_loss_weight, train_config.epochs)
  run.fit(distiller, "distill", train_config, distillation=True, teacher_logits=logits)
  training.save_final_model(distiller.student, run.model_path("distill"), run.path("distill"))


def stage_export(run: Run) -> None:
  """Converts the students (distilled, scratch, self-supervised, multi-task: those trained) in
  every `export.modes`, and the teacher and single-task students to float32.

  The scratch and self-supervised students are quantized too so distillation's gain is
  judged on the deployed model; the float32 files let the report time every Keras model on
  LiteRT. The multi-task student becomes one file with both outputs (`tfkd.multitask_stages`).
  """
  modes = run.config.export.modes
  wanted = [(name, mode) for name in ("distill", "scratch", "selfsup", "multitask") for mode in modes]
  wanted += [(name, "float32") for name in ("teacher", "scratch", "distill", "selfsup")
             if (name, "float32") not in wanted]
  for name, mode in wanted:
    if not os.path.exists(run.saved_model(name)):
      continue
    try:
      export_model(run, name, mode)
    except convert.ConversionError as e:
      if name != "teacher" or not run.config.teacher.path:
        raise
      # Only for the report's timing: a teacher brought along need not convert.
      logging.warning("[export] teacher.path=%s does not convert to TFLite; its latency is not "
                      "reported: %s", run.config.teacher.path, str(e).splitlines()[0])


def export_model(run: Run, name: str, mode: str) -> str:
  """Converts a stage's saved Keras model to `export/<name>_<mode>.tflite` unless it exists.

  With `export.fold_normalization` the input normalisation is folded into the first conv
  first (`tfkd.fold`): the `.tflite` takes raw pixels and has no SUB/MUL for it; the saved
  Keras model, which training resumes from, is not touched.
  Beside it, `<name>_<mode>.json` (`Run.write_input_card`) says what the model takes.

  Returns:
    The `.tflite` path.
  """
  out = run.tflite_path(name, mode)
  if run.done("export", out):
    return out
  start = time.time()
  try:
    model = from_config.for_export(run.config.export, model_files.load_model(run.saved_model(name)))
  except keras3_files.NotRebuildable as e:  # a Keras 3 teacher tfkd cannot rebuild: Keras 3
    model = e.model                          # exports it for the converter, unfolded
  run.write_input_card(out)
  files.write_atomic(out, convert.convert(model, mode, run.representative_inputs()))
  logging.info("[export] %s (%d bytes, %.0fs)", out, os.path.getsize(out), time.time() - start)
  return out


# Stages that train nothing: on several workers the chief runs them while the others wait.
CHIEF_ONLY_STAGES = ("export", "report")
STAGE_FUNCTIONS = {
    "teacher": stage_teacher,
    "teacher_b": multitask_stages.stage_teacher_b,
    "teacher_compress": compression_stages.stage_teacher_compress,
    "teacher_views": stage_teacher_views,
    "scratch": stage_scratch,
    "distill": stage_distill,
    "multitask": multitask_stages.stage_multitask,
    "export": stage_export,
    "report": report_stage.stage_report,
    "prune": compression_stages.stage_prune,
    "qat": compression_stages.stage_qat,
    "prune_qat": compression_stages.stage_prune_qat,
    "selfsup_pretrain": selfsup_stages.stage_selfsup_pretrain,
    "selfsup": selfsup_stages.stage_selfsup,
}


def run_pipeline(config, workdir: str) -> Run:
  """Runs `config.stages` in order in `workdir`.

  Args:
    config: a ConfigDict from `configs/` (missing keys take `configs/defaults.py`'s values).
    workdir: output folder (created if needed).

  On several workers (`config.distribute='multiworker'`, `TF_CONFIG`) every worker
  runs this with the same arguments: the training stages run on all of them, the
  `CHIEF_ONLY_STAGES` on the chief, and every worker waits for the others at the
  end of each stage, so all return together (see `tfkd.workers`).

  Returns:
    The stages' `Run` (data already loaded), for callers that go on measuring.
  """
  config = from_config.with_defaults(config)
  unknown = [s for s in config.stages if s not in STAGE_FUNCTIONS]
  if unknown:
    raise ConfigError(f"Unknown stage(s) {unknown} in config.stages: choose from {list(STAGE_FUNCTIONS)}.")
  config_checks.validate(config)  # every value and input file, before data is read
  make_workdir(workdir)
  run = Run(config, workdir)
  for stage in config.stages:
    start = time.time()
    # Seeded per stage, not once: a stage draws the same weights and batches whichever stages
    # ran before it in this process, so a resumed run equals an uninterrupted one.
    tf_keras.utils.set_random_seed(config.seed)
    run.alone = stage in CHIEF_ONLY_STAGES
    if run.alone and not run.is_chief:
      logging.info("=== stage %s: left to the chief ===", stage)
    else:
      logging.info("=== stage %s ===", stage)
      STAGE_FUNCTIONS[stage](run)
    run.alone = False
    workers.barrier(run.strategy)
    logging.info("=== stage %s finished in %.0fs ===", stage, time.time() - start)
  return run
