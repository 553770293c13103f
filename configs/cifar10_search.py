"""CIFAR-10: the most accurate student for each device, distilled from a ResNet-20 teacher.

  python -m tfkd.search --config=configs/cifar10_search.py --workdir=runs/cifar10_search

The teacher is cifar10_resnet.py's (80 epochs); a workdir that already holds
one (`teacher/model.keras`) and its cached views reuses them. Two device
profiles (configs/defaults.py, search.profiles): 'mlperf_tiny', the budget of
MLPerf Tiny's ResNet-8 (int8 .tflite at most 100 KiB, TFLM arena at most
64 KiB), and 'small_mcu' (64 KiB flash, 32 KiB arena). Each is searched with
and without the teacher; trials train 15 epochs, Hyperband stops weak ones from
epoch 2; each winner is retrained for 80 epochs. Each study first tries the
hand-picked ResNet-8 (cifar10_resnet.py's student), so that the search's answer
is measured against it on the same footing. Every key: configs/defaults.py.
"""

from configs import cifar10_resnet


def get_config():
  config = cifar10_resnet.get_config()
  config.distill.cached_teacher = True
  config.distill.cache_epochs = 80       # one cached epoch of views per training epoch
  config.search.devices = ("mlperf_tiny", "small_mcu")
  config.search.modes = ("distill", "scratch")
  config.search.space.resolutions = (32, 24, 16)  # downscaled inputs shrink the arena
  config.search.trials = 30
  config.search.epochs = 15
  config.search.final_epochs = 80
  config.search.start_from = (  # the ResNet-8 (`resnet8` is this architecture)
      dict(family="resnet", resolution=32, blocks=(1, 1, 1), widths=(16, 32, 64)),)
  return config
