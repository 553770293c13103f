r"""The edge report of a `.tflite` model on the first test images of a dataset.

  python -m tfkd.benchmark --model=runs/x/export/distill_int8.tflite \
      --data=../shared/data/cifar10-jpeg [--data_source=folder] [--micro] \
      [--parity_samples=100] [--threads=1] [--runs=200] [--warmup=20] \
      [--c_out=firmware/] [--json_out=edge.json]

The report is `tflite.benchmark.edge_report` (LiteRT latency, cost, TFLite
Micro ops / arena / parity, device fit, C array); this command only adds the
inputs: the first `--parity_samples` test examples of `--data`, read by
`tfkd.eval_data` as training reads them (images resized to the model's input).
Realistic inputs matter for parity (activations as in use). Without a dataset,
`python -m tflite.benchmark --model=...` gives the same report on random inputs.
"""

from absl import app, flags

from tfkd import cli, eval_data
from tflite import benchmark as edge_benchmark

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags (defined only when run as a program, so importing is side-effect free).

  Those of `python -m tflite.benchmark`, plus the dataset.
  """
  edge_benchmark.define_flags()
  flags.adopt_module_key_flags(edge_benchmark)  # so --help lists them beside --data
  flags.DEFINE_string("data", None, "Dataset for the inputs: a folder (--data_source=folder) or "
                      "a TFDS name (tfds); its first test examples are used.")
  flags.DEFINE_string("data_source", "folder", "tfkd.data source of --data: 'folder' or 'tfds'.")


def main(argv):
  """Reads the first test examples of `--data`, then prints (and saves) the edge report."""
  del argv
  path = edge_benchmark.model_path_from_flags()
  if not FLAGS.data:
    raise app.UsageError("Give --data (a dataset folder, or a TFDS name with --data_source=tfds) "
                         "for the inputs, or run `python -m tflite.benchmark` for random inputs.")
  config = eval_data.data_config(FLAGS.data_source, FLAGS.data, eval_data.model_input_shape(path))
  inputs, _ = eval_data.load_split(config, "test")
  eval_data.check_model_fits(path, inputs)  # the classes do not matter here, the inputs do
  edge_benchmark.report_from_flags(path, inputs[:max(FLAGS.parity_samples, 1)])


def run():
  """The `tfkd-benchmark` command: defines the flags (only now, never on import), runs `main`."""
  define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
