"""What the SST-2 benchmarks share: a saved Keras model's accuracy, TFLite Micro's outputs.

Example:
  accuracy, parameters = keras_accuracy("runs/sst2/distill/model.keras", dev_x, dev_y)
  outputs = tflm_predictions(model_bytes, dev_x, arena_size=32768)   # int8 [N, classes]
"""

import numpy as np

from tfkd import data, model_files
from tflite import interpreter
from tflite_micro.python.tflite_micro import runtime


def keras_accuracy(path: str, x: np.ndarray, y: np.ndarray) -> tuple:
  """(dev accuracy, parameters) of a saved Keras model."""
  model = model_files.load_model(path)
  model.compile(metrics=["accuracy"])
  _, accuracy = model.evaluate(data.eval_dataset(x, y, 500), verbose=0)
  return float(accuracy), int(model.count_params())


def tflm_predictions(model_bytes: bytes, x: np.ndarray, arena_size: int) -> np.ndarray:
  """Raw outputs of TFLite Micro, one input row per invoke (as a device runs it)."""
  detail = interpreter.load(model_bytes).get_input_details()[0]
  tflm = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
  outputs = []
  for row in x:
    tflm.set_input(interpreter.quantize_input(row[None], detail), 0)
    tflm.invoke()
    outputs.append(tflm.get_output(0)[0].copy())
  return np.stack(outputs)
