"""kill -9 at three points of a small `tfkd.train` run, then the same command again: finished
epochs are not retrained, history.csv lists each epoch once, and the run completes.

Each killed run is `tfkd.train` itself, started by a small driver that sends the process
SIGKILL at a chosen point (inside a training epoch; after the final model's file is written
but before it is renamed into place; the same for the first `.tflite`). tfkd has no test hook.
"""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import write_image_folder
from tfkd import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """
from configs import cifar10_quick

def get_config():
  config = cifar10_quick.get_config()
  config.data.path = {data!r}
  config.data.val_size = 4
  config.teacher.model, config.teacher.epochs = "resnet8", 3
  config.teacher.kwargs.filters = (4, 8, 8)
  config.train.batch_size = 8
  config.export.representative_size = 10
  config.stages = ("teacher", "export")
  return config
"""

DRIVER = """
import os, signal, sys
sys.path.insert(0, {root!r})
point = sys.argv.pop(1)
import tf_keras
from tfkd import train, training

def die(*_):
  os.kill(os.getpid(), signal.SIGKILL)

if point == "mid_epoch":  # in the second batch of the second epoch
  class KillInEpoch(tf_keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
      if self.epoch == 1 and batch == 1:
        die()
  fit = training.fit_resumable
  training.fit_resumable = lambda *a, callbacks=(), **k: fit(*a, callbacks=[*callbacks, KillInEpoch()], **k)
elif point in ("final_save", "export"):  # the file is written, not yet renamed into place
  ending = "model.keras" if point == "final_save" else ".tflite"
  replace = os.replace
  os.replace = lambda src, dst: die() if str(dst).endswith(ending) else replace(src, dst)
train.run()
"""


def history_epochs(stage_dir):
  with open(os.path.join(stage_dir, "history.csv"), newline="") as f:
    return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_kill_9_at_three_points_resumes_without_retraining(tmp_path):
  data = write_image_folder(tmp_path / "images", per_class=(16, 2), size=8)  # 5 batches an epoch
  config_file, driver = tmp_path / "tiny_config.py", tmp_path / "driver.py"
  config_file.write_text(CONFIG.format(data=data))
  driver.write_text(DRIVER.format(root=ROOT))
  workdir = tmp_path / "run"
  teacher_dir, model = str(workdir / "teacher"), workdir / "teacher" / "model.keras"

  def run(*point):
    command = [sys.executable, str(driver), *point, f"--config={config_file}", f"--workdir={workdir}"]
    result = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    trained = [line.split("[teacher] epoch ")[1].split()[0] for line in result.stderr.splitlines()
               if "[teacher] epoch " in line]
    return result, trained

  result, trained = run("mid_epoch")
  assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
  assert trained == ["1/3"] and history_epochs(teacher_dir) == [0] and not model.exists()

  result, trained = run("final_save")  # resumes at epoch 2, killed while saving the model
  assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
  assert trained == ["2/3", "3/3"] and history_epochs(teacher_dir) == [0, 1, 2]
  assert not model.exists() and training.resume_epoch(teacher_dir) == 3  # the checkpoint is kept

  result, trained = run("export")  # nothing to retrain: saves the model, killed during export
  assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
  assert trained == [] and model.exists() and not os.path.exists(os.path.join(teacher_dir, "backup"))
  assert not os.path.exists(workdir / "export" / "teacher_float32.tflite")

  result, trained = run("none")  # the same command, undisturbed: completes
  assert result.returncode == 0, result.stderr[-2000:]
  assert trained == [] and history_epochs(teacher_dir) == [0, 1, 2]
  assert os.path.getsize(workdir / "export" / "teacher_float32.tflite") > 1000
  card = json.loads((workdir / "export" / "teacher_float32.json").read_text())
  assert card["input_shape"] == [8, 8, 3] and "bilinear" in card["resize"]
