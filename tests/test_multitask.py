"""Multi-task distillation: task-B labels, the two-head student, its loss against NumPy, frozen
teachers, cached teacher logits, the two-output int8 file on LiteRT and TFLM, and the stages end
to end (live and cached)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests.test_pipeline import tiny_config
from tfkd import fold, models, multitask, multitask_stages, pipeline, run_context, training, view_cache, views
from tfkd.errors import ConfigError, DatasetError
from tflite import convert, multi_output

rng = np.random.default_rng(0)


def tiny(classes, name, shape=(8, 8, 3)):
  return models.resnet(8, classes, shape, filters=(4, 4, 8),
                       normalization=([120.0] * 3, [3000.0] * 3), name=name)


def test_task_b_labels_follow_the_class_mapping():
  mapping = multitask.parse_class_mapping(["circle:round", " square : angular", "stripes:angular"])
  y_b, groups = multitask.task_b_labels(np.array([0, 1, 2, -1, 0]), ["circle", "square", "stripes"],
                                        mapping)
  assert groups == ["angular", "round"]
  np.testing.assert_array_equal(y_b, [1, 0, 0, -1, 1])
  with pytest.raises(ValueError, match=r"missing \['stripes'\]"):
    multitask.task_b_labels(np.array([0]), ["circle", "square", "stripes"],
                            {"circle": "a", "square": "b"})
  with pytest.raises(ValueError, match="not 'class:group'"):
    multitask.parse_class_mapping(["circle"])


def test_two_head_model_shares_the_backbone_and_keeps_the_trained_head():
  single = tiny(10, "single")
  double = multitask.two_head_model(single, 4)
  assert {k: v[-1] for k, v in double.output_shape.items()} == {"task_a": 10, "task_b": 4}
  for a, b in zip(single.get_layer("logits").get_weights(), double.get_layer("task_a").get_weights()):
    np.testing.assert_array_equal(a, b)
  assert double.get_layer("stage3") is single.get_layer("stage3")  # the same layer, not a copy
  x = rng.uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(double(x)["task_a"], single(x), atol=1e-5)


def numpy_task_loss(y, t, s, temperature, alpha):
  log_softmax = lambda z: z - z.max(-1, keepdims=True) - np.log(
      np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
  ce = -log_softmax(s)[np.arange(len(y)), np.maximum(y, 0)] * (y >= 0)
  p_t, log_t, log_s = np.exp(log_softmax(t / temperature)), log_softmax(t / temperature), \
      log_softmax(s / temperature)
  kl = temperature ** 2 * (p_t * (log_t - log_s)).sum(-1)
  return alpha * ce + (1 - alpha) * kl


def test_multitask_loss_matches_numpy():
  teachers = {"task_a": tiny(10, "teacher_a"), "task_b": tiny(4, "teacher_b")}
  student = multitask.two_head_model(tiny(10, "student"), 4)
  distiller = multitask.MultiTaskDistiller(teachers, student, temperature=3.0,
                                           student_loss_weight=0.3,
                                           task_weights={"task_a": 1.0, "task_b": 0.5})
  x = rng.uniform(0, 255, (6, 8, 8, 3)).astype(np.float32)
  y = np.stack([rng.integers(0, 10, 6), rng.integers(0, 4, 6)], axis=1).astype(np.int32)
  y[2, 1] = -1  # no task-B label: that task learns from its teacher alone there
  total, per_task = distiller.compute_losses(x, tf.constant(y), training=False)
  s = student(x)
  expected = {task: numpy_task_loss(y[:, k], teachers[task](x).numpy(), s[task].numpy(), 3.0, 0.3)
              for k, task in enumerate(("task_a", "task_b"))}
  for task in expected:
    np.testing.assert_allclose(per_task[task][0], expected[task], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(total, expected["task_a"] + 0.5 * expected["task_b"], rtol=1e-5)
  assert per_task["task_b"][1].numpy().tolist() == [1, 1, 0, 1, 1, 1]


def test_fit_trains_the_student_only():
  teachers = {"task_a": tiny(3, "teacher_a"), "task_b": tiny(2, "teacher_b")}
  before = {k: [w.copy() for w in t.get_weights()] for k, t in teachers.items()}
  student = multitask.two_head_model(tiny(3, "student"), 2)
  start = [w.copy() for w in student.get_weights()]
  distiller = multitask.MultiTaskDistiller(teachers, student)
  distiller.compile(optimizer=tf_keras.optimizers.SGD(0.1))
  x = rng.uniform(0, 255, (16, 8, 8, 3)).astype(np.float32)
  y = np.stack([rng.integers(0, 3, 16), rng.integers(0, 2, 16)], axis=1).astype(np.int32)
  history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0).history
  assert {"loss", "task_a_accuracy", "task_b_accuracy", "task_a_loss", "task_b_loss"} <= set(history)
  for task, teacher in teachers.items():
    for old, new in zip(before[task], teacher.get_weights()):
      np.testing.assert_array_equal(old, new)
  assert any(not np.array_equal(a, b) for a, b in zip(start, student.get_weights()))
  with pytest.raises(Exception, match="predicts 3 classes"):
    multitask.MultiTaskDistiller({"task_a": tiny(3, "a"), "task_b": tiny(3, "b")}, student)


def test_cached_logits_give_the_live_teachers_loss_and_the_teachers_are_not_run(tmp_path):
  images = rng.integers(0, 255, (24, 8, 8, 3)).astype(np.uint8)
  y = np.stack([np.arange(24) % 3, np.arange(24) % 2], axis=1).astype(np.int32)
  teachers, logits = {"task_a": tiny(3, "teacher_a"), "task_b": tiny(2, "teacher_b")}, {}
  for task, teacher in teachers.items():
    path = str(tmp_path / f"{task}.keras")
    training.save_model_atomic(teacher, path)
    fingerprint = view_cache.make_fingerprint([path], None, images, y[:, 0], augment=True, seed=5,
                                              epochs=2)
    view_cache.build(str(tmp_path / task), fingerprint, [teacher], images, batch_size=16)
    logits[task] = view_cache.load(str(tmp_path / task), fingerprint, teacher.output_shape[-1])
  student = multitask.two_head_model(tiny(3, "student"), 2)
  live = multitask.MultiTaskDistiller(teachers, student, temperature=2.0, student_loss_weight=0.3)
  cached = multitask.MultiTaskDistiller({"task_a": None, "task_b": None}, student, temperature=2.0,
                                        student_loss_weight=0.3)
  for model in (live, cached):
    model.compile(optimizer=tf_keras.optimizers.SGD(0.01))
  # Epochs 2 and 3 cycle the 2 cached epochs: each batch's logits belong to its own views.
  batches = views.train_dataset(images, y, 8, seed=5, start_epoch=2, teacher_logits=logits)
  for (x, batch_logits), batch_y in batches.take(6):
    assert sorted(batch_logits) == ["task_a", "task_b"]
    with_cache = cached.test_on_batch((x, batch_logits), batch_y, return_dict=True)
    with_teachers = live.test_on_batch(x, batch_y, return_dict=True)
    for name in ("loss", "task_a_loss", "task_b_loss"):  # float16 storage
      np.testing.assert_allclose(with_cache[name], with_teachers[name], rtol=2e-3, atol=1e-4)
  # Training reads the batches' logits: the teachers (None here) are never needed.
  history = cached.fit(batches, steps_per_epoch=3, epochs=1, verbose=0).history
  assert np.isfinite(history["loss"][0])
  with pytest.raises(ValueError, match="must carry their cached logits"):
    cached.train_on_batch(x, batch_y)
  # Validation batches carry no logits: each task's loss is then the labels' CE alone.
  hard = cached.test_on_batch(x, batch_y, return_dict=True)
  s = student(x)
  np.testing.assert_allclose(hard["task_b_loss"], numpy_task_loss(
      batch_y.numpy()[:, 1], s["task_b"].numpy(), s["task_b"].numpy(), 2.0, 1.0).mean(), rtol=1e-4)


def test_two_output_int8_runs_on_litert_and_tflm_with_outputs_found_by_name():
  tf_keras.utils.set_random_seed(0)  # an untrained model's int8 error depends on its weights
  student = multitask.two_head_model(tiny(10, "student"), 4)
  x = np.random.default_rng(0).uniform(0, 255, (40, 8, 8, 3)).astype(np.float32)
  model_bytes = convert.convert(fold.fold_input_normalization(student), "int8", x[:20])
  details = multi_output.output_details(model_bytes)
  assert sorted(details) == ["task_a", "task_b"]
  assert [details[n]["shape"][-1] for n in ("task_a", "task_b")] == [10, 4]
  assert all(d["dtype"] == np.int8 for d in details.values())
  lite = multi_output.litert_predict(model_bytes, x, batch_size=16)
  on_micro = multi_output.micro_predict(model_bytes, x[:8], arena_size=1 << 20)
  keras = student.predict(x, verbose=0)
  for name, classes in (("task_a", 10), ("task_b", 4)):
    assert lite[name].shape == (40, classes) and on_micro[name].shape == (8, classes)
    # Dequantised int8 outputs stay near the float model's, each head its own.
    assert np.abs(lite[name] - keras[name]).max() < 0.25 * np.abs(keras[name]).max() + 0.05
  parity = multi_output.parity(model_bytes, x[:8], arena_size=1 << 20)
  for name in ("task_a", "task_b"):
    assert parity[name]["max_abs_diff"] <= 1 and parity[name]["argmax_agreement"] >= 0.75


@pytest.mark.slow
def test_multitask_stages_end_to_end(image_folder, tmp_path):
  """The multitask stage, export and report from two given teachers (a 'teacher_b' stage trains like
  the teacher stage does; its relabelled data is what `both_tasks` checks here too)."""
  config = tiny_config(image_folder)
  teachers = {"teacher": tiny(3, "teacher_a", (16, 16, 3)), "teacher_b": tiny(2, "teacher_b", (16, 16, 3))}
  for name, model in teachers.items():
    model.save(str(tmp_path / f"{name}.keras"))
  config.teacher.path = str(tmp_path / "teacher.keras")
  config.multitask.teacher_b.path = str(tmp_path / "teacher_b.keras")
  config.stages = ("teacher_b", "multitask", "export", "report")
  config.multitask.student.model = "resnet8"
  config.multitask.student.kwargs.filters = (4, 4, 8)
  config.export.modes = ("int8",)
  config.report.edge = False
  config.multitask.task_b_classes = ("circle:round", "square:angular", "stripes:angular")
  config.multitask.micro_examples = 6
  config.report.parity_samples = 4
  config.train.precision = "mixed_bfloat16"  # trained in bfloat16, saved and exported as float32
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)
  saved = tf_keras.models.load_model(os.path.join(workdir, "multitask", "model.keras"))
  assert {layer.compute_dtype for layer in saved.layers} == {"float32"}
  int8 = os.path.join(workdir, "export", "multitask_int8.tflite")
  assert multi_output.output_names(int8) == ["task_a", "task_b"]
  section = json.load(open(os.path.join(workdir, "report.json")))["multitask"]
  assert section["task_b_classes"] == ["angular", "round"]
  assert [r["runtime"] for r in section["rows"]] == ["Keras", "Keras", "Keras", "LiteRT",
                                                     "TFLite Micro"]
  assert all(0 <= r[t] <= 1 for r in section["rows"][2:] for t in ("task_a", "task_b"))
  # Both outputs of the one int8 file, TFLite Micro against LiteRT on the same test images.
  assert sorted(section["parity"]) == ["task_a", "task_b"]
  for output in section["parity"].values():
    assert output["samples"] == 4 and output["max_abs_diff"] <= 1
  assert "Multi-task student" in open(os.path.join(workdir, "report.md")).read()
  config.multitask.task_b_classes = ()
  with pytest.raises(ConfigError, match="task_b_classes is empty"):
    pipeline.run_pipeline(config, workdir)


def test_multitask_stage_with_cached_teachers(image_folder, tmp_path, monkeypatch):
  """Both caches are built once; then the stage trains without loading (or running) a teacher; a
  task-B cache made for another teacher file is refused."""
  config = tiny_config(image_folder)
  for name, classes in (("teacher", 3), ("teacher_b", 2)):
    tiny(classes, name, (16, 16, 3)).save(str(tmp_path / f"{name}.keras"))
  config.teacher.path = str(tmp_path / "teacher.keras")
  config.multitask.teacher_b.path = str(tmp_path / "teacher_b.keras")
  config.stages = ("teacher_views", "multitask")
  config.multitask.student.model = "resnet8"
  config.multitask.student.kwargs.filters = (4, 4, 8)
  config.multitask.task_b_classes = ("circle:round", "square:angular", "stripes:angular")
  config.data.augment = True
  config.distill.cached_teacher, config.distill.cache_epochs = True, 2
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)
  fingerprint = json.load(open(os.path.join(workdir, "teacher_views_b", "fingerprint.json")))
  assert [t["file"] for t in fingerprint["teachers"]] == ["teacher_b.keras"]
  for cache in ("teacher_views", "teacher_views_b"):
    assert len(os.listdir(os.path.join(workdir, cache))) == 3   # fingerprint and 2 epochs
  assert os.path.exists(os.path.join(workdir, "multitask", "model.keras"))

  def no_teacher(*args):
    raise AssertionError("a teacher was loaded although its logits are cached")
  monkeypatch.setattr(run_context.Run, "load_teachers", no_teacher)
  monkeypatch.setattr(multitask_stages, "load_teacher_b", no_teacher)
  for name in os.listdir(os.path.join(workdir, "multitask")):
    os.remove(os.path.join(workdir, "multitask", name))
  pipeline.run_pipeline(config, workdir)   # trains again from the caches alone
  assert os.path.exists(os.path.join(workdir, "multitask", "model.keras"))
  os.remove(os.path.join(workdir, "multitask", "model.keras"))
  config.multitask.teacher_b.path = config.teacher.path  # another task-B teacher file
  config.multitask.task_b_classes = ("circle:a", "square:b", "stripes:c")
  with pytest.raises(DatasetError, match=r"teacher_views_b was made for other \['teachers'\]"):
    pipeline.run_pipeline(config, workdir)
