r"""Budget search benchmark: the best student per device, distilled and from scratch.

  .venv/bin/python -m bench.search --config=configs/cifar10_search.py \
      --workdir=runs/cifar10_search --out=runs/bench_search

Runs (or continues) `tfkd.search` with the config, then writes search_bench.md:
provenance, the winners (retrained, int8, verified on LiteRT and TFLite Micro),
each study's share of candidates rejected before training and of trials stopped
early, its wall time (first trial start to last trial end, from Optuna's
records: a resumed search counts its sessions' time only), and the total wall time
of this command; the Pareto plot is `workdir/search/pareto.png`.
A workdir that already holds a trained teacher (`teacher/model.keras`) and its cached
views reuses them: copy them from a pipeline run with the same config to save hours.
"""

import os
import time

import optuna
from absl import flags
from ml_collections import config_flags

from bench import common
from tfkd import cli, from_config, search, search_report
from tflite import files

_CONFIG = config_flags.DEFINE_config_file("config", "configs/cifar10_search.py", "Search config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar10_search", "The search's workdir.")
_OUT = flags.DEFINE_string("out", "runs/bench_search", "Where search_bench.md goes.")


def study_summary(st: optuna.Study) -> dict:
  """Trials by status and the study's wall time from Optuna's own start/end records."""
  trials = [t for t in st.get_trials(deepcopy=False) if t.datetime_complete]
  tally = search.counts(st)
  total = sum(tally.values())
  wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
          ).total_seconds() if trials else 0.0
  return dict(tally, total=total, wall_minutes=wall / 60,
              rejected_share=tally["rejected"] / total if total else 0.0,
              stopped_share=tally["stopped"] / max(1, tally["trained"] + tally["stopped"]))


def main(argv):
  del argv
  meta = common.provenance("bench.search")
  start = time.time()
  config = from_config.with_defaults(_CONFIG.value)
  studies, winners = search.Search(config, _WORKDIR.value).run_all()
  minutes = (time.time() - start) / 60
  lines = ["## Budget search", "", common.header(meta),
           f"- this command's wall time: {minutes:.1f} min (teacher, cached views, studies, "
           "winners; parts done by an earlier run are not counted)", "",
           "| device | mode | candidates | rejected before training | trained | stopped early "
           "(share of trained) | repeated | study wall time (min) |",
           "|---|---|---|---|---|---|---|---|"]
  for (device, mode), st in studies.items():
    s = study_summary(st)
    lines.append(f"| {device} | {mode} | {s['total']} | {s['rejected']} ({s['rejected_share']:.0%})"
                 f" | {s['trained']} | {s['stopped']} ({s['stopped_share']:.0%}) | {s['repeated']} "
                 f"| {s['wall_minutes']:.1f} |")
  lines += ["", *search_report.winner_lines(winners),
            "", f"Pareto plot: {os.path.join(_WORKDIR.value, 'search', 'pareto.png')}"]
  text = "\n".join(lines) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "search_bench.md"), text)
  print(text)


if __name__ == "__main__":
  cli.run(main)
