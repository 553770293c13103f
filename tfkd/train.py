r"""Runs a tfkd pipeline from a config file: teacher → scratch → distill → export → report.

Usage (`tfkd-train` is the same command once tfkd is pip-installed):
  python -m tfkd.train --config=configs/cifar10_resnet.py --workdir=runs/cifar10
  python -m tfkd.train --config=configs/cifar10_quick.py --workdir=runs/quick \
      --config.train.epochs=3 --config.stages='("distill","export","report")'

Rerunning the same command skips finished stages and resumes an interrupted one. On
several machines, each runs the same command with its own TF_CONFIG and
--config.distribute=multiworker (docs/distillation.md, "Several machines").
"""

from absl import flags, logging
from ml_collections import config_flags

from tfkd import cli, config_checks, from_config, pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, models, .tflite files and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  config = from_config.with_defaults(_CONFIG.value)
  config_checks.validate(config)  # a bad value ends in one line, before the config is logged
  logging.info("Config:\n%s", config)
  pipeline.run_pipeline(config, _WORKDIR.value)


def run():
  """The `tfkd-train` command."""
  cli.run(main)


if __name__ == "__main__":
  run()
