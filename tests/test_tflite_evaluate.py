"""`tflite.evaluate.evaluate`, `python -m tfkd.evaluate` and the split reader behind it (`tfkd.eval_data`)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tf_keras

from tfkd import eval_data
from tfkd.errors import ConfigError, DatasetError
from tflite import convert, evaluate, interpreter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def int8_path(tmp_path_factory):
  """An int8 classifier of 12x12 images: the images (16x16 on disk) must be resized to fit it."""
  tf_keras.utils.set_random_seed(0)
  inputs = tf_keras.Input((12, 12, 3))
  x = tf_keras.layers.Conv2D(4, 3, activation="relu")(tf_keras.layers.Rescaling(1 / 255.0)(inputs))
  outputs = tf_keras.layers.Dense(3)(tf_keras.layers.GlobalAveragePooling2D()(x))
  calibration = np.random.default_rng(0).uniform(0, 255, (16, 12, 12, 3)).astype(np.float32)
  path = tmp_path_factory.mktemp("models") / "tiny_int8.tflite"
  path.write_bytes(convert.convert(tf_keras.Model(inputs, outputs), "int8", calibration))
  return str(path)


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", "tfkd.evaluate", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_command_prints_the_accuracy_litert_gives(int8_path, image_folder, tmp_path):
  result = run_cli(f"--model={int8_path}", f"--data={image_folder}", "--batch_size=7",
                   f"--output_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-2000:]
  match = re.search(r"accuracy (\d\.\d{4}) \((\d+)/(\d+)\) on the test split", result.stdout)
  assert match, result.stdout
  config = eval_data.data_config("folder", image_folder, eval_data.model_input_shape(int8_path))
  x, y = eval_data.load_split(config, "test")
  assert x.shape == (30, 12, 12, 3) and int(match.group(3)) == 30
  assert float(match.group(1)) == pytest.approx(interpreter.evaluate_accuracy(int8_path, x, y),
                                                abs=1e-4)
  # The per-class table and confusion matrix, named by the class folders, and the files.
  assert "| class | precision | recall | F1 | support |" in result.stdout
  assert "| true \\ predicted | circle | square | stripes |" in result.stdout
  written = json.load(open(tmp_path / "tiny_int8_test_metrics.json"))
  assert written["class_names"] == ["circle", "square", "stripes"]
  assert written["per_class"]["support"] == [10, 10, 10] and written["correct"] == int(match.group(2))
  assert os.path.getsize(tmp_path / "tiny_int8_test_confusion.png") > 0


def test_evaluate_counts_correct_predictions(int8_path, image_folder):
  x, y = eval_data.load_split(eval_data.data_config("folder", image_folder, (12, 12, 3)), "test")
  result = evaluate.evaluate(int8_path, x, y, batch_size=8)
  assert result["examples"] == 30
  assert result["accuracy"] == pytest.approx(interpreter.evaluate_accuracy(int8_path, x, y))
  assert result["correct"] == round(result["accuracy"] * 30)
  predicted = np.argmax(interpreter.predict(int8_path, x), axis=-1)
  expected = [[np.sum((y == t) & (predicted == p)) for p in range(3)] for t in range(3)]
  np.testing.assert_array_equal(result["confusion"], expected)


def test_test_split_matches_the_training_loader(int8_path, image_folder):
  config = eval_data.data_config("folder", image_folder, (12, 12, 3))
  x, y = eval_data.load_split(config, "test")
  # The shortcut for test reads the same images, in the same order, as the training loader.
  from tfkd import from_config  # pylint: disable=import-outside-toplevel
  full = from_config.splits(config)
  np.testing.assert_array_equal(x, full.test[0])
  np.testing.assert_array_equal(y, full.test[1])


def test_validation_split_needs_val_size(image_folder):
  with pytest.raises(ConfigError, match="val split is empty: set val_size"):
    eval_data.load_split(eval_data.data_config("folder", image_folder, (16, 16, 3)), "val")
  config = eval_data.data_config("folder", image_folder, (16, 16, 3), val_size=12)
  x, _ = eval_data.load_split(config, "val")
  assert len(x) == 12


def test_unknown_split_and_missing_folder(tmp_path):
  config = eval_data.data_config("folder", str(tmp_path / "nowhere"), (16, 16, 3))
  with pytest.raises(ConfigError, match="Unknown split 'dev'"):
    eval_data.load_split(config, "dev")
  with pytest.raises(DatasetError, match="does not exist"):
    eval_data.load_split(config, "test")
