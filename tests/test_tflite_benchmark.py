"""The edge report (`tflite.benchmark.edge_report`), `python -m tflite.benchmark` and `tfkd.benchmark`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tf_keras

from tflite import benchmark, convert, cost, devices, interpreter, micro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)


def small_model():
  inputs = tf_keras.Input((10, 10, 3))
  x = tf_keras.layers.Conv2D(6, 3, activation="relu")(inputs)
  outputs = tf_keras.layers.Dense(4)(tf_keras.layers.GlobalAveragePooling2D()(x))
  return tf_keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  tf_keras.utils.set_random_seed(0)
  model = small_model()
  folder = tmp_path_factory.mktemp("edge")
  written = {}
  for mode in ("float32", "int8"):
    written[mode] = str(folder / f"small_{mode}.tflite")
    with open(written[mode], "wb") as f:
      f.write(convert.convert(model, mode, RNG.uniform(0, 255, (16, 10, 10, 3)).astype(np.float32)))
  return written


def test_edge_report_of_an_int8_model(paths, tmp_path):
  inputs = RNG.uniform(0, 255, (12, 10, 10, 3)).astype(np.float32)
  report, text = benchmark.edge_report(paths["int8"], inputs, runs=10, warmup=2,
                                       parity_samples=12, c_out=str(tmp_path / "c"))
  model_bytes = open(paths["int8"], "rb").read()
  m = report["micro"]
  assert report["flash_bytes"] == len(model_bytes) and m["runs"] and m["unsupported_ops"] == []
  assert m["arena_bytes"] == micro.find_arena_size(model_bytes).size
  assert m["arena_over_lower_bound"] == pytest.approx(
      m["arena_bytes"] / cost.model_cost(model_bytes)["peak_activation_bytes"])
  assert m["parity_reference_kernels"]["samples"] == 12
  assert m["parity_reference_kernels"]["max_abs_diff"] <= 1
  assert m["parity_default_kernels"]["max_abs_diff"] <= 1
  assert report["devices"] == devices.fit_table(len(model_bytes), m["arena_bytes"])
  assert report["latency_ms"]["runs"] == 10
  assert all(os.path.exists(p) for p in report["c_files"])
  assert f"1 thread(s) on {interpreter.cpu_name()}, 10 runs" in text  # where it was timed
  for words in ("LiteRT latency p50 / p90", "MACs per inference", "TFLM tensor arena",
                "TFLM vs LiteRT reference kernels", "Cortex-M4 (nRF52840)", "small_int8_model_data.cc"):
    assert words in text
  assert "Warning: TFLite Micro computes" not in text
  json.dumps(report, default=str)  # the pipeline writes it to report.json


def test_edge_report_warns_when_tflm_disagrees_with_litert_and_names_the_op(tmp_path):
  # Keras' dilated Conv1D converts to SPACE_TO_BATCH_ND, whose TFLM int8 kernel pads wrongly.
  tf_keras.utils.set_random_seed(0)
  inputs = tf_keras.Input((24, 8))
  x = tf_keras.layers.Conv1D(32, 3, activation="relu", padding="same")(inputs)
  x = tf_keras.layers.Conv1D(32, 3, dilation_rate=2, padding="same", activation="relu")(x)
  model = tf_keras.Model(inputs, tf_keras.layers.Dense(4)(tf_keras.layers.GlobalMaxPooling1D()(x)))
  samples = RNG.normal(size=(40, 24, 8)).astype(np.float32)
  path = tmp_path / "dilated_int8.tflite"
  path.write_bytes(convert.convert(model, "int8", samples))
  report, text = benchmark.edge_report(str(path), samples, runs=2, warmup=1, parity_samples=20)
  assert report["micro"]["parity_reference_kernels"]["max_abs_diff"] > 1
  assert "Warning: TFLite Micro computes this model otherwise than LiteRT" in text
  assert ("BATCH_TO_SPACE_ND and SPACE_TO_BATCH_ND: wrong padding values (tflite-micro issues "
          "#1646" in text) and text.count("wrong padding values") == 1


def test_edge_report_without_tflm_judges_ram_by_the_lower_bound(paths):
  report, text = benchmark.edge_report(paths["float32"], None, runs=5, warmup=1, run_micro=False)
  assert report["micro"] is None and "TFLM tensor arena" not in text
  assert report["devices_ram_basis"] == "peak-activation lower bound"
  assert report["devices"][0]["ram_used"] == pytest.approx(
      report["cost"]["peak_activation_bytes"] / devices.DEVICES[0].ram_bytes)


def test_random_inputs_cover_the_quantised_range(paths):
  x = benchmark.random_inputs(open(paths["int8"], "rb").read(), 50)
  assert x.shape == (50, 10, 10, 3) and x.dtype == np.float32
  assert x.min() < 10 and x.max() > 245  # the calibration data spanned pixels 0..255


def test_command_line(paths, tmp_path):
  out = tmp_path / "edge.json"
  result = subprocess.run(
      [sys.executable, "-m", "tflite.benchmark", f"--model={paths['int8']}", "--micro",
       "--runs=5", "--warmup=1", "--parity_samples=5", f"--json_out={out}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "TFLM tensor arena" in result.stdout and "| ESP32-S3 |" in result.stdout
  saved = json.loads(out.read_text())
  assert saved["micro"]["arena_bytes"] > 0 and saved["latency_ms"]["runs"] == 5


def run_module(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300)


def test_command_line_on_dataset_inputs(paths, image_folder, tmp_path):
  out = tmp_path / "edge_data.json"
  result = run_module("tfkd.benchmark", f"--model={paths['int8']}", f"--data={image_folder}",
                      "--micro", "--runs=3", "--warmup=1", "--parity_samples=7",
                      f"--json_out={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "TFLM vs LiteRT reference kernels" in result.stdout and "| ESP32-S3 |" in result.stdout
  saved = json.loads(out.read_text())
  # 7 of the folder's 30 test images (16x16 on disk, resized to the model's 10x10).
  assert saved["micro"]["parity_reference_kernels"]["samples"] == 7
  assert saved["latency_ms"]["runs"] == 3
  assert not list(tmp_path.glob("*.partial*"))  # --json_out is written atomically


def test_dataset_command_without_data_points_to_the_random_input_one(paths):
  result = run_module("tfkd.benchmark", f"--model={paths['int8']}")
  assert result.returncode != 0
  assert "Give --data" in result.stderr and "python -m tflite.benchmark" in result.stderr
