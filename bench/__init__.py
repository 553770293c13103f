"""Benchmarks behind BENCHMARKS.md: one absl program per module (`python -m bench.<name>`)."""

import os

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it (read when TF loads).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
