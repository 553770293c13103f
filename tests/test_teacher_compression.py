"""A compressed teacher: int8 on LiteRT, float16/bfloat16 compute, pruned; and the runs it teaches."""

import json
import os

import numpy as np
import pytest
import tf_keras
from ai_edge_litert.interpreter import Interpreter

from configs import cifar10_quick
from tests.conftest import make_image
from tfkd import from_config, model_files, models, pipeline, teacher_compression, training, view_cache
from tfkd.distiller import Distiller
from tfkd.errors import ConfigError, DatasetError
from tfkd.losses import LogitsDistillation
from tflite import convert

CLASSES = 3


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  y = np.arange(120) % CLASSES
  return np.stack([make_image(label, rng, size=8) for label in y]).astype(np.float32), y


@pytest.fixture(scope="module")
def teacher(images):
  """A small conv net trained until it separates the three colours."""
  x, y = images
  inputs = tf_keras.Input((8, 8, 3))
  h = tf_keras.layers.Rescaling(1 / 255)(inputs)
  h = tf_keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(h)
  h = tf_keras.layers.BatchNormalization()(h)
  h = tf_keras.layers.ReLU()(h)
  h = tf_keras.layers.GlobalAveragePooling2D()(h)
  model = tf_keras.Model(inputs, tf_keras.layers.Dense(CLASSES)(h), name="teacher")
  tf_keras.utils.set_random_seed(0)
  model.compile(tf_keras.optimizers.Adam(0.05),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, batch_size=20, epochs=15, verbose=0)
  return model


def test_int8_teacher_logits_are_the_dequantized_litert_output(tmp_path, images, teacher):
  x, _ = images
  path = str(tmp_path / "teacher_int8.tflite")
  with open(path, "wb") as f:
    f.write(convert.convert(teacher, "int8", x[:60]))
  logits = teacher_compression.LiteRTTeacher(path, batch_size=32)(x)

  # The same numbers, computed without tfkd: quantize, invoke, dequantize by hand.
  interpreter = Interpreter(model_path=path)
  interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
  interpreter.allocate_tensors()
  given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
  assert given["dtype"] == np.int8 and taken["dtype"] == np.int8
  in_scale, in_zero = given["quantization"]
  interpreter.set_tensor(given["index"],
                         np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8))
  interpreter.invoke()
  out_scale, out_zero = taken["quantization"]
  expected = (interpreter.get_tensor(taken["index"]).astype(np.float32) - out_zero) * out_scale
  np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-6)
  # Logits, not probabilities, and nearly always the float teacher's class.
  assert not np.allclose(logits.sum(-1), 1.0, atol=0.05)
  float_logits = teacher.predict(x, verbose=0)
  assert np.mean(np.argmax(logits, -1) == np.argmax(float_logits, -1)) >= 0.9
  assert np.abs(logits - float_logits).max() < 0.1 * np.abs(float_logits).max()


@pytest.mark.parametrize("dtype, tolerance", [("float16", 0.01), ("bfloat16", 0.05)])
def test_a_low_precision_teacher_computes_in_that_precision_close_to_float32(
    tmp_path, images, teacher, dtype, tolerance):
  x, _ = images
  half = teacher_compression.low_precision_copy(teacher, dtype)
  assert teacher_compression.compute_dtype(half) == dtype
  assert teacher_compression.compute_dtype(teacher) == "float32"
  path = str(tmp_path / "half.keras")
  training.save_model_atomic(half, path)
  loaded = model_files.load_model(path)
  logits = loaded(x, training=False).numpy()
  assert logits.dtype == np.float32
  np.testing.assert_array_equal(logits, half(x, training=False).numpy())
  float_logits = teacher(x, training=False).numpy()
  scale = np.abs(float_logits).max()
  error = np.abs(logits - float_logits).max() / scale
  assert 0 < error < tolerance  # rounded (not float32), yet close
  assert np.mean(np.argmax(logits, -1) == np.argmax(float_logits, -1)) >= 0.95


def tiny_config(image_folder, tmp_path):
  """A run distilling from an untrained teacher file (a stem and one residual block: quick)."""
  config = cifar10_quick.get_config()
  config.data.path, config.data.image_size, config.data.val_size = image_folder, (16, 16), 12
  config.data.augment = False
  config.student.model = "resnet"
  config.student.kwargs.blocks, config.student.kwargs.filters = (1,), (4,)
  splits = from_config.splits(config.data)
  config.teacher.path = str(tmp_path / "teacher.keras")
  training.save_model_atomic(models.build_model(
      "resnet", CLASSES, (16, 16, 3), normalization=splits.channel_stats(), blocks=(1,),
      filters=(8,)), config.teacher.path)
  config.train.epochs, config.train.batch_size = 1, 16
  config.export.representative_size = 20
  config.distill.check_teacher = False  # an untrained teacher is at chance
  config.report.edge, config.report.teacher_batch_runs = False, 2
  config.report.latency_spread_s = 0.0
  return config


def test_the_pruned_teacher_has_the_requested_sparsity_in_its_saved_weights(image_folder, tmp_path):
  config = tiny_config(image_folder, tmp_path)
  config.teacher.compress, config.teacher.prune_sparsity = "prune", 0.6
  config.teacher.prune_epochs = 1
  config.stages = ("teacher_compress",)
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)
  pruned = model_files.load_model(os.path.join(workdir, "teacher_compress", "prune_0.6", "model.keras"))
  kernels = [l.kernel.numpy() for l in pruned.layers
             if isinstance(l, (tf_keras.layers.Conv2D, tf_keras.layers.Dense))]
  assert len(kernels) >= 4
  for kernel in kernels:  # every conv and dense kernel, not only on average
    assert abs(np.mean(kernel == 0) - 0.6) < 0.02
  dense = model_files.load_model(config.teacher.path)
  assert teacher_compression.kernel_sparsity(dense) == 0.0
  # Another kind in the same workdir is made anew beside it, never taken for it.
  config.teacher.compress = "float16"
  pipeline.run_pipeline(config, workdir)
  half = model_files.load_model(os.path.join(workdir, "teacher_compress", "float16", "model.keras"))
  assert teacher_compression.compute_dtype(half) == "float16"
  assert teacher_compression.kernel_sparsity(half) == 0.0


def test_an_int8_teacher_teaches_through_its_own_cache_never_the_float_teachers(
    image_folder, tmp_path):
  config = tiny_config(image_folder, tmp_path)
  config.distill.cached_teacher = True
  config.stages = ("teacher_views",)
  workdir = str(tmp_path / "run")
  pipeline.run_pipeline(config, workdir)  # the float teacher's cache
  config.teacher.compress = "int8"
  config.stages = ("teacher_compress", "teacher_views", "distill", "report")
  with pytest.raises(DatasetError, match=r"made for other \['teachers'\]"):
    pipeline.run_pipeline(config, workdir)

  cache_dir = os.path.join(workdir, "teacher_views")
  for name in os.listdir(cache_dir):
    os.remove(os.path.join(cache_dir, name))
  run = pipeline.run_pipeline(config, workdir)
  int8_path = os.path.join(workdir, "teacher_compress", "int8", "teacher_int8.tflite")
  fingerprint = json.load(open(os.path.join(cache_dir, "fingerprint.json")))
  assert fingerprint["teachers"][0]["sha256"] == view_cache.file_sha256(int8_path)
  # No augmentation: the cached views are the training images, labelled by LiteRT.
  cached = np.load(os.path.join(cache_dir, "epoch_00000.npz"))["logits"].astype(np.float32)
  expected = teacher_compression.LiteRTTeacher(int8_path)(run.splits.train[0].astype(np.float32))
  np.testing.assert_allclose(cached, expected, rtol=1e-3, atol=1e-2)  # stored as float16

  facts = json.load(open(os.path.join(workdir, "report.json")))["teacher_compression"]
  assert facts["compress"] == "int8" and facts["after"]["runtime"] == "LiteRT int8"
  assert facts["after"]["file_bytes"] < facts["before"]["file_bytes"] / 2
  report_md = open(os.path.join(workdir, "report.md")).read()
  assert "## Teacher compression" in report_md and "int8 TFLite (after)" in report_md
  assert "distilled student (Keras float): " in report_md


def test_an_int8_teacher_without_the_cache_is_a_config_error(image_folder, tmp_path):
  config = tiny_config(image_folder, tmp_path)
  config.teacher.compress = "int8"
  with pytest.raises(ConfigError, match="set distill.cached_teacher=True"):
    pipeline.run_pipeline(config, str(tmp_path / "run"))


def test_a_bfloat16_teacher_teaches_live_as_its_cached_logits_do(images, teacher):
  x, y = images
  half = teacher_compression.low_precision_copy(teacher, "bfloat16")
  losses = []
  for live in (True, False):
    student = tf_keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    distiller = Distiller(half if live else None, student, LogitsDistillation(4.0),
                          student_loss_weight=0.1)
    distiller.compile(optimizer="sgd")
    # Cached as the cache labels (a traced call): on CPUs with AMX, oneDNN computes bfloat16
    # convolutions with other kernels in graphs than eagerly, so an eager call differs.
    cached = teacher_compression.inference_function(half)(x[:40])
    batch = x[:40] if live else (x[:40], np.asarray(cached))
    losses.append(distiller.test_on_batch(batch, y[:40], return_dict=True))
  assert losses[0]["distillation_loss"] > 0
  for key in losses[0]:
    np.testing.assert_allclose(losses[0][key], losses[1][key], rtol=1e-5, err_msg=key)


def test_inference_function_is_the_teachers_inference_call(teacher, images):
  """Traced once, it returns the eager inference-mode logits (BatchNorm's moving statistics,
  not the batch's), for full and ragged batches alike."""
  x = images[0][:50]
  predict = teacher_compression.inference_function(teacher)
  for batch in (x[:32], x[32:]):
    got = predict(batch)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, teacher(batch, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, teacher(batch, training=True).numpy(), atol=1e-3)
