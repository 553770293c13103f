r"""Benchmark: seconds to convert a Keras model to `.tflite`, `tflite.convert` against
`TFLiteConverter.from_keras_model`, and whether the two files compute the same.

  .venv/bin/python -m bench.convert_speed --out=runs/bench_convert_speed

`tflite.convert.convert` converts the model's traced inference call (one concrete
function); `from_keras_model` first saves the whole Keras model as a SavedModel. For each
model (untrained: conversion time does not depend on the weights) and mode (float32, int8
calibrated on 100 images) both converters run `--repeats` times, alternately; the table
gives the median seconds, the ratio, the byte sizes and the largest difference between
the two files' outputs on 32 inputs (raw int8 steps for int8), which should be 0.
Writes convert_speed.{md,json} to `--out` and prints the table.
"""

import statistics
import time

import numpy as np
import tensorflow as tf
from absl import flags

from bench import common
from tfkd import cli, models
from tflite import convert, interpreter

_OUT = flags.DEFINE_string("out", "runs/bench_convert_speed", "Output folder.")
_MODELS = flags.DEFINE_list("models", ["resnet8", "resnet20", "ds_cnn"], "tfkd image models.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Conversions per converter, model and mode.")


def keras_converter(model, mode: str, representative: np.ndarray) -> bytes:
  """`from_keras_model` with the settings `tflite.convert` uses for `mode`."""
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  if mode == "int8":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = convert.representative_dataset(representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
  return converter.convert()


def timed(function, *args):
  start = time.perf_counter()
  result = function(*args)
  return time.perf_counter() - start, result


def main(argv):
  del argv
  meta = common.provenance("bench.convert_speed")
  print(common.header(meta))
  rng = np.random.default_rng(0)
  inputs = rng.uniform(0, 255, (132, 32, 32, 3)).astype(np.float32)
  rows = []
  for name in _MODELS.value:
    model = models.build_model(name, num_classes=10, input_shape=(32, 32, 3))
    for mode in ("float32", "int8"):
      seconds = {"tflite.convert": [], "from_keras_model": []}
      for _ in range(_REPEATS.value):
        t, ours = timed(convert.convert, model, mode, inputs[:100])
        seconds["tflite.convert"].append(t)
        t, theirs = timed(keras_converter, model, mode, inputs[:100])
        seconds["from_keras_model"].append(t)
      outputs = [interpreter.predict(b, inputs[100:], dequantize=False).astype(np.float64)
                 for b in (ours, theirs)]
      median = {k: statistics.median(v) for k, v in seconds.items()}
      rows.append({"model": name, "parameters": model.count_params(), "mode": mode,
                   "seconds": seconds, "median_seconds": median,
                   "speedup": median["from_keras_model"] / median["tflite.convert"],
                   "bytes": {"tflite.convert": len(ours), "from_keras_model": len(theirs)},
                   "max_output_difference": float(np.abs(outputs[0] - outputs[1]).max())})
      print(f"{name} {mode}: {median}", flush=True)
  lines = ["| model | parameters | mode | tflite.convert (s) | from_keras_model (s) | speed-up | "
           "bytes (ours / theirs) | max output difference |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    m, b = r["median_seconds"], r["bytes"]
    lines.append(f"| {r['model']} | {r['parameters']:,} | {r['mode']} | {m['tflite.convert']:.2f} | "
                 f"{m['from_keras_model']:.2f} | {r['speedup']:.1f}× | {b['tflite.convert']:,} / "
                 f"{b['from_keras_model']:,} | {r['max_output_difference']:g} |")
  common.write_table(_OUT.value, "convert_speed", meta, lines, rows)


if __name__ == "__main__":
  cli.run(main)
