"""SST-2, quick end-to-end run (a few minutes on 2 CPU cores): the full config with one epoch.

  python -m tfkd.train --config=configs/sst2_quick.py --workdir=runs/sst2_quick

The numbers show the pipeline works, not what the models can reach.
"""

from configs import sst2_full


def get_config():
  config = sst2_full.get_config()
  config.teacher.epochs = 1
  config.train.epochs = 1
  config.report.latency_runs = 100
  return config
