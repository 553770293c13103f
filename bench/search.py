r"""Budget search benchmark: the best student per device, distilled and from scratch.

  .venv/bin/python -m bench.search --config=configs/cifar10_search.py \
      --workdir=runs/cifar10_search --out=runs/bench_search

Runs (or continues) `tfkd.search` with the config, then writes search_bench.md:
provenance, the winners (retrained, int8, verified on LiteRT and TFLite Micro),
each study's share of candidates rejected before training and of trials stopped
early, its trials' time (the sum of their durations in Optuna's records, so the
hours between the sessions of a resumed search are not counted; a killed trial's
lost epochs are not either), this command's wall time, and with --chain_log the
search's wall time over all its attempts in `bench/cifar10_chain.sh`'s log
(`chain_log.attempt_seconds`); the Pareto plot is `workdir/search/pareto.png`.
A workdir that already holds a trained teacher (`teacher/model.keras`) and its cached
views reuses them: copy them from a pipeline run with the same config to save hours.
"""

import os
import time

import optuna
from absl import flags
from ml_collections import config_flags

from bench import chain_log, common
from tfkd import cli, from_config, search, search_report
from tflite import files

_CONFIG = config_flags.DEFINE_config_file("config", "configs/cifar10_search.py", "Search config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar10_search", "The search's workdir.")
_OUT = flags.DEFINE_string("out", "runs/bench_search", "Where search_bench.md goes.")
_CHAIN_LOG = flags.DEFINE_string("chain_log", "", "The chain's log (runs/cifar10_chain.log), for "
                                 "the wall time of the chain step 'search' over all its attempts.")


def study_summary(st: optuna.Study) -> dict:
  """Trials by status and the time they took, from Optuna's own start/end records.

  Trials that ended (trained, stopped, rejected, repeated, diverged) are summed; a killed trial is not,
  since its end is when another worker found it stale, not when it stopped.
  """
  ended = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                optuna.trial.TrialState.PRUNED))
  tally = search.counts(st)
  total = sum(tally.values())
  seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ended)
  return dict(tally, total=total, trial_minutes=seconds / 60,
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
           "winners; parts done by an earlier run are not counted)"]
  if _CHAIN_LOG.value:
    attempts = chain_log.attempt_seconds(_CHAIN_LOG.value, "search")
    lines.append(f"- the chain step's wall time over its {len(attempts)} attempt(s): "
                 f"{sum(attempts) / 3600:.2f} h (from {_CHAIN_LOG.value}; the hours between "
                 "sessions not counted, pauses within one counted)")
  lines += ["", "| device | mode | candidates | rejected before training | trained | stopped "
            "early (share of trained) | repeated | diverged | trials' time (min) |",
            "|---|---|---|---|---|---|---|---|---|"]
  for (device, mode), st in studies.items():
    s = study_summary(st)
    lines.append(f"| {device} | {mode} | {s['total']} | {s['rejected']} ({s['rejected_share']:.0%})"
                 f" | {s['trained']} | {s['stopped']} ({s['stopped_share']:.0%}) | {s['repeated']} "
                 f"| {s['diverged']} | {s['trial_minutes']:.1f} |")
  lines += ["", *search_report.winner_lines(winners),
            "", f"Pareto plot: {os.path.join(_WORKDIR.value, 'search', 'pareto.png')}"]
  text = "\n".join(lines) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "search_bench.md"), text)
  print(text)


if __name__ == "__main__":
  cli.run(main)
