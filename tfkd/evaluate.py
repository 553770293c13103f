r"""Accuracy, per-class metrics and confusion matrix of a `.tflite` classifier on a dataset split.

  python -m tfkd.evaluate --model=runs/x/export/distill_int8.tflite \
      --data=../shared/data/cifar10-jpeg [--split=test] [--batch_size=256] [--output_dir=runs/x/eval]

  # A dataset a run config describes (needed for text: its vocabulary is in the workdir):
  python -m tfkd.evaluate --model=runs/sst2/export/distill_int8.tflite \
      --config=configs/sst2_full.py --workdir=runs/sst2

Data is read by `tfkd.data`, the code training uses (`tfkd.eval_data`):
`--data_source=folder` (train/ and test/ class folders; images are resized to
the model's input size) or `tfds` (`--data` is the TFDS name); or `--config`,
whose `data` block is used as is (any source, text included). A model whose
input shape or class count does not match the data is refused. The numbers
are `tflite.evaluate.evaluate`: inputs quantised with the model's own
parameters, so every TFLite mode works; accuracy, per-class precision, recall
and F1 and the confusion matrix all come from one pass (`tflite.metrics`).
With `--output_dir`, `<model>_<split>_metrics.json` and
`<model>_<split>_confusion.png` are written there too.

Prints, e.g.:
  accuracy 0.8312 (8312/10000) on the test split of ../shared/data/cifar10-jpeg
  macro precision 0.8318, recall 0.8312, F1 0.8297
  | class | precision | recall | F1 | support |   (then the confusion matrix)
"""

import os

from absl import app, flags

from tfkd import cli, eval_data
from tflite import evaluate as tflite_evaluate
from tflite import files, metrics

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
  flags.DEFINE_string("output_dir", None, "Optional folder for the metrics JSON and the "
                      "confusion-matrix PNG.")


def write_outputs(result: dict, class_names, output_dir: str, model_path: str, split: str) -> tuple:
  """Writes `<model>_<split>_metrics.json` and `<model>_<split>_confusion.png` in `output_dir`;
  returns their paths."""
  stem = os.path.join(output_dir, f"{os.path.splitext(os.path.basename(model_path))[0]}_{split}")
  title = (f"{os.path.basename(model_path)}, {split}\n{result['accuracy'] * 100:.2f}%, "
           f"macro F1 {result['macro']['f1']:.3f}")
  return (files.write_json(f"{stem}_metrics.json", {"model": model_path, "split": split,
                                                    "class_names": class_names, **result}),
          metrics.plot_confusion({title: result["confusion"]}, f"{stem}_confusion.png", class_names))


def main(argv):
  """Reads the split the flags name and prints the model's accuracy and per-class metrics on it."""
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
  x, y, class_names = eval_data.load_named_split(config, FLAGS.split, FLAGS.workdir,
                                                 model_path=FLAGS.model)
  result = tflite_evaluate.evaluate(FLAGS.model, x, y, FLAGS.batch_size)
  macro = result["macro"]
  print(f"accuracy {result['accuracy']:.4f} ({result['correct']}/{result['examples']}) on the "
        f"{FLAGS.split} split of {described}\n"
        f"macro precision {macro['precision']:.4f}, recall {macro['recall']:.4f}, "
        f"F1 {macro['f1']:.4f}\n\n{metrics.per_class_markdown(result, class_names)}")
  if len(class_names) <= metrics.ANNOTATED_CLASSES:
    print(f"\n{metrics.confusion_markdown(result['confusion'], class_names)}")
  if FLAGS.output_dir:
    paths = write_outputs(result, class_names, FLAGS.output_dir, FLAGS.model, FLAGS.split)
    print(f"\nwritten: {', '.join(paths)}")


def run():
  """The `tfkd-evaluate` command: defines the flags (only now, never on import), runs `main`."""
  define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
