"""The project's real architectures (untrained) convert to int8 and run on TFLite Micro like on LiteRT."""

import numpy as np
import pytest

from tfkd import models
from tflite import convert, cost, graph, micro

RNG = np.random.default_rng(0)
# 16x16 inputs: the same layers and ops as at 32x32, at a quarter of the TFLM reference-kernel time.
PIXELS = RNG.uniform(0, 255, (12, 16, 16, 3)).astype(np.float32)
NORMALIZATION = ([125.0, 123.0, 114.0], [3900.0, 3700.0, 4300.0])


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "ds_cnn"])
def test_model_runs_on_tflm_as_on_litert(name):
  model = models.build_model(name, num_classes=10, input_shape=(16, 16, 3),
                             normalization=NORMALIZATION)
  tflite_bytes = convert.convert(model, "int8", representative_data=PIXELS[:8])
  support = micro.check_ops(tflite_bytes)
  assert support.runs and support.unsupported == [], support.unsupported
  arena = micro.find_arena_size(tflite_bytes)
  lower_bound = cost.peak_activation_bytes(graph.read(tflite_bytes))
  assert lower_bound <= arena.head < arena.size
  # Within 1 LSB of LiteRT's reference kernels (identical here). LiteRT's default XNNPACK
  # kernels requantise with float rounding: 1 LSB apart from the first conv on, growing through
  # a deep untrained network, so they are compared on a small model (test_tflite_micro.py) and
  # on the trained one (bench/edge.py).
  reference = micro.parity(tflite_bytes, PIXELS[8:], arena.size, reference_kernels=True)
  assert reference["samples"] == 4 and reference["max_abs_diff"] <= 1
