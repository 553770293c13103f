"""Accuracy, per-class precision/recall/F1 and confusion of a `.tflite` classifier, on LiteRT.

Inputs are quantised with the model's own input scale and zero point and
outputs dequantised with its output parameters (`tflite.interpreter`), batched
`batch_size` rows per invoke, so the same call serves float32, float16,
dynamic, int8, uint8 and int16x8 models.

The command line that reads a dataset for it is tfkd's (`tflite` knows no
datasets):

  python -m tfkd.evaluate --model=runs/x/export/distill_int8.tflite \
      --data=../shared/data/cifar10-jpeg

Example:
  evaluate("m_int8.tflite", test_x, test_y)   # {"accuracy": 0.8312, "correct": 8312, ...}
"""

import numpy as np

from tflite import interpreter, metrics


def evaluate(model_path: str, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict:
  """Top-1 accuracy and the per-class metrics of a `.tflite` classifier, from one pass.

  Args:
    model_path: the `.tflite` file.
    x, y: inputs in the Keras model's units (pixels, token ids) and integer labels.
    batch_size: examples per invoke.

  Returns:
    `tflite.metrics.classification_metrics` ("accuracy", "examples", "per_class",
    "macro", "confusion") and "correct".

  Example:
    evaluate("m_int8.tflite", test_x, test_y)["macro"]["f1"]   # 0.8297
  """
  result = metrics.score_metrics(y, interpreter.predict(model_path, x, batch_size))
  return {**result, "correct": int(np.trace(result["confusion"]))}
