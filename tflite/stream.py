"""Streaming benchmark: frames at a target rate through a `.tflite` on LiteRT, batch 1.

A surveillance camera asks for frames per second and tail latency under a
steady stream, not the latency of one image on an idle interpreter. Here
frames arrive on a wall-clock schedule, frame k due at t0 + k/fps, like a
camera's, and one LiteRT interpreter (`threads` threads, batch 1) processes
them: quantise the input, invoke, dequantise the output.

Drop policy, that of a camera driver with a one-frame buffer: when a result is
ready, the newest frame that has arrived is processed next; the older ones it
overwrote in the buffer count as *dropped*. A processed frame is *late* when its
result came after the next frame was due (latency > 1/fps). `fps=0` means as
fast as possible: each frame is due when the previous result is ready, so
nothing is dropped or late and the sustained rate is the model's maximum.

Per frame: latency from the due time to the result (includes the wait in the
buffer and the OS's wake-up delay), and the invoke alone. CPU time is the
process's (`time.process_time`, every LiteRT thread) over the stream, divided
by the processed frames.

Frames are decoded and resized before the clock starts (a camera delivers them
decoded): `load_frames` reads an image folder or a video file (PyAV).

Example:
  frames = load_frames("../shared/data/cifar10-jpeg/test", (32, 32), 3)
  reports = [stream_report(p, frames, fps=30, threads=1, seconds=20)
             for p in ("student_int8.tflite", "teacher_float32.tflite")]
  print(markdown(reports)); plot_latency({"30 fps, 1 thread": reports}, "stream.png")
"""

import math
import os
import time
from typing import Callable, Dict, Mapping, Sequence

import numpy as np

from tflite import files, interpreter
from tflite.errors import TfliteError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
POLICY = ("one-frame buffer: the newest arrived frame is processed next, older unprocessed "
          "frames are dropped; late = result after the next frame was due")


def image_input_shape(model_path: str) -> tuple:
  """(height, width, channels) of a `.tflite` image model's input.

  Raises:
    TfliteError when the input is not an image batch [1, H, W, C].
  """
  shape = tuple(int(s) for s in interpreter.load(model_path).get_input_details()[0]["shape"])
  if len(shape) != 4:
    raise TfliteError(f"{model_path} takes inputs of shape {list(shape)}, not images "
                      "[batch, height, width, channels]: stream frames only through an image model.")
  return shape[1:]


def _resize(images, image_size: Sequence[int]) -> np.ndarray:
  """Bilinear resize to `image_size`, rounded to uint8 pixels as the training loader does."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (only when frames are read)
  resized = tf.image.resize(images, tuple(image_size), method="bilinear")
  return tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8).numpy()


def _folder_frames(folder: str, image_size, channels: int, max_frames: int) -> np.ndarray:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder)
                 for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise TfliteError(f"--frames={folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)}, "
                      "searched recursively): point it at a folder of images or a video file.")
  # Spread over the sorted files, so a class-folder dataset gives every class.
  chosen = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, max_frames).astype(int))]
  frames = []
  for path in chosen:
    try:
      image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
      raise TfliteError(f"Cannot decode image {path} ({e.message.splitlines()[0]}): "
                        "re-encode or delete it and run again.") from None
    frames.append(_resize(image, image_size))
  return np.stack(frames)


def _video_frames(path: str, image_size, channels: int, max_frames: int) -> np.ndarray:
  try:
    import av  # pylint: disable=import-outside-toplevel  (only for video sources)
  except ImportError:
    raise TfliteError(f"Reading the video {path} needs PyAV: pip install av "
                      "(pinned in requirements.txt), or pass a folder of images.") from None
  frames = []
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise TfliteError(f"{path} has no video stream: pass a video file or a folder of images.")
      for frame in container.decode(video=0):
        frames.append(frame.to_ndarray(format="gray" if channels == 1 else "rgb24"))
        if len(frames) == max_frames:
          break
  except av.FFmpegError as e:
    raise TfliteError(f"Cannot decode the video {path} ({e}): pass a video FFmpeg can read "
                      "(e.g. .mp4, .avi) or a folder of images.") from None
  if not frames:
    raise TfliteError(f"The video {path} has no frames: pass another video or a folder of images.")
  stacked = np.stack(frames)
  return _resize(stacked[..., None] if channels == 1 else stacked, image_size)


def load_frames(source: str, image_size: Sequence[int], channels: int = 3,
                max_frames: int = 500) -> np.ndarray:
  """Frames from an image folder or a video file, resized (bilinear) to the model's input.

  Args:
    source: a folder of images (searched recursively, sorted; `max_frames` of
      them spread evenly over the list) or a video file (its first `max_frames`
      frames, decoded by FFmpeg through PyAV).
    image_size: (height, width) of the model's input.
    channels: 3 (RGB) or 1 (grey).
    max_frames: frames kept in memory; the stream cycles through them.

  Returns:
    uint8 array [N, height, width, channels] of pixels.

  Raises:
    TfliteError naming the fix for a missing path, an empty folder, or a file
    that cannot be decoded.

  Example:
    frames = load_frames("../shared/data/cifar10-jpeg/test", (32, 32))
  """
  if max_frames < 1:
    raise TfliteError(f"max_frames={max_frames}: keep at least 1 frame.")
  if os.path.isdir(source):
    return _folder_frames(source, image_size, channels, max_frames)
  if os.path.isfile(source):
    return _video_frames(source, image_size, channels, max_frames)
  raise TfliteError(f"--frames={source!r} does not exist: pass a folder of images or a video file.")


def paced_stream(process: Callable[[int], None], fps: float, seconds: float,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> dict:
  """Runs `process(k)` on the frames of a stream paced at `fps` for `seconds` (see the policy).

  Args:
    process: handles frame k (blocking until its result is ready).
    fps: target rate; frame k is due at t0 + k/fps. 0: as fast as possible
      (each frame due when the previous result is ready).
    seconds: length of the stream: round(fps·seconds) frames are offered, or,
      with fps=0, frames keep coming until `seconds` have passed.
    clock, sleep: the time source (injectable to test the policy).

  Returns:
    {"index", "due", "end"}: arrays over processed frames (frame number, due and
    result times in seconds from t0), "offered", "dropped", "duration" (seconds
    from t0 to the end of the offered window or the last result, whichever is later).

  Example:
    paced_stream(lambda k: time.sleep(0.01), fps=30, seconds=2)["dropped"]   # 0
  """
  index, due, end = [], [], []
  t0 = clock()
  if fps <= 0:
    now = t0
    while now - t0 < seconds:
      process(len(index))
      index.append(len(index))
      due.append(now - t0)
      now = clock()
      end.append(now - t0)
    offered, window = len(index), 0.0
  else:
    offered = max(1, round(fps * seconds))
    window = offered / fps
    k = 0
    while k < offered:
      now = clock()
      if now < t0 + k / fps:
        sleep(t0 + k / fps - now)
        now = clock()
      newest = min(offered - 1, max(k, math.floor((now - t0) * fps)))  # k..newest-1 overwritten
      process(newest)
      index.append(newest)
      due.append(newest / fps)
      end.append(clock() - t0)
      k = newest + 1
  return {"index": np.array(index), "due": np.array(due), "end": np.array(end),
          "offered": offered, "dropped": offered - len(index),
          "duration": max(window, end[-1] if end else 0.0)}


def percentiles_ms(milliseconds: np.ndarray) -> dict:
  """p50, p99, p99.9, max and mean of a set of times in ms (NumPy's linear interpolation)."""
  return {"p50": float(np.percentile(milliseconds, 50)), "p99": float(np.percentile(milliseconds, 99)),
          "p99.9": float(np.percentile(milliseconds, 99.9)), "max": float(np.max(milliseconds)),
          "mean": float(np.mean(milliseconds))}


def stream_report(model_path: str, frames: np.ndarray, fps: float = 30.0, threads: int = 1,
                  seconds: float = 20.0, warmup: int = 20) -> dict:
  """Streams `frames` (cycled) through a `.tflite` at `fps` and measures it.

  Args:
    model_path: the `.tflite` file.
    frames: inputs in model units (e.g. uint8 pixels from `load_frames`, or
      test images), without batch dimension; quantised with the model's input
      scale and zero point inside the timed step.
    fps: target frames per second; 0: as fast as possible.
    threads: LiteRT interpreter threads.
    seconds: length of the stream.
    warmup: untimed invokes before the stream starts.

  Returns:
    A JSON-ready dict: "model", "fps_target", "threads", "seconds", "frames_offered",
    "frames_processed", "dropped", "late", "sustained_fps", "duration_s",
    "latency_ms" and "invoke_ms" ({p50, p99, p99.9, max, mean}), "cpu_ms_per_frame",
    "cpu_cores" (average cores busy), "policy", and "timeline" ({"due_s",
    "latency_ms"} lists over processed frames, for the plot).

  Example:
    stream_report("runs/x/export/distill_int8.tflite", frames, fps=30, threads=2)["latency_ms"]["p99"]
  """
  if not len(frames):
    raise TfliteError("No frames to stream: pass at least one input.")
  if fps < 0 or seconds <= 0 or threads < 1:
    raise TfliteError(f"fps={fps}, seconds={seconds}, threads={threads}: use fps ≥ 0 "
                      "(0: as fast as possible), seconds > 0 and threads ≥ 1.")
  runner = interpreter.load(model_path, num_threads=threads)
  runner.allocate_tensors()
  input_detail, output_detail = runner.get_input_details()[0], runner.get_output_details()[0]
  invoke_seconds = []

  def process(k: int) -> None:
    runner.set_tensor(input_detail["index"],
                      interpreter.quantize_input(np.asarray(frames[k % len(frames)])[None], input_detail))
    start = time.perf_counter()
    runner.invoke()
    invoke_seconds.append(time.perf_counter() - start)
    interpreter.dequantize_output(runner.get_tensor(output_detail["index"]), output_detail)

  for k in range(warmup):
    process(k)
  invoke_seconds.clear()
  cpu_start = time.process_time()
  stream = paced_stream(process, fps, seconds)
  cpu_seconds = time.process_time() - cpu_start
  latency = (stream["end"] - stream["due"]) * 1e3
  processed = len(latency)
  return {
      "model": model_path, "fps_target": fps, "threads": threads, "seconds": seconds,
      "frames_offered": stream["offered"], "frames_processed": processed,
      "dropped": stream["dropped"], "late": int(np.sum(latency > 1e3 / fps)) if fps > 0 else 0,
      "sustained_fps": processed / stream["duration"], "duration_s": stream["duration"],
      "latency_ms": percentiles_ms(latency),
      "invoke_ms": percentiles_ms(np.array(invoke_seconds) * 1e3),
      "cpu_ms_per_frame": cpu_seconds * 1e3 / processed,
      "cpu_cores": cpu_seconds / stream["duration"], "policy": POLICY,
      "timeline": {"due_s": stream["due"].tolist(), "latency_ms": latency.tolist()}}


def without_timeline(report: dict) -> dict:
  """The report without its per-frame lists (for JSON files that stay small)."""
  return {key: value for key, value in report.items() if key != "timeline"}


def fps_text(fps: float) -> str:
  """'30 fps' or 'max rate' for fps=0."""
  return f"{fps:g} fps" if fps > 0 else "max rate"


def markdown(reports: Sequence[dict]) -> str:
  """A markdown table, one row per stream report."""
  lines = ["| model | threads | target | sustained fps | offered | dropped | late | "
           "latency p50 ms | p99 ms | p99.9 ms | invoke p50 ms | CPU ms/frame | CPU cores |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in reports:
    lat = r["latency_ms"]
    lines.append(f"| {os.path.basename(r['model'])} | {r['threads']} | {fps_text(r['fps_target'])} | "
                 f"{r['sustained_fps']:,.1f} | {r['frames_offered']:,} | {r['dropped']:,} | "
                 f"{r['late']:,} | {lat['p50']:.3f} | {lat['p99']:.3f} | {lat['p99.9']:.3f} | "
                 f"{r['invoke_ms']['p50']:.3f} | {r['cpu_ms_per_frame']:.3f} | "
                 f"{r['cpu_cores']:.2f} |")
  return "\n".join(lines)


def plot_latency(panels: Mapping[str, Sequence[dict]], path: str, title: str = "") -> str:
  """Latency over the stream's time, one panel per setting, one line per model.

  Args:
    panels: panel title → stream reports (with their "timeline").
    path: the image file (e.g. stream.png).
    title: the figure's title.

  Returns:
    `path`.
  """
  columns = min(2, len(panels))
  rows = math.ceil(len(panels) / columns)
  fig, axes = files.new_figure(rows, columns, figsize=(6.5 * columns, 3.8 * rows), squeeze=False)
  for axis, (name, reports) in zip(axes.flat, panels.items()):
    for r in reports:
      # Dots, not lines: thousands of frames at the maximum rate would be a solid band.
      axis.plot(r["timeline"]["due_s"], r["timeline"]["latency_ms"], ".", markersize=2, alpha=0.5,
                label=f"{os.path.basename(r['model'])}: p99 {r['latency_ms']['p99']:.2f} ms, "
                      f"{r['sustained_fps']:,.0f} fps")
    fps = reports[0]["fps_target"] if reports else 0
    if fps > 0:
      axis.axhline(1e3 / fps, color="black", linestyle="--", linewidth=0.8, label="frame period")
    axis.set_yscale("log")
    axis.set_xlabel("time in the stream (s)")
    axis.set_ylabel("latency, due → result (ms, log)")
    axis.set_title(name)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="upper right", markerscale=4)
  for axis in list(axes.flat)[len(panels):]:
    axis.set_visible(False)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return files.save_figure(fig, path)


def frames_by_shape(model_paths: Sequence[str], source: str, max_frames: int = 500) -> dict:
  """(height, width, channels) → `load_frames(source, ...)` for each model's input shape."""
  shapes = {image_input_shape(path) for path in model_paths}
  return {shape: load_frames(source, shape[:2], shape[2], max_frames) for shape in shapes}


def stream_models(model_paths: Sequence[str], frames: Dict[tuple, np.ndarray], fps: float,
                  threads: int, seconds: float, warmup: int = 20) -> list:
  """`stream_report` of each model in turn, on frames sized for its input.

  Args:
    model_paths: `.tflite` files (e.g. the int8 student and the float teacher).
    frames: (height, width, channels) → frames of that size (`frames_by_shape`).
    fps, threads, seconds, warmup: as in `stream_report`.

  Returns:
    The reports, in the order of `model_paths`.
  """
  return [stream_report(path, frames[image_input_shape(path)], fps, threads, seconds, warmup)
          for path in model_paths]
