r"""Accuracy of a `.tflite` classifier on a dataset split, on the LiteRT interpreter.

  python -m tfkd.evaluate --model=runs/x/export/distill_int8.tflite \
      --data=../shared/data/cifar10-jpeg [--split=test] [--batch_size=256]

  # A dataset a run config describes (needed for text: its vocabulary is in the workdir):
  python -m tfkd.evaluate --model=runs/sst2/export/distill_int8.tflite \
      --config=configs/sst2_full.py --workdir=runs/sst2

Data is read by `tfkd.data`, the code training uses (`tfkd.eval_data`):
`--data_source=folder` (train/ and test/ class folders; images are resized to
the model's input size) or `tfds` (`--data` is the TFDS name); or `--config`,
whose `data` block is used as is (any source, text included). A model whose
input shape or class count does not match the data is refused. The accuracy
itself is `tflite.evaluate.evaluate`: inputs quantised with the model's own
parameters, so every TFLite mode works.

Prints, e.g.:
  accuracy 0.8312 (8312/10000) on the test split of ../shared/data/cifar10-jpeg
"""

import os

from absl import app, flags

from tfkd import cli, eval_data
from tflite import evaluate as tflite_evaluate

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
  flags.DEFINE_enum("split", "test", eval_data.SPLITS, "Split to evaluate.")
  flags.DEFINE_integer("batch_size", 256, "Examples per interpreter invoke.", lower_bound=1)
  flags.DEFINE_integer("val_size", 0, "For --split=val: the data.val_size of the run to match.",
                       lower_bound=0)
  flags.DEFINE_integer("seed", 0, "For --split=val: the data.seed of the run to match.",
                       lower_bound=0)
  flags.DEFINE_string("tfds_data_dir", "", "TFDS data_dir for --data_source=tfds.")


def main(argv):
  """Reads the split the flags name and prints the model's accuracy on it."""
  del argv
  if not FLAGS.model or not os.path.isfile(FLAGS.model):
    raise app.UsageError(f"--model={FLAGS.model!r} is not a file: pass a .tflite path.")
  if FLAGS.config is not None:
    config, described = FLAGS.config.data, "the run config's dataset"
  elif FLAGS.data:
    config = eval_data.data_config(FLAGS.data_source, FLAGS.data,
                                   eval_data.model_input_shape(FLAGS.model), FLAGS.val_size,
                                   FLAGS.seed, FLAGS.tfds_data_dir)
    described = FLAGS.data
  else:
    raise app.UsageError("Give --data (a dataset folder, or a TFDS name with --data_source=tfds) "
                         "or --config (a run config whose data block describes the dataset).")
  x, y = eval_data.load_split(config, FLAGS.split, FLAGS.workdir, model_path=FLAGS.model)
  result = tflite_evaluate.evaluate(FLAGS.model, x, y, FLAGS.batch_size)
  print(f"accuracy {result['accuracy']:.4f} ({result['correct']}/{result['examples']}) on the "
        f"{FLAGS.split} split of {described}")


def run():
  """The `tfkd-evaluate` command: defines the flags (only now, never on import), runs `main`."""
  define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
