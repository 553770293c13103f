"""The end of a budget search: each study's winner retrained and verified, and the report.

`verify_winner` retrains a study's best trial for the full schedule, exports it
int8 and as a C array, and checks it on LiteRT (whole test set) and TFLite
Micro (arena, parity with LiteRT). `time_candidates` times every candidate that
reached TFLM again, all together at the end: its latency is the one the
report gives (the winner's too). `write_report` writes
`workdir/search/report.md` (winners, then every architecture tried), `trials.csv` and
`pareto.png` (validation accuracy against flash, arena and latency, the Pareto
front of each mode, the device budgets as lines). `study_lines` is its table of studies
(`study_summary`: trials by status, shares, time); its check of early stopping is
`search_stopping.stopping_lines`.

Example:
  latencies = time_candidates(search, studies)
  winners = {key: verify_winner(search, st, *key, latencies) for key, st in studies.items()}
  write_report(search, studies, winners, latencies)
"""

import collections
import csv
import io
import os

import optuna
from absl import logging

from tfkd import (candidate_cost, from_config, model_files, search_space, search_stopping,
                  search_trial)
from tfkd.errors import TrainingError
from tflite import benchmark, convert, files, firmware, interpreter

PARETO_AXES = (("flash_bytes", "int8 flash (KiB)", 1024), ("arena_bytes", "TFLM arena (KiB)", 1024),
               ("latency_ms", "LiteRT latency (ms, 1 thread)", 1))


def counts(st: optuna.Study) -> dict:
  """Finished trials of a study by status: trained, stopped, rejected, repeated, diverged."""
  tally = {"trained": 0, "stopped": 0, "rejected": 0, "repeated": 0, "diverged": 0}
  for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                 optuna.trial.TrialState.PRUNED)):
    status = t.user_attrs.get("status")
    if status in tally:
      tally[status] += 1
  return tally


def study_summary(st: optuna.Study) -> dict:
  """A study's trials by status (`counts`), the shares rejected and stopped, and their time.

  The time sums each ended trial's start-to-end in Optuna's records, so the hours between
  the sessions of a resumed search do not count. A killed trial (FAIL) counts up to its
  last finished epoch: its end in the records is when another run found it stale.

  Returns:
    `counts` plus "total", "trial_minutes", "rejected_share" (of all candidates) and
    "stopped_share" (of those trained, stopped early or not).
  """
  ended = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                optuna.trial.TrialState.PRUNED))
  killed = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
  tally = counts(st)
  total = sum(tally.values())
  seconds = (sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ended) +
             sum(t.user_attrs.get("seconds_to_last_epoch", 0.0) for t in killed))
  return dict(tally, total=total, trial_minutes=seconds / 60,
              rejected_share=tally["rejected"] / total if total else 0.0,
              stopped_share=tally["stopped"] / max(1, tally["trained"] + tally["stopped"]))


def study_lines(studies: dict) -> list:
  """The table of studies (markdown lines): candidates by status, shares and trials' time."""
  lines = ["| device | mode | candidates | rejected before training | trained | stopped early "
           "(share of trained) | repeated | diverged | trials' time (min) |",
           "|---|---|---|---|---|---|---|---|---|"]
  for (device, mode), st in studies.items():
    s = study_summary(st)
    lines.append(f"| {device} | {mode} | {s['total']} | {s['rejected']} ({s['rejected_share']:.0%})"
                 f" | {s['trained']} | {s['stopped']} ({s['stopped_share']:.0%}) | {s['repeated']} "
                 f"| {s['diverged']} | {s['trial_minutes']:.1f} |")
  return lines


def time_candidates(search, studies: dict) -> dict:
  """Every candidate of the studies that reached TFLM, timed together (`candidate_cost.time_together`).

  The trials' own measurements were short and taken one by one, hours apart, and a shared
  machine has slow spells (BENCHMARKS §19: one short measurement read over 1.3 times the
  idle latency half the time). Timed together in interleaved rounds spread over
  `search.latency_spread_s`, the candidates compare fairly, and the quietest round
  estimates the idle latency (over 60 s: 1.05 times it or less, 9 times in 10).

  Returns:
    candidate key → latency dict ("p50_quietest_round" is the one reported).
  """
  samples = {}
  for st in studies.values():
    for t in st.get_trials(deepcopy=False):
      cand = t.user_attrs.get("candidate")
      if cand and t.user_attrs.get("cost", {}).get("latency_ms") is not None:
        samples[search_space.candidate_key(cand)] = cand["resolution"]
  test_x = search.run.splits.test[0][:1]
  inputs = {size: search_trial.resize_images(test_x, size).numpy()[0] for size in set(samples.values())}
  return candidate_cost.time_together(
      search.cost_dir,
      {key: inputs[size] for key, size in samples.items()}, search.config.search.latency_runs,
      spread_s=search.config.search.latency_spread_s)


def verify_winner(search, st: optuna.Study, device: str, mode: str, latencies=None) -> dict:
  """Retrains a study's best trial for the full schedule, exports and verifies it on the devices.

  Args:
    search: the `tfkd.search.Search`.
    st: the study.
    device, mode: the study's device profile and mode.
    latencies: `time_candidates`'s result; the winner's architecture's entry is its latency
      (the trained file has the same graph). None, or no entry: timed here.

  Returns:
    {"candidate", "search_val_accuracy", "test_accuracy" (float), "int8_test_accuracy"
     (LiteRT, whole test set), "edge" (`tflite.benchmark.edge_report`: flash, latency,
     TFLM arena and parity), "fits" ('yes' or why not, from the trained int8 file), "tflite",
     "c_files"}, or {"status": reason} without a trained trial or if its retraining diverged.
  """
  complete = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
  if not complete:
    return {"status": "no trained trial"}
  best = max(complete, key=lambda t: t.value)
  cand = best.user_attrs["candidate"]
  run, config = search.run, search.config
  final = config.train.copy_and_resolve_references()
  final.epochs = config.search.final_epochs or config.train.epochs
  # Keyed by architecture and schedule: a later, better trial gets its own folder, and one
  # architecture winning for two devices trains once.
  folder = search_trial.trial_dir(run.workdir, cand, mode, final.epochs)
  try:
    result = search_trial.train_candidate(run, cand, mode, final, None,
                                          search.teacher_logits if mode == "distill" else None,
                                          folder)
  except TrainingError as e:  # one diverged winner leaves the others' report standing
    logging.warning("[search %s/%s] the winner's retraining failed: %s", device, mode, e)
    return {"status": f"retraining diverged: {str(e).split(':')[0]}"}
  model = model_files.load_model(result["model_path"])
  size = cand["resolution"]
  tflite_path = os.path.join(folder, "model_int8.tflite")
  if not os.path.exists(tflite_path):
    files.write_atomic(tflite_path, convert.convert(
        from_config.for_export(config.export, model), "int8",
        search_trial.representative_inputs(run, size)))
  with open(tflite_path, "rb") as f:
    model_bytes = f.read()
  x_test = search_trial.resize_images(run.splits.test[0], size).numpy()
  edge, _ = benchmark.edge_report(tflite_path, x_test[:config.report.parity_samples],
                                  runs=config.report.latency_runs,
                                  parity_samples=config.report.parity_samples,
                                  latency=(latencies or {}).get(search_space.candidate_key(cand)))
  c_files = firmware.write_c_files(model_bytes, folder, firmware.c_identifier(os.path.basename(folder)))
  micro = edge["micro"] or {}
  measured = {"flash_bytes": edge["flash_bytes"], "macs": edge["cost"]["macs"],
              "peak_activation_bytes": edge["cost"]["peak_activation_bytes"],
              "arena_bytes": micro.get("arena_bytes"), "arena_limit": 0,
              "latency_ms": interpreter.idle_ms(edge["latency_ms"]),
              "tflm_error": "; ".join(micro.get("unsupported_ops") or [])}
  return {"candidate": cand, "search_val_accuracy": best.value, "epochs": result["epochs"],
          "fits": candidate_cost.rejection(measured, search.budget(device)) or "yes",
          "test_accuracy": result["test_accuracy"],
          "int8_test_accuracy": interpreter.evaluate_accuracy(model_bytes, x_test,
                                                              run.splits.test[1]),
          "edge": edge, "tflite": tflite_path, "c_files": list(c_files)}


def trial_rows(studies: dict, latencies=None) -> list:
  """One row per finished trial of every study: architecture, cost, accuracies, status.

  The latency is `latencies`' (`time_candidates`) where it has the candidate, else the trial's.
  """
  latencies = latencies or {}
  rows = []
  for (device, mode), st in studies.items():
    for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                   optuna.trial.TrialState.PRUNED)):
      cand, cost = t.user_attrs.get("candidate"), t.user_attrs.get("cost", {})
      result = t.user_attrs.get("result", {})
      if cand is None:
        continue
      latency = latencies.get(search_space.candidate_key(cand))
      notes = ("start point" if t.user_attrs.get("start_point") else "",  # search.start_from
               "read, not retrained" if result.get("read") else "", t.user_attrs.get("reason"))
      rows.append({
          "device": device, "mode": mode, "trial": t.number,
          "status": t.user_attrs.get("status", t.state.name.lower()),
          "architecture": search_space.describe(cand),
          "parameters": cost.get("parameters"), "macs": cost.get("macs"),
          "flash_bytes": cost.get("flash_bytes"), "arena_bytes": cost.get("arena_bytes"),
          "latency_ms": interpreter.idle_ms(latency) if latency else cost.get("latency_ms"),
          "epochs": result.get("epochs"),
          "val_accuracy": result.get("val_accuracy"), "test_accuracy": result.get("test_accuracy"),
          "reason": "; ".join(note for note in notes if note)})
  return rows


def distinct_rows(rows: list) -> list:
  """`trial_rows` with one row per study and architecture, and "drawn": how often it was.

  TPE draws what it has tried again (a repeat, or a rejected architecture drawn again);
  those trials add nothing to read but their number. The row kept is the architecture's
  first that trained (or was stopped or diverged), else its first rejection, else its first
  row; in the order the architectures first came.
  """
  rank = {"trained": 0, "stopped": 0, "diverged": 0, "rejected": 1}
  kept, drawn = {}, collections.Counter()
  for r in rows:
    key = (r["device"], r["mode"], r["architecture"])
    drawn[key] += 1
    if key not in kept or rank.get(r["status"], 2) < rank.get(kept[key]["status"], 2):
      kept[key] = r
  return [dict(r, drawn=drawn[key]) for key, r in kept.items()]


def pareto_front(points) -> list:
  """The (cost, accuracy) points no other point beats on both (lower cost, higher accuracy)."""
  front, best = [], float("-inf")
  for c, a in sorted(points, key=lambda p: (p[0], -p[1])):
    if a > best:
      front.append((c, a))
      best = a
  return front


def pareto_plot(rows: list, profiles, path: str) -> str:
  """Validation accuracy against flash, arena and latency; each mode's front; device budgets."""
  fig, axes = files.new_figure(1, len(PARETO_AXES), figsize=(5 * len(PARETO_AXES), 4))
  trained = [r for r in rows if r["status"] == "trained" and r["val_accuracy"] is not None]
  for ax, (key, label, unit) in zip(axes, PARETO_AXES):
    for mode, color in (("distill", "tab:blue"), ("scratch", "tab:orange")):
      points = [(r[key] / unit, 100 * r["val_accuracy"]) for r in trained
                if r["mode"] == mode and r[key] is not None]
      if not points:
        continue
      ax.scatter(*zip(*points), s=14, color=color, alpha=0.5, label=mode)
      ax.step(*zip(*pareto_front(points)), where="post", color=color, marker="o", markersize=3)
    for name, profile in profiles.items():
      limit = profile[key]  # the profiles use the same names
      if limit:
        ax.axvline(limit / unit, color="grey", linestyle=":", linewidth=1)
        ax.annotate(name, (limit / unit, 0.02), xycoords=("data", "axes fraction"),
                    rotation=90, fontsize=7, color="grey")
    ax.set_xlabel(label)
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle("Search trials (trained to the search's epochs) and each mode's Pareto front")
  fig.tight_layout()
  return files.save_figure(fig, path)


def _fmt(value, pattern="{:,}"):
  return "–" if value is None else pattern.format(value)


def winner_lines(winners: dict) -> list:
  """The winners as markdown table lines (header included)."""
  lines = ["| device | mode | architecture | search val | test (float) | int8 test (LiteRT) | "
           "flash (B) | TFLM arena (B) | TFLM = LiteRT (top-1) | latency p50 (ms) | fits |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for (device, mode), w in winners.items():
    if "candidate" not in w:
      lines.append(f"| {device} | {mode} | {w['status']} |  |  |  |  |  |  |  |  |")
      continue
    micro = w["edge"]["micro"] or {}
    parity = micro.get("parity_reference_kernels") or {}
    lines.append(
        f"| {device} | {mode} | {search_space.describe(w['candidate'])} | "
        f"{w['search_val_accuracy']:.2%} | {w['test_accuracy']:.2%} | "
        f"{w['int8_test_accuracy']:.2%} | {w['edge']['flash_bytes']:,} | "
        f"{_fmt(micro.get('arena_bytes'))} | {_fmt(parity.get('argmax_agreement'), '{:.1%}')} | "
        f"{interpreter.idle_ms(w['edge']['latency_ms']):.3f} | {w['fits']} |")
  return lines


def write_report(search, studies: dict, winners: dict, latencies=None) -> str:
  """Writes report.md, trials.csv and pareto.png into `workdir/search/`; returns the report path.

  Args:
    search: the `tfkd.search.Search`.
    studies: (device, mode) → study.
    winners: (device, mode) → `verify_winner`'s dict.
    latencies: `time_candidates`'s result, the latencies reported; None: each trial's own.
  """
  out = os.path.join(search.workdir, "search")
  rows = trial_rows(studies, latencies)
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["device"])
  writer.writeheader()
  writer.writerows(rows)
  files.write_atomic(os.path.join(out, "trials.csv"), buffer.getvalue())
  pareto_plot(rows, search.config.search.profiles, os.path.join(out, "pareto.png"))
  lines = ["# Budget search", "",
           f"Search epochs per trial: {search.config.search.epochs}; winners retrained for "
           f"{search.config.search.final_epochs or search.config.train.epochs} epochs. "
           "Inputs below the data's size are resized bilinearly with antialiasing. "
           + (f"Latency: LiteRT, 1 thread on {interpreter.cpu_name()}, " +
              ("every candidate that reached TFLM timed together at the end in interleaved "
               f"rounds over {search.config.search.latency_spread_s:g} s; the quietest round's "
               "p50." if latencies else "each candidate's own measurement.")), "",
           "## Winners (retrained, int8, verified on LiteRT and TFLite Micro)", "",
           *winner_lines(winners), "", "![Pareto](pareto.png)", "", "## Studies", "",
           *study_lines(studies), "", "## Early stopping", "",
           "Did the epochs at which trials were stopped foretell the last epoch? Spearman's ρ "
           "between the trained trials' validation accuracy then and at their last epoch; near "
           "0, trials were stopped on noise (raise search.min_epochs). It ranks only the "
           "survivors: bench/search_stopped.py trains the closest stopped calls on to measure.",
           "",
           *search_stopping.stopping_lines(studies), "", "## Every architecture tried", "",
           "Each study's architectures, once each; `drawn` counts the sampler's "
           "draws of it (trials.csv has every trial).", "",
           "| device | mode | # | drawn | status | architecture | params | MACs | flash (B) | "
           "arena (B) | latency (ms) | epochs | val | test | why |", "|---" * 15 + "|"]
  for r in distinct_rows(rows):
    lines.append(
        f"| {r['device']} | {r['mode']} | {r['trial']} | {r['drawn']} | {r['status']} | "
        f"{r['architecture']} | "
        f"{_fmt(r['parameters'])} | {_fmt(r['macs'])} | {_fmt(r['flash_bytes'])} | "
        f"{_fmt(r['arena_bytes'])} | {_fmt(r['latency_ms'], '{:.3f}')} | {_fmt(r['epochs'])} | "
        f"{_fmt(r['val_accuracy'], '{:.2%}')} | {_fmt(r['test_accuracy'], '{:.2%}')} | "
        f"{r['reason']} |")
  path = files.write_atomic(os.path.join(out, "report.md"), "\n".join(lines) + "\n")
  files.write_json(os.path.join(out, "winners.json"),
                   {f"{d}/{m}": w for (d, m), w in winners.items()})
  return path
