"""Did early stopping cost the search accuracy? A cheap check, and the measurement.

Hyperband stops a trial on one epoch's validation accuracy. `stopping_lines` is
the cheap check the report carries: over the trials trained to the end, how well
their accuracy at each stopping epoch ranks like their last. It sees only the
survivors, so it hints and does not prove. `continue_stopped` measures instead:
it trains each study's closest calls (`closest_calls`: at each stopping epoch,
the stopped trials that read best there) for the search's full epochs, in a
folder of its own, and `continued_lines` / `continued_plot` set them beside the
study's trained trials. If even those end below the winner, the stops cost
nothing here.

Example:
  rows = continue_stopped(searcher, studies, per_epoch=1, out_dir="runs/bench_search_stopped")
  print("\n".join(continued_lines(rows)))
"""

import collections
import os

import numpy as np
import optuna

from tfkd import search_space, search_trial
from tfkd.errors import TrainingError
from tflite import files

_ENDED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _ranks(values) -> np.ndarray:
  """Ranks from 0, ties sharing their mean rank (as Spearman's correlation wants)."""
  values = np.asarray(values, dtype=float)
  ranks = np.empty(len(values))
  ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
  for value in np.unique(values):
    ranks[values == value] = ranks[values == value].mean()
  return ranks


def _with_status(st: optuna.Study, status: str) -> list:
  return [t for t in st.get_trials(deepcopy=False, states=_ENDED)
          if t.user_attrs.get("status") == status and t.intermediate_values]


def _curve(t) -> dict:
  """A trained trial's validation accuracy by epoch (from 0), up to its last.

  Its value is the last epoch's: in a study searched before 15b2b9e, a trial read from another
  study's folder replayed its epochs only until this study's pruner would have stopped it.
  """
  curve = dict(t.intermediate_values)
  curve[t.user_attrs.get("result", {}).get("epochs", max(curve) + 1) - 1] = t.value
  return curve


def stopping_lines(studies: dict) -> list:
  """Whether the epochs at which Hyperband stopped trials foretold the last epoch (markdown).

  For each study and each epoch at which trials were stopped: how many, and over the trials
  trained to the end, the Spearman rank correlation of their validation accuracy at that
  epoch with their last. Near 0, trials were stopped on noise: raise `search.min_epochs`.
  Only survivors are ranked, which narrows both ends: `continue_stopped` measures.
  """
  lines = ["| device | mode | epoch | trials stopped there | ρ with the last epoch | trained "
           "trials |", "|---|---|---:|---:|---:|---:|"]
  for (device, mode), st in studies.items():
    stops = collections.Counter(max(t.intermediate_values) for t in _with_status(st, "stopped"))
    curves = [_curve(t) for t in _with_status(st, "trained")]
    for step in sorted(stops):
      pairs = [(c[step], c[max(c)]) for c in curves if step in c and max(c) > step]
      rho = (np.corrcoef(_ranks([a for a, _ in pairs]), _ranks([b for _, b in pairs]))[0, 1]
             if len(pairs) >= 3 else float("nan"))
      lines.append(f"| {device} | {mode} | {step + 1} | {stops[step]} | "
                   f"{'–' if np.isnan(rho) else f'{rho:.2f}'} | {len(pairs)} |")
  return lines


def closest_calls(st: optuna.Study, per_epoch: int = 1) -> list:
  """A study's stopped trials that read best at the epoch they were stopped, per such epoch.

  Args:
    st: the study.
    per_epoch: how many trials to take at each stopping epoch.

  Returns:
    Frozen trials, by stopping epoch then accuracy there (highest first), one per
    architecture (two workers may draw one at once).
  """
  by_epoch, seen = collections.defaultdict(list), set()
  for t in sorted(_with_status(st, "stopped"),
                  key=lambda t: -t.intermediate_values[max(t.intermediate_values)]):
    key = search_space.candidate_key(t.user_attrs["candidate"])
    if key not in seen:
      seen.add(key)
      by_epoch[max(t.intermediate_values)].append(t)
  return [t for step in sorted(by_epoch) for t in by_epoch[step][:per_epoch]]


def continue_stopped(searcher, studies: dict, per_epoch: int, out_dir: str) -> list:
  """Trains each study's `closest_calls` for the search's epochs, beside the search's folders.

  Each trains as its trial would have (same mode, schedule, data order and teacher views),
  in `out_dir/trials/<digest of that setup>/`, resumably; the search's own folders and
  studies are not touched. An architecture stopped in two studies of one mode trains once.
  One that diverges gets a row without accuracies.

  Args:
    searcher: the `tfkd.search.Search` (its teacher's cached views, for 'distill').
    studies: (device, mode) → study.
    per_epoch: trials per stopping epoch (`closest_calls`).
    out_dir: the measurement's folder.

  Returns:
    One dict per continued trial: "device", "mode", "trial", "candidate", "stop_epoch",
    "val_at_stop", "val_accuracy" (last epoch), "test_accuracy", "history" (validation
    accuracy per epoch), "trained_vals" (the study's trained trials' values), "rank"
    (1 = no trained trial ended higher; None if the study trained none or it diverged) and
    "diverged" (the `TrainingError`'s first part, or None).
  """
  config = searcher.config
  setup = {"train": searcher.train_config.to_dict(), "distill": config.distill.to_dict(),
           "data": config.data.to_dict(), "seed": config.seed}
  digest = files.json_digest(setup)
  rows = []
  for (device, mode), st in studies.items():
    trained = sorted((t.value for t in _with_status(st, "trained")), reverse=True)
    for t in closest_calls(st, per_epoch):
      cand = t.user_attrs["candidate"]
      folder = os.path.join(out_dir, "trials", digest, os.path.basename(
          search_trial.trial_dir("", cand, mode, searcher.train_config.epochs)))
      try:
        result = search_trial.train_candidate(
            searcher.run, cand, mode, searcher.train_config, None,
            searcher.teacher_views() if mode == "distill" else None, folder)
      except TrainingError as e:  # one diverged run leaves the others' table standing
        result = {"val_accuracy": None, "test_accuracy": None,
                  "diverged": str(e).split(":")[0]}
      step = max(t.intermediate_values)
      rows.append({"device": device, "mode": mode, "trial": t.number, "candidate": cand,
                   "stop_epoch": step + 1, "val_at_stop": t.intermediate_values[step],
                   "val_accuracy": result["val_accuracy"],
                   "test_accuracy": result["test_accuracy"],
                   "history": search_trial.history_accuracies(folder), "trained_vals": trained,
                   "rank": (1 + sum(v > result["val_accuracy"] for v in trained)
                            if trained and result["val_accuracy"] is not None else None),
                   "diverged": result.get("diverged")})
  return rows


def continued_lines(rows: list) -> list:
  """`continue_stopped`'s rows as a markdown table (header included)."""
  lines = ["| device | mode | # | architecture | stopped at epoch | val then | val at the end "
           "(continued) | test (float) | study's best trained val | rank among the trained |",
           "|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    best = f"{r['trained_vals'][0]:.2%}" if r["trained_vals"] else "–"
    rank = (f"diverged: {r['diverged']}" if r["diverged"] else
            f"{r['rank']} of {len(r['trained_vals']) + 1}" if r["trained_vals"] else "none trained")
    end = (("–", "–") if r["diverged"] else
           (f"{r['val_accuracy']:.2%}", f"{r['test_accuracy']:.2%}"))
    lines.append(f"| {r['device']} | {r['mode']} | {r['trial']} | "
                 f"{search_space.describe(r['candidate'])} | {r['stop_epoch']} | "
                 f"{r['val_at_stop']:.2%} | {end[0]} | {end[1]} | "
                 f"{best} | {rank} |")
  return lines


def continued_plot(studies: dict, rows: list, path: str) -> str:
  """Per study: the trained trials' validation curves (grey) and the continued ones (colour).

  A continued trial's curve as the search saw it is solid up to its stop (marked), its
  continued run dashed; where they differ before the stop, that is run-to-run noise.
  """
  cols = min(2, len(studies))
  grid = (-(-len(studies) // cols), cols)
  fig, axes = files.new_figure(*grid, figsize=(6 * grid[1], 4 * grid[0]), squeeze=False)
  for ax in axes.flat[len(studies):]:
    ax.set_visible(False)
  for ax, ((device, mode), st) in zip(axes.flat, studies.items()):
    for t in _with_status(st, "trained"):
      curve = _curve(t)
      ax.plot([s + 1 for s in sorted(curve)], [100 * curve[s] for s in sorted(curve)],
              color="grey", alpha=0.4, linewidth=1)
    mine = [r for r in rows if (r["device"], r["mode"]) == (device, mode)]
    for r in mine:
      seen = st.trials[r["trial"]].intermediate_values
      steps = sorted(seen)
      (line,) = ax.plot([s + 1 for s in steps], [100 * seen[s] for s in steps])
      color = line.get_color()  # the axes' colour cycle, one per continued trial
      ax.plot(r["stop_epoch"], 100 * r["val_at_stop"], "o", color=color,
              label=f"#{r['trial']} stopped at {r['stop_epoch']}")
      ax.plot(range(1, len(r["history"]) + 1), [100 * a for a in r["history"]], "--",
              color=color)
    ax.set_title(f"{device}/{mode}")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    if mine:
      ax.legend(fontsize=7)
  fig.suptitle("Trained trials (grey) and the closest stopped calls trained on (dashed)")
  fig.tight_layout()
  return files.save_figure(fig, path)
