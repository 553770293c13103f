"""CIFAR-10, full run: ResNet-20 teacher distilled into a ResNet-8 student.

  python -m tfkd.train --config=configs/cifar10_resnet.py --workdir=runs/cifar10_resnet

Reads the class-folder copy in ../shared/data/cifar10-jpeg; for TFDS use
--config.data.source=tfds (and --config.data.tfds_data_dir=...). Every key and
its meaning: configs/defaults.py.
"""

from configs import defaults


def get_config():
  config = defaults.get_config()
  config.data.source = "folder"
  config.data.path = "../shared/data/cifar10-jpeg"
  config.teacher.model = "resnet20"
  config.teacher.epochs = 80
  config.student.model = "resnet8"
  # Shared by the scratch and distill stages (same epochs and schedule), and the teacher.
  # 80 epochs each reach 87.1% (teacher) and 85.5% (distilled ResNet-8 int8), ~3.4 h on
  # 2 CPU cores (BENCHMARKS.md, section 1).
  config.train.epochs = 80
  config.train.optimizer = "sgd"
  config.train.learning_rate = 0.1
  config.train.weight_decay = 5e-4
  config.train.schedule = "onecycle"
  config.distill.temperature = 4.0
  config.distill.student_loss_weight = 0.1
  return config
