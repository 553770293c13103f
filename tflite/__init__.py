"""TFLite export and evaluation on the LiteRT and TFLite Micro interpreters."""

import tfkd  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
