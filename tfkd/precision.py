"""Mixed-precision training: bfloat16 arithmetic, float32 weights, float32 saved models.

`train.precision='mixed_bfloat16'` trains the teacher, scratch, distilled and
self-supervised models as Keras' mixed-precision guide describes: every layer
computes in bfloat16 and keeps float32 weights, and the layers that produce the
model's outputs compute in float32, so the losses and softmax see float32
logits. bfloat16 has float32's exponent range, so unlike float16 it needs no
loss scaling (tfkd's custom `train_step`s have none). CPUs with AMX or
AVX512-BF16 (Intel Sapphire Rapids and later), TPUs and recent GPUs run it in
hardware: on this project's 2-core AMX machine a ResNet-20 teacher epoch took
half its float32 time (BENCHMARKS.md §17). Elsewhere bfloat16 is emulated and
slower: `check_hardware` warns (and on an AVX2-only CPU names TensorFlow's oneDNN
kernels, off there by default: BUILD.md). Even with AMX it depends on the shapes: a
ResNet-8 with a stage of 8 or 24 channels, or a depthwise-separable model,
trained 1.4-5.9x slower in bfloat16 than in float32 on that machine
(BENCHMARKS.md §17, `bench.bf16_shapes`).

What leaves training is float32: `training.save_final_model` saves a float32
copy (`with_policy(model, "float32")`), so the export, the report, the teacher
cache and the compression stages (tfmot's wrappers) never see bfloat16. (A
low-precision teacher, `teacher.compress='bfloat16'`, is another thing: a copy
saved to run in bfloat16 on purpose, `tfkd.teacher_compression`.)

Example:
  model = with_policy(build_model("resnet8", 10, (32, 32, 3)), "mixed_bfloat16")
  model.compile(...); model.fit(...)
  float_model = with_policy(model, "float32")   # same weights, float32 arithmetic
"""

import multiprocessing
import os
from typing import Callable, Optional

import tensorflow as tf
import tf_keras
from absl import logging

POLICIES = ("float32", "mixed_bfloat16")


def policy_of(model: tf_keras.Model) -> str:
  """The policy most of `model`'s layers compute in: 'float32' or a mixed policy."""
  names = [layer.dtype_policy.name for layer in model.layers
           if not isinstance(layer, tf_keras.layers.InputLayer)]
  mixed = [name for name in names if name != "float32"]
  return mixed[0] if mixed else "float32"


def with_policy(model: tf_keras.Model, policy: str) -> tf_keras.Model:
  """A copy of a functional model that computes in `policy`, with `model`'s weights.

  Every layer takes `policy` except the layers whose outputs are the model's
  outputs, which compute in float32 (Keras' advice for mixed precision: the
  losses read float32 logits). The weights are float32 under every policy, so
  the copy's weights equal `model`'s exactly and a round trip to float32
  returns the original model's outputs.

  Args:
    model: a functional `tf_keras` model (not subclassed, no nested models).
    policy: one of `POLICIES`.

  Returns:
    A new functional model with the same name, layers and weights (`model` itself
    when it already computes in `policy`).

  Example:
    trainable = with_policy(model, "mixed_bfloat16")
  """
  if policy not in POLICIES:
    raise ValueError(f"Unknown precision {policy!r}: use one of {POLICIES}.")
  if policy_of(model) == policy:
    return model
  output_layers = set(model.output_names)
  return rebuilt(model, lambda layer: "float32" if layer.name in output_layers else policy)


def rebuilt(model: tf_keras.Model, layer_policy: Callable[[tf_keras.layers.Layer], str]
            ) -> tf_keras.Model:
  """A copy of a flat functional model, each layer computing in `layer_policy(layer)`.

  It holds `model`'s weights, cast to its variables' dtype (float16 under the
  'float16' policy: rounded; float32 under the mixed ones: exact).

  Args:
    model: a functional or Sequential `tf_keras` model without nested models.
    layer_policy: a Keras dtype policy name for each of `model`'s layers.

  Returns:
    A new model with the same name.

  Example:
    half = rebuilt(model, lambda layer: "float16")
  """
  def clone_layer(layer):
    if isinstance(layer, tf_keras.Model):
      raise ValueError(f"Cannot change the precision of layer {layer.name!r}: it is a whole "
                       "model. Build the model without nesting models.")
    return layer.__class__.from_config({**layer.get_config(), "dtype": layer_policy(layer)})

  copy = tf_keras.models.clone_model(model, clone_function=clone_layer)
  copy.set_weights(model.get_weights())
  copy._name = model.name  # pylint: disable=protected-access  (clone_model renames)
  return copy


def cpu_flags() -> set:
  """The instruction-set flags /proc/cpuinfo lists (e.g. 'avx2', 'amx_bf16'); empty elsewhere."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def onednn_enabled() -> Optional[bool]:
  """Whether this process's TensorFlow runs its oneDNN kernels (None if it cannot tell)."""
  try:  # a private module: TensorFlow has no public query for it
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return bool(_pywrap_util_port.IsMklEnabled())


def check_hardware(policy: str) -> None:
  """Warns when `policy` computes in bfloat16 on a CPU with no bfloat16 instructions, and
  says when TensorFlow's faster oneDNN kernels are off on an AVX2 CPU."""
  flags = cpu_flags()
  if not flags or tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"):
    return
  if policy == "mixed_bfloat16" and not flags & {"amx_bf16", "avx512_bf16"}:
    logging.warning("train.precision='mixed_bfloat16', but this CPU has neither AMX nor "
                    "AVX512-BF16: TensorFlow emulates bfloat16 here, which is usually slower "
                    "than float32. Set train.precision='float32' unless a TPU or GPU trains.")
  # TensorFlow turns oneDNN on by itself only with AVX512-VNNI, AVX512-BF16 or AMX.
  if ("avx2" in flags and "avx512f" not in flags and onednn_enabled() is False
      and "TF_ENABLE_ONEDNN_OPTS" not in os.environ
      and multiprocessing.parent_process() is None):  # said once, not again by each search worker
    logging.info("[kernels] TensorFlow runs its own kernels on this CPU (AVX2, no AVX-512), "
                 "not oneDNN's: TF_ENABLE_ONEDNN_OPTS=1, set before Python starts, trained "
                 "tfkd's float32 models 1.3-2.9x faster on such a CPU, but TensorFlow 2.21 "
                 "then aborted training a stem under 8 filters on one thread (BUILD.md).")
