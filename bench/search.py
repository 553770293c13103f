r"""Budget search benchmark: the best student per device, distilled and from scratch.

  .venv/bin/python -m bench.search --config=configs/cifar10_search.py \
      --workdir=runs/cifar10_search --out=runs/bench_search

Runs (or continues) `tfkd.search` with the config, then writes search_bench.md:
provenance, the winners (retrained, int8, verified on LiteRT and TFLite Micro),
each study's share of candidates rejected before training and of trials stopped
early and its trials' time (`search_report.study_summary`), this command's wall
time, and with --chain_log the search's wall time over all its attempts in
`bench/cifar10_chain.sh`'s log (`chain_log.attempt_seconds`); the Pareto plot is
`workdir/search/pareto.png`.
A workdir that already holds a trained teacher (`teacher/model.keras`) and its cached
views reuses them: copy them from a pipeline run with the same config to save hours.
"""

import os
import time

from absl import flags
from ml_collections import config_flags

from bench import chain_log, common
from tfkd import cli, config_checks, from_config, search, search_report, search_stopping
from tfkd.run_context import make_workdir
from tflite import files

_CONFIG = config_flags.DEFINE_config_file("config", "configs/cifar10_search.py", "Search config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar10_search", "The search's workdir.")
_OUT = flags.DEFINE_string("out", "runs/bench_search", "Where search_bench.md goes.")
_WORKERS = flags.DEFINE_integer("workers", 1, "Processes on this machine that run the trials, "
                                "each pinned to its share of the cores (`tfkd.search_workers`).")
_CHAIN_LOG = flags.DEFINE_string("chain_log", "", "The chain's log (runs/cifar10_chain.log), for "
                                 "the wall time of the chain step 'search' over all its attempts.")


def main(argv):
  del argv
  meta = common.provenance("bench.search")
  start = time.time()
  config = from_config.with_defaults(_CONFIG.value)
  config_checks.validate(config)  # as `tfkd.search`: every value, before hours of work
  make_workdir(_WORKDIR.value)
  studies, winners = search.Search(config, _WORKDIR.value).run_all(workers=_WORKERS.value)
  minutes = (time.time() - start) / 60
  lines = ["## Budget search", "", common.header(meta),
           f"- this command's wall time: {minutes:.1f} min (teacher, cached views, studies, "
           "winners; parts done by an earlier run are not counted)"]
  if _CHAIN_LOG.value:
    attempts = chain_log.attempt_seconds(_CHAIN_LOG.value, "search")
    lines.append(f"- the chain step's wall time over its {len(attempts)} attempt(s): "
                 f"{sum(attempts) / 3600:.2f} h (from {_CHAIN_LOG.value}; the hours between "
                 "sessions not counted, pauses within one counted)")
  lines += ["", *search_report.study_lines(studies), "", *search_stopping.stopping_lines(studies),
            "", *search_report.winner_lines(winners),
            "", f"Pareto plot: {os.path.join(_WORKDIR.value, 'search', 'pareto.png')}"]
  text = "\n".join(lines) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "search_bench.md"), text)
  print(text)


if __name__ == "__main__":
  cli.run(main)
