"""The pipeline end to end on a tiny image folder: stages, skip on rerun, resume, config errors."""

import json
import os
import time
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from absl import flags
from ml_collections import config_flags

from configs import cifar10_quick
from tfkd import cli, from_config, models, pipeline, training
from tfkd.errors import ConfigError
from tflite import graph, interpreter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(path):
  config = cifar10_quick.get_config()
  config.data.path = path
  config.data.image_size = (16, 16)
  config.data.val_size = 12
  config.teacher.epochs = 2
  config.train.epochs = 1
  config.train.batch_size = 16
  config.export.representative_size = 20
  config.report.latency_runs = 5
  config.report.warmup_runs = 1
  config.report.latency_spread_s = 0.0
  config.distill.check_teacher = False  # a 2-epoch teacher's BatchNorm has not settled
  return config


@pytest.mark.slow
def test_pipeline_end_to_end_and_rerun(image_folder, tmp_path, capsys, caplog, monkeypatch):
  workdir = str(tmp_path / "run")
  config = tiny_config(image_folder)
  config.report.stream_seconds = 0.5
  config.report.stream_fps = 40.0
  config.report.latency_spread_s = 0.4
  pauses = []
  monkeypatch.setattr(interpreter, "time", types.SimpleNamespace(
      perf_counter=time.perf_counter, sleep=lambda s: pauses.append(s) or time.sleep(s)))
  pipeline.run_pipeline(config, workdir)
  for stage in ("teacher", "scratch", "distill"):
    assert os.path.exists(os.path.join(workdir, stage, "model.keras"))
  for name in ("distill_float32", "distill_int8", "teacher_float32", "scratch_float32",
               "scratch_int8"):
    assert os.path.getsize(os.path.join(workdir, "export", f"{name}.tflite")) > 1000
  report = json.load(open(os.path.join(workdir, "report.json")))
  labels = [r["label"] for r in report["rows"]]
  assert labels == ["teacher (Keras float)", "student from scratch (Keras float)",
                    "distilled student (Keras float)", "distilled student, float32 TFLite",
                    "distilled student, int8 TFLite", "student from scratch, int8 TFLite"]
  assert all(0 <= r["accuracy"] <= 1 and r["latency_ms"] > 0 for r in report["rows"])
  # The Keras row is timed on its float32 file, in the same interleaved measurement as that row.
  assert report["rows"][2]["latency_ms"] == report["rows"][3]["latency_ms"]
  # The edge section reports the int8 student's row measurement, not a second timing.
  assert report["edge"]["latency_ms"]["p50_quietest_round"] == report["rows"][4]["latency_ms"]
  # The report's 5 rounds are spread over report.latency_spread_s: 4 pauses of 0.1 s.
  assert pauses == [pytest.approx(0.1)] * 4 and report["latency"]["spread_s"] == 0.4
  assert report["rows"][4]["file_bytes"] < report["rows"][3]["file_bytes"]  # int8 is smaller
  # The int8 row is the exported file's accuracy on the test split, measured again here.
  test_x, test_y = from_config.splits(config.data).test
  assert report["rows"][4]["accuracy"] == pytest.approx(interpreter.evaluate_accuracy(
      os.path.join(workdir, "export", "distill_int8.tflite"), test_x, test_y))
  assert all(r["gzip_bytes"] > 0 for r in report["rows"][3:])  # measured on every .tflite row
  assert os.path.getsize(os.path.join(workdir, "report.png")) > 0
  # Per-class metrics from the pass that gave the accuracy: the confusion matrix counts every
  # test example once, its diagonal is the accuracy, its rows the class supports.
  assert report["class_names"] == ["circle", "square", "stripes"]
  for r in report["rows"]:
    confusion = np.array(r["metrics"]["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == report["test_examples"] == 30
    assert np.trace(confusion) / confusion.sum() == pytest.approx(r["accuracy"])
    assert r["metrics"]["per_class"]["support"] == [10, 10, 10]
    assert r["macro_f1"] == pytest.approx(np.mean(r["metrics"]["per_class"]["f1"]))
  markdown = open(os.path.join(workdir, "report.md")).read()
  assert "## Per-class metrics" in markdown and "![confusion matrices](report_confusion.png)" in markdown
  assert f"Latency: single-stream LiteRT invoke on {interpreter.cpu_name()}, " in markdown
  assert markdown.count("| class | precision | recall | F1 | support |") == len(report["rows"])
  assert markdown.count("| true \\ predicted | circle | square | stripes |") == len(report["rows"])
  assert os.path.getsize(os.path.join(workdir, "report_confusion.png")) > 0
  # The export folds the input normalisation (tfkd.fold); the saved student keeps it for training.
  int8 = graph.read(os.path.join(workdir, "export", "distill_int8.tflite"))
  assert not {"SUB", "MUL"} & set(int8.op_names())
  assert tf_keras.models.load_model(os.path.join(workdir, "distill", "model.keras")).get_layer("normalize")
  assert "| distilled student, int8 TFLite |" in open(os.path.join(workdir, "report.md")).read()
  assert "`resnet8`, 1 epochs." in open(os.path.join(workdir, "report.md")).read()
  # The streaming section: the int8 student and the float teacher, 20 frames each at 40 fps.
  streams = report["stream"]
  assert [os.path.basename(s["model"]) for s in streams] == ["distill_int8.tflite",
                                                             "teacher_float32.tflite"]
  assert all(s["frames_offered"] == 20 and s["frames_processed"] + s["dropped"] == 20
             for s in streams)
  assert "| distill_int8.tflite | 1 | 40 fps |" in open(os.path.join(workdir, "report.md")).read()
  assert os.path.getsize(os.path.join(workdir, "report_stream.png")) > 0

  # A rerun skips every finished stage: the models are not retrained, even when the config
  # now asks for more epochs; that is said, and the report keeps the epochs actually trained.
  stamp = os.path.getmtime(os.path.join(workdir, "teacher", "model.keras"))
  config = tiny_config(image_folder)
  config.stages = ("teacher", "scratch", "distill", "report")
  config.train.epochs = 3
  config.report.robust = "on"   # the report again, with PGD accuracy on 12 test images
  config.report.robust_examples = 12
  config.report.pgd_steps = 3
  caplog.clear()
  pipeline.run_pipeline(config, workdir)
  assert os.path.getmtime(os.path.join(workdir, "teacher", "model.keras")) == stamp
  assert "[distill] the finished model" in caplog.text and "trained for 1 epochs" in caplog.text
  assert "[teacher] the finished model" not in caplog.text  # teacher.epochs still matches
  assert training.trained_epochs(os.path.join(workdir, "teacher")) == 2
  assert "`resnet8`, 1 epochs." in open(os.path.join(workdir, "report.md")).read()
  rows = json.load(open(os.path.join(workdir, "report.json")))["rows"]
  assert len(rows) == 6 and all(0 <= r["pgd_accuracy"] <= 1 for r in rows)
  # White-box PGD on the Keras models never helps them; the .tflite rows get the transferred images.
  assert all(r["pgd_accuracy"] <= r["pgd_clean_accuracy"] for r in rows[:3])
  report_md = open(os.path.join(workdir, "report.md")).read()
  assert "## Robustness" in report_md and "on 12 test images" in report_md


class InterruptAfter(tf_keras.callbacks.Callback):
  """Stops the process's training after `epochs` epochs, as a kill would."""

  def __init__(self, epochs):
    super().__init__()
    self.epochs = epochs

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == self.epochs:
      raise KeyboardInterrupt


class RecordEpochs(tf_keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.epochs = []

  def on_epoch_begin(self, epoch, logs=None):
    self.epochs.append(epoch)


@pytest.mark.slow
def test_a_stage_trains_the_same_whichever_stages_ran_before_it(image_folder, tmp_path):
  # As a run resumed after its teacher stage: scratch alone must equal scratch after teacher.
  config = tiny_config(image_folder)
  config.stages = ("teacher", "scratch")
  pipeline.run_pipeline(config, str(tmp_path / "both"))
  config.stages = ("scratch",)
  pipeline.run_pipeline(config, str(tmp_path / "alone"))
  after_teacher, alone = (
      tf_keras.models.load_model(str(tmp_path / run / "scratch" / "model.keras"), compile=False)
      for run in ("both", "alone"))
  for a, b in zip(after_teacher.get_weights(), alone.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_interrupted_training_resumes_from_last_epoch(tmp_path):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(64, 8, 8, 3)).astype(np.float32), rng.integers(0, 3, 64)
  dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 4 steps an epoch

  def model():
    m = models.resnet(8, 3, (8, 8, 3), filters=(4, 4, 4), name="m")
    m.compile(optimizer=tf_keras.optimizers.SGD(0.01), loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m

  stage_dir = str(tmp_path / "stage")
  first = model()
  with pytest.raises(KeyboardInterrupt):
    training.fit_resumable(first, dataset, None, epochs=4, stage_dir=stage_dir,
                           callbacks=[InterruptAfter(2)])

  second, record = model(), RecordEpochs()
  training.fit_resumable(second, dataset, None, epochs=4, stage_dir=stage_dir, callbacks=[record])
  assert record.epochs == [2, 3]  # epochs 0 and 1 were not run again
  # The optimizer state was restored too: 4 epochs of 4 steps in all, not 2 + 4 x 2.
  assert second.optimizer.iterations.numpy() == 16
  with open(os.path.join(stage_dir, "history.csv")) as f:
    assert [row.split(",")[0] for row in f.read().split()[1:]] == ["0", "1", "2", "3"]
  # The last epoch's checkpoint outlives fit until the final model is saved.
  backup = os.path.join(stage_dir, "backup")
  assert training.resume_epoch(stage_dir) == 4
  training.save_final_model(second, str(tmp_path / "model.keras"), stage_dir)
  assert not os.path.exists(backup) and os.path.exists(tmp_path / "model.keras")


def test_unknown_stage_is_refused(image_folder, tmp_path):
  config = tiny_config(image_folder)
  config.stages = ("teacher", "distil")
  with pytest.raises(ConfigError, match="distil.*choose from"):
    pipeline.run_pipeline(config, str(tmp_path))


def test_unknown_override_names_the_key_its_siblings_and_the_fix(tmp_path):
  config_file = tmp_path / "my_config.py"
  config_file.write_text(
      "import ml_collections\n"
      "def get_config():\n"
      "  return ml_collections.ConfigDict(dict(seed=0, student=dict(kwargs=dict(filters=8, hidden=0))))\n")
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values)
  check = lambda *overrides: cli.unknown_override(
      ["prog", f"--config={config_file}", *overrides], flag_values=flag_values)
  assert check("--config.student.kwargs.hidden=64", "--config.seed=1") is None
  message = check("--config.seed=1", "--config.student.kwargs.hiden=64")
  assert "'student.kwargs.hiden'" in message and "did you mean 'hidden'" in message
  assert "['filters', 'hidden']" in message and "get_config() in" in message
  assert "seed is a value, not a group" in check("--config.seed.x=1")
