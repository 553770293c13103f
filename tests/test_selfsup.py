"""The label budget and the self-supervised route: SEED inside the Distiller, the two stages."""

import csv
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests.test_pipeline import tiny_config
from tfkd import from_config, models, pipeline, selfsup_stages, splits
from tfkd.distiller import Distiller
from tfkd.run_context import Run
from tfkd.seed import SEEDDistillation


def test_keep_labels_is_stratified_and_fixed_by_its_seed():
  y = np.repeat(np.arange(4), [50, 30, 20, 10])
  kept = splits.keep_labels(y, 0.1, seed=0)
  assert [int(np.sum(kept == c)) for c in range(4)] == [5, 3, 2, 1]   # round(0.1 · count) per class
  assert np.all((kept == -1) | (kept == y))                          # kept labels are the true ones
  assert np.array_equal(kept, splits.keep_labels(y, 0.1, seed=0))
  assert not np.array_equal(kept, splits.keep_labels(y, 0.1, seed=1))
  assert splits.keep_labels(y, 1.0, seed=0) is y
  with pytest.raises(ValueError, match="fraction"):
    splits.keep_labels(y, 0.0, seed=0)


def test_every_stage_sees_the_same_labelled_subset(image_folder, tmp_path):
  config = tiny_config(image_folder)
  config.data.label_fraction = 0.25
  run = Run(config, str(tmp_path))
  x, y = run.splits.train
  labelled = y >= 0
  original = from_config.splits(run.config.data).train[1]
  assert np.array_equal(y, splits.keep_labels(original, 0.25, run.config.data.seed))
  assert 0 < labelled.sum() < len(y)
  supervised_x, supervised_y = run.training_split()
  assert np.array_equal(supervised_x, x[labelled]) and (supervised_y >= 0).all()
  assert run.steps_per_epoch(4) == labelled.sum() // 4
  assert run.steps_per_epoch(4, distillation=True) == len(y) // 4
  # The scratch/selfsup batches hold labelled images only; distillation batches every image.
  train, _ = run.datasets(4, "scratch")
  seen = np.concatenate([b.numpy() for _, b in train.take(run.steps_per_epoch(4))])
  assert (seen >= 0).all()
  train, _ = run.datasets(4, "distill", distillation=True)
  assert (np.concatenate([b.numpy() for _, b in train.take(8)]) == -1).any()
  # A second Run (another stage, a resumed run) keeps exactly the same labels.
  assert np.array_equal(Run(config, str(tmp_path)).splits.train[1], y)


def tiny_model(name, width=4):
  return models.build_model("resnet8", 3, (8, 8, 3), filters=(width, width, 2 * width))


def test_the_distiller_fills_the_seed_queue_after_each_step_and_checkpoints_it(tmp_path):
  tf_keras.utils.set_random_seed(0)
  teacher, student = tiny_model("t", 6), tiny_model("s")
  x = np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 3)).astype(np.float32)
  loss = SEEDDistillation("features", "features", queue_size=12)
  distiller = Distiller(teacher, student, loss, student_loss_weight=0.0)
  distiller.compile(optimizer="sgd")
  distiller.fit(x, -np.ones(8, np.int64), batch_size=4, epochs=1, shuffle=False, verbose=0)
  features = tf_keras.Model(teacher.inputs, teacher.get_layer("features").output)
  expected = features.predict(x, verbose=0)
  expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
  np.testing.assert_allclose(loss.queue.numpy()[:8], expected, rtol=1e-4, atol=1e-6)
  assert int(loss.queue_pointer.numpy()) == 8
  distiller.evaluate(x, -np.ones(8, np.int64), batch_size=4, verbose=0)   # validation: no update
  assert int(loss.queue_pointer.numpy()) == 8
  # The queue is part of the Distiller's checkpoint (what BackupAndRestore resumes from).
  path = tf.train.Checkpoint(model=distiller).save(str(tmp_path / "ckpt"))
  again = Distiller(teacher, tiny_model("s2"), SEEDDistillation("features", "features", queue_size=12),
                    student_loss_weight=0.0)
  tf.train.Checkpoint(model=again).restore(path).expect_partial()
  np.testing.assert_array_equal(again.distillation_losses[0].queue.numpy(), loss.queue.numpy())
  assert int(again.distillation_losses[0].queue_pointer.numpy()) == 8


def test_linear_probe_trains_the_classifier_alone():
  model = selfsup_stages.with_trainable_head(tiny_model("s"), "linear")
  assert [w.name.split("/")[0] for w in model.trainable_weights] == ["logits", "logits"]
  assert len(selfsup_stages.with_trainable_head(model, "fine_tune").trainable_weights) > 2


def test_selfsup_stages_end_to_end(image_folder, tmp_path):
  teacher_path = str(tmp_path / "teacher.keras")
  models.build_model("resnet8", 3, (16, 16, 3), filters=(8, 8, 16)).save(teacher_path)
  config = tiny_config(image_folder)
  config.teacher.path = teacher_path
  config.student.kwargs.filters = (4, 4, 8)
  config.data.label_fraction = 0.25
  config.data.val_size = 0   # fewer functions to trace: the test stays fast
  config.selfsup.queue_size = 32
  config.selfsup.head = "linear"
  config.stages = ("selfsup_pretrain", "selfsup")
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)
  with open(os.path.join(workdir, "selfsup_pretrain", "history.csv")) as f:
    history = list(csv.DictReader(f))
  assert len(history) == 1 and float(history[0]["distillation_loss"]) > 0
  assert float(history[0]["student_loss"]) == 0.0    # labels hidden: no cross-entropy at all
  pretrained = tf_keras.models.load_model(os.path.join(workdir, "selfsup_pretrain", "model.keras"))
  probed = tf_keras.models.load_model(os.path.join(workdir, "selfsup", "model.keras"))
  for before, after in zip(pretrained.layers, probed.layers):   # the linear probe: classifier only
    same = all(np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights()))
    assert same == (before.name != "logits"), before.name
