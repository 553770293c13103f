"""`tfkd.train` on two worker processes (`MultiWorkerMirroredStrategy`, TF_CONFIG) trains as one.

Three `python -m tfkd.train` processes start at once on the same config: two
workers of a localhost cluster (`--config.distribute=multiworker`, each told its
place by TF_CONFIG) and one process alone on the same global batch. The model is
a small text CNN without BatchNormalization or dropout, whose per-replica
statistics and random masks would rightly differ from one process's; so both
runs see the same batches in the same order and the same initial weights (the
chief's, broadcast), and only the order of float32 sums differs (each worker
sums its half of the batch, then the two halves are added). The workers get
their own workdirs here only to show what each one writes: the chief everything,
the other worker no file.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfkd.workers import free_local_ports


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = {0: ["good", "fine", "great", "nice"], 1: ["bad", "poor", "awful", "dull"],
         2: ["table", "chair", "door", "wall"]}

CONFIG = """
from configs import defaults

def get_config():
  config = defaults.get_config()
  config.seed = 3
  config.data.source, config.data.augment, config.data.adapt = "text", False, False
  config.data.train_file.path = {train!r}
  config.data.test_file.path = {test!r}
  config.data.val_size, config.data.vocab_size, config.data.max_length = 32, 64, 8
  config.student.model = "text_cnn"
  config.student.kwargs.update(dict(vocab_size=64, embedding_dim=8, filters=8, kernel_sizes=(3,), dropout=0.0,
                                    embedding_dropout=0.0))
  config.train.update(dict(batch_size=32, epochs=3, learning_rate=0.5, schedule="constant",
                           weight_decay=0.0))
  config.export.modes = ("float32",)
  config.export.representative_size = 8
  config.stages = ("scratch", "export")
  return config
"""


def write_tables(folder, train_rows=192, test_rows=32):
  """train.tsv / test.tsv: three classes, each sentence mostly its class's words plus noise."""
  rng = np.random.default_rng(0)
  every_word = sum(WORDS.values(), [])
  for name, rows in (("train.tsv", train_rows), ("test.tsv", test_rows)):
    lines = ["label\tsentence"]
    for i in range(rows):
      label = i % 3
      words = [rng.choice(WORDS[label] if rng.random() < 0.6 else every_word) for _ in range(6)]
      lines.append(f"{label}\t{' '.join(words)}")
    (folder / name).write_text("\n".join(lines) + "\n")
  return str(folder / "train.tsv"), str(folder / "test.tsv")


def start_train(config_file, workdir, tf_config=None):
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  args = [sys.executable, "-m", "tfkd.train", f"--config={config_file}", f"--workdir={workdir}"]
  if tf_config:
    env["TF_CONFIG"] = json.dumps(tf_config)
    args.append("--config.distribute=multiworker")
  return subprocess.Popen(args, cwd=REPO, env={**env, "PYTHONPATH": REPO},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def losses(workdir):
  with open(os.path.join(workdir, "scratch", "history.csv"), newline="") as f:
    return [float(row["loss"]) for row in csv.DictReader(f)]


def files_under(folder):
  return sorted(os.path.relpath(os.path.join(root, name), folder)
                for root, _, names in os.walk(folder) for name in names)


@pytest.mark.slow
def test_two_workers_train_as_one_and_only_the_chief_writes(tmp_path):
  train_file, test_file = write_tables(tmp_path)
  config_file = tmp_path / "tiny_text.py"
  config_file.write_text(CONFIG.format(train=train_file, test=test_file))
  cluster = {"worker": [f"localhost:{port}" for port in free_local_ports(2)]}
  workdirs = {name: str(tmp_path / name) for name in ("chief", "worker1", "alone")}
  processes = {
      "chief": start_train(config_file, workdirs["chief"],
                           {"cluster": cluster, "task": {"type": "worker", "index": 0}}),
      "worker1": start_train(config_file, workdirs["worker1"],
                             {"cluster": cluster, "task": {"type": "worker", "index": 1}}),
      "alone": start_train(config_file, workdirs["alone"]),
  }
  outputs = {name: p.communicate(timeout=240)[0] for name, p in processes.items()}
  for name, p in processes.items():
    assert p.returncode == 0, f"{name}:\n{outputs[name][-3000:]}"

  alone, chief = losses(workdirs["alone"]), losses(workdirs["chief"])
  assert len(alone) == 3 and alone[-1] < 0.9 * alone[0]  # it learns
  # Same batches and weights; float32 sums in another order: differences of ~1e-6 per step.
  np.testing.assert_allclose(chief, alone, rtol=1e-4)
  assert "=== stage scratch ===" in outputs["worker1"]  # worker 1 trains beside the chief
  assert "stage export: left to the chief" in outputs["worker1"]

  # The chief wrote every artifact a one-process run writes, and nothing else; worker 1 no file.
  assert files_under(workdirs["chief"]) == files_under(workdirs["alone"])
  assert "scratch/model.keras" in files_under(workdirs["chief"])
  assert files_under(workdirs["worker1"]) == []

  # The saved models agree as the losses do.
  import tfkd  # pylint: disable=import-outside-toplevel,unused-import  (Keras 2)
  from tfkd import model_files  # pylint: disable=import-outside-toplevel
  ids = np.random.default_rng(1).integers(0, 64, (16, 8)).astype(np.int32)
  predict = lambda workdir: model_files.load_model(
      os.path.join(workdir, "scratch", "model.keras")).predict(ids, verbose=0)
  np.testing.assert_allclose(predict(workdirs["chief"]), predict(workdirs["alone"]),
                             rtol=1e-3, atol=1e-4)
