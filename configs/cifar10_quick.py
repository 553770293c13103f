"""CIFAR-10, quick end-to-end run for `make demo` (about 10 minutes on 2 CPU cores).

Same pipeline as cifar10_resnet.py with few epochs: the numbers show the
pipeline works, not what the models can reach.
"""

from configs import cifar10_resnet


def get_config():
  config = cifar10_resnet.get_config()
  config.teacher.epochs = 4
  config.train.epochs = 4
  config.report.latency_runs = 100
  return config
