"""CIFAR-10 ResNet-20 → ResNet-8, then pruning, QAT and prune-preserving QAT under distillation.

  python -m tfkd.train --config=configs/cifar10_compress.py --workdir=runs/cifar10_resnet

On a workdir where configs/cifar10_resnet.py has finished, the teacher, scratch,
distill and export stages are skipped and only prune, qat, prune_qat and the
report run. For 2:4 structured sparsity instead of 75%:
  --config.compress.prune.m_by_n='(2, 4)'
Keys and what the report's numbers mean: docs/compression.md.
"""

import ml_collections

from configs import cifar10_resnet


def get_config():
  config = cifar10_resnet.get_config()
  config.stages = ("teacher", "scratch", "distill", "export", "prune", "qat", "prune_qat", "report")

  config.compress = ml_collections.ConfigDict()
  # Layers with weights that tfmot cannot prune: 'skip' (left dense, named in a warning)
  # or 'error' (the run stops and names them).
  config.compress.unsupported = "skip"

  # Fine-tuning with the teacher: overrides config.train for prune, qat and prune_qat.
  # 75% on ResNet-8 needs the long recovery: −1.98 points after 15 epochs, −0.68 after 45 with
  # end_fraction 0.5 (BENCHMARKS.md, section 4); 50% is within 0.3 points after 15.
  config.compress.train = ml_collections.ConfigDict()
  config.compress.train.epochs = 45
  config.compress.train.learning_rate = 0.01
  config.compress.train.schedule = "cosine"
  config.compress.train.warmup_epochs = 0

  config.compress.prune = ml_collections.ConfigDict()
  config.compress.prune.sparsity = 0.75      # share of each conv/dense kernel set to zero
  config.compress.prune.m_by_n = ()          # (2, 4) = 2:4 structured sparsity instead (sparsity ignored)
  config.compress.prune.end_fraction = 0.5   # target reached after this share of the steps
  config.compress.prune.frequency = 100      # steps between mask updates

  # QAT and prune_qat: 0 = use compress.train's value.
  config.compress.qat = ml_collections.ConfigDict()
  config.compress.qat.epochs = 5
  config.compress.qat.learning_rate = 0.001
  return config
