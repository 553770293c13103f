"""The self-supervised route: SEED without labels, then the classifier on the labelled images.

Two stages (docs/distillation.md):
  selfsup_pretrain  the teacher (teacher.path or the teacher stage's) distils into a fresh
                    student with `SEEDDistillation` on every training image, labels hidden
                    (all -1, α = 0): the student's backbone learns the teacher's similarity
                    structure; its classifier layer is frozen, as nothing could teach it.
                    Saves `selfsup_pretrain/model.keras`.
  selfsup           that student trained with cross-entropy on the labelled images only
                    (`data.label_fraction`, the same subset the scratch stage sees):
                    `selfsup.head='fine_tune'` trains every weight, 'linear' only the
                    classifier (a linear probe, BatchNorm frozen too). Saves
                    `selfsup/model.keras`, exported and reported like the other students.

Example:
  config.stages = ("selfsup_pretrain", "selfsup", "export", "report")
  config.teacher.path = "runs/cifar10/teacher/model.keras"
  config.data.label_fraction = 0.1
  pipeline.run_pipeline(config, "runs/selfsup")
"""

import os

import tensorflow as tf
import tf_keras
from absl import logging

from tfkd import from_config, model_files, training
from tfkd.distiller import Distiller
from tfkd.run_context import Run
from tfkd.seed import SEEDDistillation

PRETRAIN, HEAD = "selfsup_pretrain", "selfsup"


def train_config(config, stage: str):
  """`config.train` with the `selfsup` block's epochs (and the head's learning rate)."""
  train, selfsup = from_config.stage_train_config(config, stage), config.selfsup
  if stage == PRETRAIN:
    train.epochs = selfsup.epochs or train.epochs
  else:
    train.epochs = selfsup.head_epochs or train.epochs
    train.learning_rate = selfsup.head_learning_rate or train.learning_rate
  return train


def seed_distillation(selfsup_config) -> SEEDDistillation:
  """The `SEEDDistillation` that `config.selfsup` describes."""
  c = selfsup_config
  with from_config.reading("selfsup"):
    return SEEDDistillation(c.embedding_layer, c.embedding_layer, queue_size=c.queue_size,
                            teacher_temperature=c.teacher_temperature,
                            student_temperature=c.student_temperature)


def classifier_layer(model: tf_keras.Model) -> tf_keras.layers.Layer:
  """The layer that computes the model's logits (the last layer of every tfkd model)."""
  return model.layers[-1]


def with_trainable_head(model: tf_keras.Model, head: str) -> tf_keras.Model:
  """`model` set to train every weight ('fine_tune') or its classifier alone ('linear').

  A frozen BatchNorm also runs in inference mode, so a linear probe keeps the
  backbone's statistics exactly as self-supervised training left them.
  """
  if head not in ("fine_tune", "linear"):
    raise ValueError(f"head must be 'fine_tune' or 'linear', got {head!r}.")
  for layer in model.layers:
    layer.trainable = head == "fine_tune"
  classifier_layer(model).trainable = True
  return model


def _hide_labels(dataset):
  """Batches whose labels are all -1: no label reaches the self-supervised stage, not even a metric."""
  return None if dataset is None else dataset.map(lambda x, y: (x, -tf.ones_like(y)))


def stage_selfsup_pretrain(run: Run) -> None:
  """SEED from the teacher into a fresh student on every training image, without labels."""
  config = train_config(run.config, PRETRAIN)
  if run.done(PRETRAIN, run.model_path(PRETRAIN), config.epochs):
    return
  teacher_path = run.teacher_file()
  run.require([teacher_path], PRETRAIN)
  steps = run.steps_per_epoch(config.batch_size, distillation=True)
  with run.strategy.scope():
    teacher = run.load_teachers([teacher_path])[0]
    student = run.build(run.config.student, "student")
    classifier_layer(student).trainable = False  # no labels: nothing to teach it here
    distiller = Distiller(teacher, student, seed_distillation(run.config.selfsup),
                          student_loss_weight=0.0)
    distiller.compile(optimizer=from_config.optimizer(config, steps))
  logging.info("[%s] SEED %s → %s on %d training images, no labels: embedding layer %r, queue "
               "%d, τ_T=%g, τ_S=%g, %d epochs.", PRETRAIN, teacher_path, run.config.student.model,
               len(run.splits.train[1]), run.config.selfsup.embedding_layer,
               run.config.selfsup.queue_size, run.config.selfsup.teacher_temperature,
               run.config.selfsup.student_temperature, config.epochs)
  with from_config.reading("train"):
    train, val = run.datasets(config.batch_size, PRETRAIN, distillation=True)
  training.fit_resumable(distiller, _hide_labels(train), _hide_labels(val), config.epochs,
                         run.path(PRETRAIN), steps_per_epoch=steps)
  training.save_final_model(distiller.student, run.model_path(PRETRAIN), run.path(PRETRAIN))


def stage_selfsup(run: Run) -> None:
  """The self-supervised student's classifier (or all of it) trained on the labelled images."""
  config, head = train_config(run.config, HEAD), run.config.selfsup.head
  if run.done(HEAD, run.model_path(HEAD), config.epochs):
    return
  run.require([run.model_path(PRETRAIN)], HEAD)
  steps = run.steps_per_epoch(config.batch_size)
  with run.strategy.scope():
    model = model_files.load_model(run.model_path(PRETRAIN))
    with from_config.reading("selfsup"):
      model = with_trainable_head(model, head)
    model.compile(optimizer=from_config.optimizer(config, steps),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
  logging.info("[%s] %s of the SEED student on %d labelled images: %d trainable parameters, "
               "%d epochs.", HEAD, "fine-tuning" if head == "fine_tune" else "linear probe",
               len(run.training_split()[1]), sum(int(tf.size(w)) for w in model.trainable_weights),
               config.epochs)
  run.fit(model, HEAD, config)
  training.save_final_model(model, run.model_path(HEAD), run.path(HEAD))


def summary(run: Run) -> str:
  """The report's lines on the label budget and the self-supervised route ('' without them)."""
  y, lines = run.splits.train[1], []
  if run.config.data.label_fraction < 1:
    lines.append(f"Labels kept for {int((y >= 0).sum()):,} of {len(y):,} training images "
                 f"(data.label_fraction = {run.config.data.label_fraction:g}, class-stratified, "
                 f"data.seed = {run.config.data.seed}): the scratch student and the selfsup head "
                 "train on those alone; distillation stages learn the rest from the teacher alone.")
  if os.path.exists(run.model_path(HEAD)):
    s = run.config.selfsup
    pretrain, head = (training.trained_epochs(run.path(stage)) or train_config(run.config, stage).epochs
                      for stage in (PRETRAIN, HEAD))
    lines.append(f"Self-supervised student: SEED from `{run.teacher_file()}` on all {len(y):,} "
                 f"training images without labels ({pretrain} epochs; layer `{s.embedding_layer}`, "
                 f"queue {s.queue_size}, τ_T = {s.teacher_temperature:g}, τ_S = "
                 f"{s.student_temperature:g}), then `{s.head}` on the labelled images ({head} "
                 "epochs).")
  return " ".join(lines)
