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

# pylint: disable=wrong-import-position  (Keras 2 must be selected before TensorFlow loads)
from tfkd.compress import prune, quantize, strip_pruning
from tfkd.distiller import Distiller
from tfkd.errors import (ConfigError, DatasetError, ModelFileError, ModelMismatchError, TeacherError,
                         TfkdError, TrainingError)
from tfkd.logit_matching import LogitMatching
from tfkd.losses import (AttentionTransfer, ContrastiveDistillation, DistillationLoss,
                         FeatureDistillation, LogitsDistillation, RelationalDistillation)
from tfkd.models import build_model
from tfkd.pipeline import run_pipeline
from tfkd.seed import SEEDDistillation

__version__ = "0.2.0"
