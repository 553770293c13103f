"""tfkd: knowledge distillation and compression of Keras models for edge devices.

tfmot only supports Keras 2, so the whole project uses `tf_keras`. TensorFlow
reads `TF_USE_LEGACY_KERAS` when it is first imported, which is why this is the
one place that sets it, before anything imports TensorFlow. Every other module
(including `tflite/` and the tests) imports `tfkd` first.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
