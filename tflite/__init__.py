"""TFLite export and proof on the LiteRT and TFLite Micro interpreters.

The lower layer of the project: it imports nothing from `tfkd` (tfkd uses it).

Modules:
  convert     Keras model -> `.tflite` in every quantisation mode.
  interpreter LiteRT: batched prediction, accuracy, latency.
  evaluate    top-1 accuracy of a `.tflite` classifier on arrays.
  graph       the one `.tflite` flatbuffer reader: tensors, operators, buffers.
  cost        parameters, MACs, peak-activation lower bound.
  sparsity    stored kernels: share of zeros, m:n pattern, gzip size.
  micro       TFLite Micro: op support, smallest arena, parity, flash.
  devices     device profiles and the fit verdict.
  firmware    `.tflite` -> C++ array for firmware.
  benchmark   the edge report (`python -m tflite.benchmark`, random inputs; `--stream`).
  stream      streaming benchmark: frames at a target rate, fps, drops, tail latency.
  files       atomic writes of artifacts.
  errors      `TfliteError`, the base of the errors above.
  cli         commands that end input errors with one line and exit code 2.
"""

import os

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it (read when TF loads).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
