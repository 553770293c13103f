r"""Streaming benchmark: the int8 ResNet-8 student and the float ResNet-20 teacher under a steady stream.

  .venv/bin/python -m bench.stream --data=../shared/data/cifar10-jpeg --out=runs/bench_stream \
      [--workdir=runs/cifar10_e80] [--seconds=15] [--rates=30,0] [--threads=1,2]

CIFAR-10 test images (`--max_frames` of them, spread over the classes, decoded
before the clock starts) stream through each `.tflite` on LiteRT, batch 1, at
every `--rates` (frames per second; 0 = as fast as possible) with every
`--threads`, for `--seconds` each (`tflite.stream`: a one-frame buffer, the
newest frame wins, older unprocessed ones are dropped; late = result after the
next frame was due). Reported per stream: sustained frames per second, dropped
and late frames, latency p50/p99/p99.9 from a frame's due time to its result,
invoke p50, CPU ms per frame and average cores busy.

Models: `--workdir`'s export/distill_int8.tflite and export/teacher_float32.tflite
when both exist; otherwise a freshly built ResNet-8 (int8, calibrated on
`--representative_size` training images) and ResNet-20 (float32) of the
pipeline's architecture: latency does not depend on the trained weight values
(dense kernels, same shapes and ops), so untrained models time the same.

Writes stream.{md,json,png} and the `.tflite` files it built to `--out`.
"""

import os

import numpy as np
from absl import flags

from bench import common
from tfkd import cli, data, models
from tflite import convert, files, stream

_WORKDIR = flags.DEFINE_string("workdir", "", "A finished run whose export/ holds distill_int8.tflite "
                               "and teacher_float32.tflite ('' or missing: build fresh models).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_OUT = flags.DEFINE_string("out", "runs/bench_stream", "Output folder.")
_SECONDS = flags.DEFINE_float("seconds", 15.0, "Length of each stream.")
_RATES = flags.DEFINE_list("rates", ["30", "0"], "Target frames per second; 0: as fast as possible.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "LiteRT interpreter threads.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 500, "Test images decoded and cycled through.")
_REPRESENTATIVE_SIZE = flags.DEFINE_integer("representative_size", 200,
                                            "Training images calibrating the fresh int8 student.")


def model_files() -> tuple:
  """(int8 student path, float teacher path, where their weights come from)."""
  if _WORKDIR.value:
    student, teacher = (os.path.join(_WORKDIR.value, "export", name)
                        for name in ("distill_int8.tflite", "teacher_float32.tflite"))
    if os.path.isfile(student) and os.path.isfile(teacher):
      return student, teacher, f"trained, from {_WORKDIR.value}/export"
  train_paths, _, _ = data.list_image_folder(os.path.join(_DATA.value, "train"))
  calibration = data.decode_images(
      list(data.evenly_spaced(np.array(train_paths), _REPRESENTATIVE_SIZE.value)), (32, 32))
  # The pipeline's first layer normalises pixels with the training statistics.
  pixels = calibration.astype(np.float32).reshape(-1, 3)
  normalization = (pixels.mean(axis=0), pixels.var(axis=0))
  built = {}
  for name, mode in (("resnet8", "int8"), ("resnet20", "float32")):
    model = models.build_model(name, 10, (32, 32, 3), normalization)
    built[name] = files.write_atomic(os.path.join(_OUT.value, f"{name}_{mode}.tflite"),
                                     convert.convert(model, mode, calibration.astype(np.float32)))
  return (built["resnet8"], built["resnet20"],
          "untrained models of the same architecture (latency does not depend on weight values)")


def main(argv):
  del argv
  meta = common.provenance("bench.stream")
  meta["load_average_1min_start"] = os.getloadavg()[0]  # what else ran: tails depend on it
  print(common.header(meta))
  student, teacher, weights = model_files()
  frames = stream.frames_by_shape([student, teacher], os.path.join(_DATA.value, "test"),
                                  _MAX_FRAMES.value)
  panels, reports = {}, []
  for fps in (float(r) for r in _RATES.value):
    for threads in (int(t) for t in _THREADS.value):
      cell = stream.stream_models([student, teacher], frames, fps, threads, _SECONDS.value)
      panels[f"{stream.fps_text(fps)}, {threads} thread(s)"] = cell
      reports += cell
      print(stream.markdown(cell))
  table = stream.markdown(reports)
  meta["load_average_1min_end"] = os.getloadavg()[0]
  note = (f"Weights: {weights}. {len(next(iter(frames.values())))} CIFAR-10 test images cycled, "
          f"{_SECONDS.value:g} s per stream, batch 1, LiteRT; {stream.POLICY}. 1-minute load "
          f"average {meta['load_average_1min_start']:.1f} at the start, "
          f"{meta['load_average_1min_end']:.1f} at the end ({os.cpu_count()} cores).")
  print(f"\n{note}\n\n{table}")
  files.write_atomic(os.path.join(_OUT.value, "stream.md"),
                     f"# Streaming benchmark\n\n{common.header(meta)}\n{note}\n\n{table}\n\n"
                     "![latency over time](stream.png)\n")
  files.write_json(os.path.join(_OUT.value, "stream.json"),
                   {**meta, "weights": weights, "frames": os.path.join(_DATA.value, "test"),
                    "policy": stream.POLICY, "streams": [stream.without_timeline(r) for r in reports]})
  stream.plot_latency(panels, os.path.join(_OUT.value, "stream.png"),
                      "int8 ResNet-8 student and float ResNet-20 teacher on LiteRT, streamed")


if __name__ == "__main__":
  cli.run(main)
