"""Compression stages: prune, qat and prune_qat, each under distillation; teacher_compress.

Each fine-tunes a compressed copy of the distilled student inside a `Distiller`,
the teacher guiding it as in the distill stage (live, or from the cached views), and exports it to full-integer
int8; `report_labels` names their rows in the report (`tfkd.report_stage`). Stages skip when
done and resume like the others (see `tfkd.pipeline`). See docs/compression.md.
`teacher_compress` makes the compressed teacher of `teacher.compress` that the later
stages distil from (docs/distillation.md).

Example:
  config = configs.cifar10_compress.get_config()   # stages (..., "prune", "qat", "prune_qat", ...)
  pipeline.run_pipeline(config, "runs/cifar10")
"""

import os

import numpy as np
import tf_keras
from absl import logging

from tfkd import (compress, from_config, keras3_teacher, teacher_checks, teacher_compression,
                  training)
from tfkd.errors import ModelFileError
from tfkd.run_context import Run
from tflite import convert, files, sparsity


def compressed_model_path(run: Run, stage: str) -> str:
  """Where a compression stage keeps its Keras model: `.h5` for QAT models.

  tf_keras cannot reload tfmot's QAT wrappers from `.keras` files
  (tensorflow/model-optimization#1123); load them with `compress.load_model`.
  """
  return run.path(stage, "model.h5") if stage in ("qat", "prune_qat") else run.model_path(stage)


def finetune_with_teacher(run: Run, stage: str, start: str, wrap_student,
                          callbacks=()) -> tf_keras.Model:
  """Fine-tunes a wrapped copy of a saved student inside a `Distiller`, resumably.

  Args:
    run: the run.
    stage: this stage's name (its folder keeps the backup and history).
    start: the stage whose saved model is the starting point ('distill' or 'prune').
    wrap_student: fn(model, total_steps) → the model to train, e.g. a pruned copy.
    callbacks: extra `fit` callbacks (pruning needs `compress.pruning_callbacks()`).

  Returns:
    The trained (still wrapped) student.
  """
  train_config = from_config.stage_train_config(run.config, stage)
  start_path = compressed_model_path(run, start)
  logits = run.teacher_view_logits()  # None: the teachers run live
  teacher_paths = run.teacher_paths() if logits is None else []
  run.require([start_path] + teacher_paths, stage)
  steps = run.steps_per_epoch(train_config.batch_size, distillation=True)
  with run.strategy.scope():
    teachers = run.load_teachers(teacher_paths)
    student = wrap_student(compress.load_model(start_path), train_config.epochs * steps)
    distiller = from_config.distiller(run.config.distill, teachers, student)
    distiller.compile(optimizer=from_config.optimizer(train_config, steps), metrics=["accuracy"])
  logging.info("[%s] fine-tuning %s with the teacher: %d epochs, learning rate %g.", stage, start_path,
               train_config.epochs, train_config.learning_rate)
  run.fit(distiller, stage, train_config, distillation=True, teacher_logits=logits,
          callbacks=callbacks)
  return student


def export_compressed(run: Run, stage: str) -> None:
  """Converts a compression stage's saved model to full-integer int8 TFLite (on the chief only)."""
  if not run.is_chief:
    return
  out = run.tflite_path(stage, "int8")
  model = compress.load_model(compressed_model_path(run, stage))
  run.write_input_card(out)
  files.write_atomic(out, convert.convert(model, "int8", run.representative_inputs()))
  measured = sparsity.tflite_sparsity(out)["sparsity"]
  logging.info("[%s] %s: %d bytes, weight sparsity %.3f", stage, out, os.path.getsize(out), measured)


def stage_prune(run: Run) -> None:
  """Prunes the distilled student while the teacher guides it; exports post-training int8.

  `compress.prune.sparsity` is reached with a polynomial schedule, or with
  `compress.prune.m_by_n=(2, 4)` every 4 input-channel weights keep 2.
  """
  if run.done("prune", run.tflite_path("prune", "int8"),
              from_config.stage_train_config(run.config, "prune").epochs):
    return
  if not run.exists(compressed_model_path(run, "prune")):
    student = finetune_with_teacher(
        run, "prune", "distill",
        lambda model, total_steps: from_config.pruned_model(run.config.compress, model, total_steps),
        compress.pruning_callbacks())
    training.save_final_model(compress.strip_pruning(student), compressed_model_path(run, "prune"),
                              run.path("prune"))
  export_compressed(run, "prune")


def _finetune_quantized(run: Run, stage: str, start: str, preserve_sparsity: bool) -> None:
  if run.done(stage, run.tflite_path(stage, "int8"),
              from_config.stage_train_config(run.config, stage).epochs):
    return
  path = compressed_model_path(run, stage)
  if not run.exists(path):
    representative = run.representative_inputs()  # QAT's activation ranges start calibrated
    student = finetune_with_teacher(
        run, stage, start, lambda model, _: compress.quantize(model, preserve_sparsity, representative))
    with compress.quantize_scope():
      training.save_final_model(student, path, run.path(stage))
  export_compressed(run, stage)


def stage_qat(run: Run) -> None:
  """Quantisation-aware fine-tuning of the distilled student with the teacher; exports int8."""
  _finetune_quantized(run, "qat", "distill", preserve_sparsity=False)


def stage_prune_qat(run: Run) -> None:
  """QAT of the pruned student with tfmot's prune-preserve scheme (zeros stay); exports int8."""
  _finetune_quantized(run, "prune_qat", "prune", preserve_sparsity=True)


def report_labels(compress_config) -> dict:
  """Stage → report label of its int8 model, e.g. 'pruned student (75% sparse), int8 TFLite ...'."""
  m_by_n = tuple(compress_config.prune.m_by_n)
  pruning = ("{}:{} sparse".format(*m_by_n) if m_by_n
             else f"{compress_config.prune.sparsity:.0%} sparse")
  return {"prune": f"pruned student ({pruning}), int8 TFLite (post-training)",
          "qat": "QAT student, int8 TFLite",
          "prune_qat": f"pruned ({pruning}) + QAT student, int8 TFLite"}


def stage_teacher_compress(run: Run) -> None:
  """Makes the teacher the student learns from when `teacher.compress` is not 'none'.

  'prune': tfmot magnitude pruning to `teacher.prune_sparsity`, fine-tuned on the labels for
  `teacher.prune_epochs` (resumable), stripped and saved; 'int8': the teacher (input
  normalisation folded as `export.fold_normalization` says) converted to full-integer TFLite,
  calibrated on `export.representative_size` training images, run on LiteRT; 'float16' /
  'bfloat16': `teacher_compression.low_precision_copy`. Written to
  `Run.compressed_teacher_file` (a folder per kind), whose hash then keys the teacher-logit cache; the
  validation accuracy before and after is logged.
  """
  how, out = run.config.teacher.compress, run.compressed_teacher_file()
  if how == "none":
    logging.info("[teacher_compress] teacher.compress='none': the teacher distils as trained.")
    return
  train_config = from_config.stage_train_config(run.config, "teacher_compress")
  stage = os.path.relpath(os.path.dirname(out), run.workdir)  # e.g. teacher_compress/prune_0.5
  if run.done(stage, out, train_config.epochs if how == "prune" else None):
    return
  run.require([run.teacher_file()], "teacher_compress")
  if how == "prune":
    steps = run.steps_per_epoch(train_config.batch_size)
    with run.strategy.scope():
      teacher = _in_tf_keras(run.load_teachers([run.teacher_file()])[0], how)
      model = from_config.pruned_teacher(run.config, teacher, train_config.epochs * steps)
      model.compile(optimizer=from_config.optimizer(train_config, steps),
                    loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    run.fit(model, stage, train_config, callbacks=compress.pruning_callbacks())
    training.save_final_model(compress.strip_pruning(model), out, run.path(stage))
  elif run.is_chief:
    teacher = run.load_teachers([run.teacher_file()])[0]
    if how == "int8":
      files.write_atomic(out, convert.convert(_int8_source(run, teacher), "int8",
                                              run.representative_inputs()))
    else:
      training.save_model_atomic(
          teacher_compression.low_precision_copy(_in_tf_keras(teacher, how), how), out)
  if run.is_chief and run.splits.val:
    _log_teacher_change(run, out)


def _in_tf_keras(teacher, how: str):
  """The teacher; one Keras 3 runs (no tf_keras twin) is refused: tfmot and the Keras 2 dtype
  policies work on tf_keras layers."""
  if isinstance(teacher, keras3_teacher.Keras3Teacher):
    raise ModelFileError(
        f"teacher.compress={how!r} compresses the teacher's tf_keras layers, but {teacher.path} "
        "has no tf_keras twin (Keras 3 runs it). Fix: "
        "teacher.compress='int8' (converted from Keras 3; for a teacher that outputs logits) or "
        "'none'.")
  return teacher


def _int8_source(run: Run, teacher):
  """What the int8 teacher converts from: the teacher with its input normalisation folded, or
  a Keras 3 teacher's own model (Keras 3 exports it for the converter)."""
  if not isinstance(teacher, keras3_teacher.Keras3Teacher):
    return from_config.for_export(run.config.export, teacher)
  if teacher.log_probabilities:
    raise ModelFileError(
        f"teacher.compress='int8': {teacher.path} ends in a softmax that tfkd cannot take out "
        "(Keras 3 runs it), and int8 probabilities lose what soft targets are made of: every "
        "probability under 1/256 becomes 0. Fix: save the teacher without its final softmax "
        "(logits out), or teacher.compress='none'.")
  return teacher.model


def _log_teacher_change(run: Run, out: str) -> None:
  """Logs the validation accuracy of the teacher before and after, and how often they agree."""
  val_x, val_y = run.splits.val
  chosen = np.linspace(0, len(val_y) - 1, min(teacher_checks.MAX_EVAL_SIZE, len(val_y))).astype(int)
  before = run.load_teachers([run.teacher_file()])[0]  # checked already: loaded only
  after = teacher_compression.load_teacher(out)
  top1 = [np.argmax(teacher_compression.predict_logits(t, val_x[chosen]), -1) for t in (before, after)]
  logging.info("[teacher_compress] %s (%d bytes): validation accuracy %.2f%% → %.2f%%, same top-1 "
               "class as the teacher on %.2f%% of %d images.", out, os.path.getsize(out),
               100 * np.mean(top1[0] == val_y[chosen]), 100 * np.mean(top1[1] == val_y[chosen]),
               100 * np.mean(top1[0] == top1[1]), len(chosen))
