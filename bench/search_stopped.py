r"""What did the search's early stopping cost? Its closest calls, trained to the end.

  .venv/bin/python -m bench.search_stopped --config=configs/cifar10_search.py \
      --workdir=runs/cifar10_search --out=runs/bench_search_stopped --per_epoch=1

Reads the studies of a finished (or running) `tfkd.search` in --workdir and, for each
study and each epoch at which Hyperband stopped trials, trains the --per_epoch stopped
trials that read best there for the search's full epochs
(`tfkd.search_stopping.continue_stopped`), in --out, resumably. Writes
search_stopped.md (provenance, the table: where each would have ranked among the
study's trained trials) and search_stopped.png (their curves beside the trained ones).
Pass the search's own config overrides (e.g. --config.train.precision=float32) so that
they train as their trials did.
"""

import os
import time

import optuna
from absl import flags
from ml_collections import config_flags

from bench import common
from tfkd import cli, config_checks, from_config, search, search_stopping
from tfkd.errors import ConfigError
from tflite import files

_CONFIG = config_flags.DEFINE_config_file("config", "configs/cifar10_search.py", "Search config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar10_search", "The search's workdir.")
_OUT = flags.DEFINE_string("out", "runs/bench_search_stopped", "Where the trials and report go.")
_PER_EPOCH = flags.DEFINE_integer("per_epoch", 1, "Stopped trials continued per stopping epoch "
                                  "and study, the best-reading there first.", lower_bound=1)


def main(argv):
  del argv
  meta = common.provenance("bench.search_stopped")
  start = time.time()
  config = from_config.with_defaults(_CONFIG.value)
  config_checks.validate(config)
  if not (config.search.storage or
          os.path.exists(os.path.join(_WORKDIR.value, "search", "studies.db"))):
    raise ConfigError(f"No search in {_WORKDIR.value} (no search/studies.db). Fix: pass the "
                      "--workdir of a search (bench.search or tfkd.search), with its config.")
  names = optuna.get_all_study_names(search.storage(config.search, _WORKDIR.value))
  keys = [(d, m) for d in config.search.devices for m in config.search.modes
          if f"{d}_{m}" in names]
  if not keys:
    raise ConfigError(f"No study of search.devices × search.modes in {_WORKDIR.value} (it has "
                      f"{names or 'none'}). Fix: run bench.search (or tfkd.search) there first, "
                      "with the same config.")
  searcher = search.Search(config, _WORKDIR.value)
  studies = {key: search.study(config.search, _WORKDIR.value, *key) for key in keys}
  rows = search_stopping.continue_stopped(searcher, studies, _PER_EPOCH.value, _OUT.value)
  plot = search_stopping.continued_plot(studies, rows,
                                        os.path.join(_OUT.value, "search_stopped.png"))
  top = sum(r["rank"] == 1 for r in rows)
  lines = ["## What early stopping cost: the closest calls trained on", "", common.header(meta),
           f"- wall time: {(time.time() - start) / 60:.1f} min (continued trials trained by an "
           "earlier run are read, not counted)",
           f"- {len(rows)} closest call(s) trained on to {config.search.epochs} epochs (one "
           "architecture stopped in two studies of a mode trains once); "
           f"{top} of the {sum(r['rank'] is not None for r in rows)} ranked ended at or above "
           "every trained trial of its study", "",
           *search_stopping.continued_lines(rows), "", f"Plot: {plot}"]
  text = "\n".join(lines) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "search_stopped.md"), text)
  print(text)


if __name__ == "__main__":
  cli.run(main)
