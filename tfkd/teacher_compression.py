"""A compressed or low-precision teacher: the teacher in float16/bfloat16, or int8 on LiteRT.

A teacher labels every training view, so its cost is paid once per view (or once per
cached epoch, `tfkd.view_cache`). A smaller or lower-precision teacher makes that
cheaper; whether its students lose accuracy is what the report measures. The
`teacher_compress` stage (`tfkd.compression_stages`) makes the compressed teacher
from these pieces: `low_precision_copy` for float16/bfloat16 (a Keras model that
still teaches live), tfmot pruning for 'prune' (`tfkd.compress`), and for 'int8'
the full-integer `.tflite` that `LiteRTTeacher` runs. A LiteRT teacher cannot run
inside `Distiller.train_step`, so it teaches through the cached views only.

Example:
  half = low_precision_copy(teacher, "bfloat16")        # float32 logits, bfloat16 compute
  int8_teacher = LiteRTTeacher("runs/x/teacher_compress/int8/teacher_int8.tflite")
  logits = int8_teacher(images)                         # dequantized float32 logits
  batch_latency_ms({"float": teacher, "int8": int8_teacher}, images[:256], runs=10)
"""

import os
import time
from typing import Callable, Dict

import numpy as np
import tensorflow as tf
import tf_keras

from tfkd import model_files, precision
from tflite import interpreter

COMPRESSIONS = ("none", "prune", "int8", "float16", "bfloat16")
# Keras dtype policy of each low precision. bfloat16 variables cannot be saved in a
# `.keras` file (h5py has no bfloat16: loading fails with "No cast function
# available"), so the bfloat16 teacher keeps float32 variables, cast to bfloat16 at every
# use ('mixed_bfloat16'): it computes what bfloat16 weights (rounded to nearest) would.
# float16 variables save, so that teacher is float16 throughout.
POLICIES = {"float16": "float16", "bfloat16": "mixed_bfloat16"}
OUTPUT_LAYER = "logits_float32"  # the cast back to float32 the distillation losses read


def low_precision_copy(model: tf_keras.Model, dtype: str) -> tf_keras.Model:
  """A copy of `model` that computes in `dtype` and returns float32 logits.

  Every layer is rebuilt with the dtype policy of `POLICIES[dtype]` (Keras keeps
  BatchNormalization's parameters in float32, as under mixed precision) and gets
  the model's weights (float16 variables round them; bfloat16 compute casts them
  at every use), and a float32 cast is appended so the losses and the logit cache
  see float32.

  Args:
    model: a functional or Sequential float32 Keras model; it is not changed.
    dtype: 'float16' or 'bfloat16'.

  Returns:
    A new functional model (save it as `.keras`; `tfkd.model_files` loads it back).

  Example:
    half = low_precision_copy(teacher, "float16")
    np.abs(half(x) - teacher(x)).max()   # float16 rounding, a few hundredths
  """
  if dtype not in POLICIES:
    raise ValueError(f"dtype={dtype!r}: use one of {list(POLICIES)}.")
  copy = precision.rebuilt(model, lambda layer: POLICIES[dtype])  # float16 weights: rounded
  logits = tf_keras.layers.Activation("linear", dtype="float32", name=OUTPUT_LAYER)(copy.outputs[0])
  return tf_keras.Model(copy.inputs, logits, name=model.name)


def compute_dtype(model: tf_keras.Model) -> str:
  """The dtype a model computes in: 'float32', or that of a `low_precision_copy`."""
  last = model.layers[-2] if model.layers[-1].name == OUTPUT_LAYER else model.layers[-1]
  return last.compute_dtype


def kernel_sparsity(model: tf_keras.Model) -> float:
  """Share of zeros in a Keras model's conv and dense kernels (the weights tfmot prunes).

  Depthwise kernels are left out, as `tflite.sparsity` leaves out DEPTHWISE_CONV_2D.
  """
  kernels = [layer.kernel.numpy() for layer in model.submodules
             if isinstance(layer, (tf_keras.layers.Dense, tf_keras.layers.Conv2D))
             and not isinstance(layer, (tf_keras.layers.DepthwiseConv2D,
                                        tf_keras.layers.SeparableConv2D))]
  total = sum(k.size for k in kernels)
  return float(sum((k == 0).sum() for k in kernels) / total) if total else 0.0


class LiteRTTeacher:
  """A `.tflite` classifier on LiteRT, called like a Keras teacher: inputs in, float32 logits out.

  Inputs are quantized with the model's input scale and zero point and the outputs
  dequantized with its output parameters (`tflite.interpreter.predict`); tfkd's
  models end in their logits layer, so an int8 export emits quantized logits, not
  probabilities.

  Args:
    path: the `.tflite` file.
    batch_size: rows per LiteRT invoke.
    num_threads: interpreter threads (default: every core, as Keras uses).
  """

  def __init__(self, path: str, batch_size: int = 256, num_threads: int = 0):
    self.path = path
    self.name = os.path.splitext(os.path.basename(path))[0]
    self.batch_size = batch_size
    self.interpreter = interpreter.load(path, num_threads=num_threads or os.cpu_count() or 1)

  def __call__(self, x, training: bool = False) -> np.ndarray:
    del training  # a `.tflite` model has only the inference mode
    return interpreter.predict(self.interpreter, np.asarray(x), self.batch_size)


def load_teacher(path: str):
  """A compressed teacher file as it teaches: `LiteRTTeacher` for `.tflite`, else the Keras model
  (loaded in safe mode, `tfkd.model_files`)."""
  return LiteRTTeacher(path) if path.endswith(".tflite") else model_files.load_model(path)


def inference_function(teacher) -> Callable[[np.ndarray], np.ndarray]:
  """A function from a batch to a Keras or LiteRT teacher's float32 logits, as it labels fastest.

  A Keras model's inference call is traced once into a `tf.function`: as a graph, TensorFlow
  fuses each convolution with its BatchNorm and activation, where an eager call runs layer by
  layer (a ResNet-20 labels a batch of 1,024 about 1.7x faster so on 2 CPU cores). Outputs are
  the same. A `LiteRTTeacher` is called as it is.

  Example:
    logits = inference_function(teacher)(images[:1024])
  """
  if not isinstance(teacher, tf_keras.Model):
    return lambda x: np.asarray(teacher(x), np.float32)
  call = tf.function(lambda x: teacher(x, training=False), reduce_retracing=True)
  return lambda x: np.asarray(call(x), np.float32)


def predict_logits(teacher, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """A Keras or LiteRT teacher's float32 logits for every row of `x`, in order."""
  predict = inference_function(teacher)
  return np.concatenate([predict(np.asarray(x[i:i + batch_size], np.float32))
                         for i in range(0, len(x), batch_size)])


def batch_latency_ms(teachers: Dict[str, Callable], batch: np.ndarray, runs: int = 10,
                     warmup: int = 2) -> dict:
  """Milliseconds each teacher takes to label one batch, the teachers timed in turn.

  Each teacher runs the way it labels views (`inference_function`: a Keras model's traced
  inference call, a `LiteRTTeacher` on LiteRT), on the same batch; the runs alternate between the
  teachers, so a burst of background load slows them alike.

  Args:
    teachers: name → Keras model or `LiteRTTeacher`.
    batch: one batch of inputs (e.g. test images).
    runs: timed batches per teacher.
    warmup: untimed batches per teacher first (tracing, allocation).

  Returns:
    name → {"p50", "p90", "mean" (ms per batch), "batch", "runs"}.
  """
  batch = np.asarray(batch, np.float32)
  predictors = {name: inference_function(teacher) for name, teacher in teachers.items()}
  times = {name: [] for name in teachers}
  for step in range(warmup + runs):
    for name, predict in predictors.items():
      start = time.perf_counter()
      predict(batch)  # a numpy result: the batch has finished
      if step >= warmup:
        times[name].append((time.perf_counter() - start) * 1e3)
  return {name: {"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
                 "mean": float(np.mean(t)), "batch": len(batch), "runs": len(t)}
          for name, t in times.items()}
