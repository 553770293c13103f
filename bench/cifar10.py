r"""Benchmark of the full CIFAR-10 pipeline, ResNet-20 teacher → ResNet-8 student.

  .venv/bin/python -m bench.cifar10 --workdir=runs/cifar10_e80 --epochs=80 --teacher_epochs=80

Runs (or resumes) `configs/cifar10_resnet.py` with the given epoch budget and
writes the report plus `bench_cifar10.json` (numbers and provenance) to the workdir.
"""

import os

from absl import flags

from bench import common
from configs import cifar10_resnet
from tfkd import cli, pipeline
from tflite import files

_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar10_e80", "Run folder (resumed if it exists).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_EPOCHS = flags.DEFINE_integer("epochs", 80, "Epochs of the scratch and distilled students.")
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 80, "Epochs of the teacher.")


def main(argv):
  del argv
  meta = common.provenance("bench.cifar10")
  config = cifar10_resnet.get_config()
  config.data.path = _DATA.value
  config.train.epochs = _EPOCHS.value
  config.teacher.epochs = _TEACHER_EPOCHS.value
  pipeline.run_pipeline(config, _WORKDIR.value)
  report = open(os.path.join(_WORKDIR.value, "report.md")).read()
  files.write_json(os.path.join(_WORKDIR.value, "bench_cifar10.json"), {**meta, "report_md": report})
  print(common.header(meta))


if __name__ == "__main__":
  cli.run(main)
