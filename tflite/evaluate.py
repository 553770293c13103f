r"""Accuracy of a `.tflite` classifier on a dataset split, on the LiteRT interpreter.

  python -m tflite.evaluate --model=runs/x/export/distill_int8.tflite \
      --data=../shared/data/cifar10-jpeg [--split=test] [--batch_size=256]

  # A dataset a run config describes (needed for text: its vocabulary is in the workdir):
  python -m tflite.evaluate --model=runs/sst2/export/distill_int8.tflite \
      --config=configs/sst2_full.py --workdir=runs/sst2

Inputs are quantised with the model's own input scale and zero point and
outputs dequantised with its output parameters (`tflite.interpreter`), batched
`--batch_size` rows per invoke, so the same command serves float32, float16,
dynamic, int8, uint8 and int16x8 models. Data is read by `tfkd.data`, the code
training uses: `--data_source=folder` (train/ and test/ class folders; images
are resized to the model's input size) or `tfds` (`--data` is the TFDS name);
or `--config`, whose `data` block is used as is (any source, text included).

Prints, e.g.:
  accuracy 0.8312 (8312/10000) on the test split of ../shared/data/cifar10-jpeg
"""

import tfkd  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import os

import numpy as np
from absl import app, flags

from tfkd import cli
from tflite import dataset, interpreter

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags (defined only when run as a program, so importing is side-effect free)."""
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("model", None, "Path of the .tflite model.")
  flags.DEFINE_string("data", None, "Dataset: a folder (--data_source=folder) or a TFDS name (tfds).")
  flags.DEFINE_string("data_source", "folder", "tfkd.data source of --data: 'folder' or 'tfds'.")
  config_flags.DEFINE_config_file("config", None, "Optional run config; its data block replaces "
                                  "--data/--data_source (override with --config.data.path=...).")
  flags.DEFINE_string("workdir", None, "With --config: the run's folder (text vocabulary).")
  flags.DEFINE_enum("split", "test", dataset.SPLITS, "Split to evaluate.")
  flags.DEFINE_integer("batch_size", 256, "Examples per interpreter invoke.")
  flags.DEFINE_integer("val_size", 0, "For --split=val: the data.val_size of the run to match.")
  flags.DEFINE_integer("seed", 0, "For --split=val: the data.seed of the run to match.")
  flags.DEFINE_string("tfds_data_dir", "", "TFDS data_dir for --data_source=tfds.")


def evaluate(model_path: str, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict:
  """Top-1 accuracy of a `.tflite` classifier.

  Args:
    model_path: the `.tflite` file.
    x, y: inputs in the Keras model's units (pixels, token ids) and integer labels.
    batch_size: examples per invoke.

  Returns:
    {"accuracy", "correct", "examples"}.

  Example:
    evaluate("m_int8.tflite", test_x, test_y)["accuracy"]   # 0.8312
  """
  accuracy = interpreter.evaluate_accuracy(model_path, x, y, batch_size)
  return {"accuracy": accuracy, "correct": int(round(accuracy * len(y))), "examples": int(len(y))}


def main(argv):
  del argv
  if not FLAGS.model or not os.path.isfile(FLAGS.model):
    raise app.UsageError(f"--model={FLAGS.model!r} is not a file: pass a .tflite path.")
  if FLAGS.config is not None:
    config, described = FLAGS.config.data, "the run config's dataset"
  elif FLAGS.data:
    config = dataset.data_config(FLAGS.data_source, FLAGS.data,
                                 dataset.model_input_shape(FLAGS.model), FLAGS.val_size,
                                 FLAGS.seed, FLAGS.tfds_data_dir)
    described = FLAGS.data
  else:
    raise app.UsageError("Give --data (a dataset folder, or a TFDS name with --data_source=tfds) "
                         "or --config (a run config whose data block describes the dataset).")
  x, y = dataset.load_split(config, FLAGS.split, FLAGS.workdir)
  result = evaluate(FLAGS.model, x, y, FLAGS.batch_size)
  print(f"accuracy {result['accuracy']:.4f} ({result['correct']}/{result['examples']}) on the "
        f"{FLAGS.split} split of {described}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
