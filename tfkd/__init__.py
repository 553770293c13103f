"""tfkd: knowledge distillation and compression of Keras models for edge devices.

The public API:
  Distiller                       a Keras model that trains a student against frozen teachers.
  DistillationLoss and its kinds  LogitsDistillation, LogitMatching, FeatureDistillation,
                                  AttentionTransfer, ContrastiveDistillation, RelationalDistillation,
                                  SEEDDistillation (no labels: `tfkd.seed`).
  build_model                     the ResNet, DS-CNN and text models by name.
  prune, quantize, strip_pruning  tfmot pruning and quantization-aware training (`tfkd.compress`).
  run_pipeline                    teacher → scratch → distill → export → report from a config.
  TfkdError and its kinds         input errors whose message names the fix.

Example:
  import tfkd
  distiller = tfkd.Distiller(teacher, student, tfkd.LogitsDistillation(temperature=4.0))
  distiller.compile(optimizer="sgd", metrics=["accuracy"])
  distiller.fit(train_ds, epochs=30)

tfmot supports Keras 2 only, so tfkd uses `tf_keras`. TensorFlow picks the
Keras behind `tf.keras` from `TF_USE_LEGACY_KERAS` the first time `tf.keras`
is used; this is the one place that sets it, and it refuses, with the fix, a
process where TensorFlow has already chosen Keras 3.
"""

import os
import sys


def _select_keras_2() -> None:
  """Makes `tf.keras` mean tf_keras (Keras 2), or raises ImportError saying how to."""
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
  tf = sys.modules.get("tensorflow")
  if tf is None:
    return  # TensorFlow will read the variable when it is imported
  if not tf.keras.layers.Layer.__module__.startswith("tf_keras"):
    raise ImportError(
        "tfkd needs Keras 2 (tf_keras) behind tf.keras, but TensorFlow was imported and used "
        "with Keras 3 before tfkd. Fix: import tfkd before anything that uses tf.keras, or set "
        "TF_USE_LEGACY_KERAS=1 in the environment before starting Python.")


_select_keras_2()
# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The public API, imported on first use (PEP 562): `tfkd.Distiller` works as before, while a
# module that needs no TensorFlow (`tfkd.errors`, `tfkd.encode_text`, `tfkd.search_workers`)
# loads without it: a process that only encodes text or reports an error starts in about a
# second instead of ten.
_PUBLIC = {
    "prune": "tfkd.compress", "quantize": "tfkd.compress", "strip_pruning": "tfkd.compress",
    "Distiller": "tfkd.distiller",
    **{name: "tfkd.errors" for name in ("ConfigError", "DatasetError", "ModelFileError",
                                         "ModelMismatchError", "TeacherError", "TfkdError",
                                         "TrainingError")},
    "LogitMatching": "tfkd.logit_matching",
    **{name: "tfkd.losses" for name in ("AttentionTransfer", "ContrastiveDistillation",
                                         "DistillationLoss", "FeatureDistillation",
                                         "LogitsDistillation", "RelationalDistillation")},
    "build_model": "tfkd.models",
    "run_pipeline": "tfkd.pipeline",
    "SEEDDistillation": "tfkd.seed",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.2.0"


def __getattr__(name: str):
  """A public name, or a submodule, imported the first time it is asked for."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  if name in _PUBLIC:
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
  elif importlib.util.find_spec(f"tfkd.{name}") is not None:
    value = importlib.import_module(f"tfkd.{name}")  # `import tfkd; tfkd.models.MODELS`
  else:
    raise AttributeError(f"module 'tfkd' has no attribute {name!r}")
  globals()[name] = value
  return value


def __dir__():
  return sorted({*globals(), *_PUBLIC})
