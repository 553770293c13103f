r"""The 80-epoch CIFAR-10 distillation three ways: cached views, live teacher, cycled cache.

  bench/cifar10_chain.sh e80; bench/cifar10_chain.sh e80_live; bench/cifar10_chain.sh e80_cycle20
  .venv/bin/python -m bench.cached_vs_live --log=runs/cifar10_chain.log \
      --out=runs/bench_cached_vs_live

Issue 13's end-to-end comparison, read from the three chain steps' workdirs and their log:
  cached  step e80: the teacher, 80 epochs of its augmented views labelled once
          (teacher_views), the ResNet-8 distilled from them, export, report;
  live    step e80_live: the same teacher run at every distillation step;
  cycled  step e80_cycle20: distilled from the first 20 of e80's cached epochs, each read
          four times (epoch e reads cached epoch e mod 20).
Per route: the distilled student's test accuracy (Keras float and int8 `.tflite` on LiteRT,
whole test set, from report.json), its validation accuracy per epoch (distill/history.csv),
and the wall time of each stage from the log, summed over the step's attempts (a stopped
step resumes from its last epoch; an epoch that ran twice counts once, its last time). The
live and cycled routes reuse e80's teacher, so their pipelines count e80's teacher stage;
the cycled route counts the 20 of e80's 80 labelled epochs it reads (the views stage's time ×
20 / 80: labelling costs the same for every epoch). Writes cached_vs_live.{md,json,png}.
"""

import csv
import json
import os
import statistics

from absl import flags

from bench import chain_log, common
from tfkd import cli, report_stage
from tflite import files

_LOG = flags.DEFINE_string("log", "runs/cifar10_chain.log", "The chain's log (bench/cifar10_chain.sh).")
_RUNS = flags.DEFINE_string("runs", "runs", "The folder holding the chain's workdirs.")
_OUT = flags.DEFINE_string("out", "runs/bench_cached_vs_live", "Output folder.")

# route: (chain step, workdir under --runs, what the route is)
ROUTES = {
    "cached": ("e80", "cifar10_e80", "80 cached epochs of views"),
    "live": ("e80_live", "cifar10_e80_live", "live teacher"),
    "cycled": ("e80_cycle20", "cifar10_e80_cycle20", "20 cached epochs, each read 4 times"),
}
STAGES = ("teacher", "teacher_views", "distill", "export", "report")


def cache_epochs(name: str) -> int:
  """distill.cache_epochs of a route's run, from its report.json."""
  with open(os.path.join(_RUNS.value, ROUTES[name][1], "report.json")) as f:
    return json.load(f)["config"]["distill"]["cache_epochs"]


def history(path: str) -> list:
  """Validation accuracy per epoch from a stage's history.csv."""
  with open(path) as f:
    return [float(row["val_accuracy"]) for row in csv.DictReader(f)]


def student_accuracy(report_path: str) -> dict:
  """{'float', 'int8'}: the distilled student's test accuracy in a report.json."""
  with open(report_path) as f:
    rows = {row["label"]: row["accuracy"] for row in json.load(f)["rows"]}
  label = report_stage.KERAS_LABELS["distill"]
  return {"float": rows[f"{label} (Keras float)"], "int8": rows[f"{label}, int8 TFLite"]}


def route_result(name: str, cached_times: dict) -> dict:
  """One route's accuracies, validation curve and stage times (e80's teacher and views added)."""
  step, workdir, _ = ROUTES[name]
  workdir = os.path.join(_RUNS.value, workdir)
  times = chain_log.step_times(_LOG.value, step)
  if name != "cached":
    times["teacher"] = cached_times["teacher"]
  if name == "cycled":  # it reads the first of e80's cached epochs: their share of the views stage
    share = cache_epochs("cycled") / cache_epochs("cached")
    times["teacher_views"] = {"seconds": round(cached_times["teacher_views"]["seconds"] * share),
                              "epoch_seconds": []}
  missing = [stage for stage in ("teacher", "distill", "export", "report") if stage not in times]
  if missing:
    raise ValueError(f"The log {_LOG.value} has no finished stage(s) {missing} for chain step "
                     f"{step!r}: run `bench/cifar10_chain.sh {step}` to the end first.")
  distill_epochs = times["distill"]["epoch_seconds"]
  return {"accuracy": student_accuracy(os.path.join(workdir, "report.json")),
          "val_accuracy": history(os.path.join(workdir, "distill", "history.csv")),
          "seconds": {stage: times[stage]["seconds"] for stage in STAGES if stage in times},
          "distill_epoch_median": statistics.median(distill_epochs),
          "distill_epochs": len(distill_epochs)}


def _minutes(seconds: float) -> str:
  return f"{seconds / 60:.1f} min"


def markdown(results: dict) -> str:
  """The comparison table and the wall-time table."""
  lines = ["| route | Keras float | int8 TFLite | Δ int8 vs live | final val. accuracy |",
           "|---|---:|---:|---:|---:|"]
  live = results["live"]["accuracy"]["int8"]
  for name, r in results.items():
    lines.append(f"| {ROUTES[name][2]} | {r['accuracy']['float'] * 100:.2f}% | "
                 f"{r['accuracy']['int8'] * 100:.2f}% | "
                 f"{(r['accuracy']['int8'] - live) * 100:+.2f} pt | {r['val_accuracy'][-1] * 100:.2f}% |")
  lines += ["", "| route | " + " | ".join(STAGES) + " | whole pipeline | distill epoch (median) |",
            "|---|" + "---:|" * (len(STAGES) + 2)]
  for name, r in results.items():
    cells = [_minutes(r["seconds"][s]) if s in r["seconds"] else "–" for s in STAGES]
    lines.append(f"| {ROUTES[name][2]} | " + " | ".join(cells) +
                 f" | **{_minutes(sum(r['seconds'].values()))}** | {r['distill_epoch_median']:.0f} s |")
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  """Validation accuracy per epoch, and each route's wall time stacked by stage."""
  fig, (curves, bars) = files.new_figure(1, 2, figsize=(12, 4.2))
  for name, r in results.items():
    curves.plot(range(1, len(r["val_accuracy"]) + 1), r["val_accuracy"], label=ROUTES[name][2])
  curves.set(xlabel="distillation epoch", ylabel="validation accuracy", ylim=(0.4, 0.9),
             title="ResNet-8 distilled from the ResNet-20")
  curves.legend()
  left = [0.0] * len(results)
  for stage in STAGES:
    minutes = [r["seconds"].get(stage, 0) / 60 for r in results.values()]
    bars.barh([ROUTES[n][2] for n in results], minutes, left=left, label=stage)
    left = [a + b for a, b in zip(left, minutes)]
  bars.set(xlabel="wall time, minutes", title="the whole pipeline, by stage")
  bars.legend(fontsize=8, ncol=len(STAGES), loc="upper center", bbox_to_anchor=(0.5, -0.15))
  fig.tight_layout()
  files.save_figure(fig, path, dpi=110)


def main(argv):
  del argv
  meta = common.provenance("bench.cached_vs_live")
  cached_times = chain_log.step_times(_LOG.value, ROUTES["cached"][0])
  results = {name: route_result(name, cached_times) for name in ROUTES}
  os.makedirs(_OUT.value, exist_ok=True)
  plot(results, os.path.join(_OUT.value, "cached_vs_live.png"))
  table = markdown(results)
  files.write_atomic(os.path.join(_OUT.value, "cached_vs_live.md"),
                     common.header(meta) + "\n" + table + "\n\n![curves and wall time](cached_vs_live.png)\n")
  files.write_json(os.path.join(_OUT.value, "cached_vs_live.json"), {**meta, "results": results})
  print(table)


if __name__ == "__main__":
  cli.run(main)
