r"""Benchmark: all-MiniLM-L6-v2 fine-tuned on SST-2, distilled into two int8 students.

  nice -n 5 .venv/bin/python -m bench.sst2_minilm --config=configs/sst2_minilm.py \
      --workdir=runs/sst2_minilm --out=runs/bench_sst2_minilm --seeds=5

One command, each step resumed or skipped when its files exist:
  1. the teacher stage fine-tunes MiniLM (`teacher.hub`; 1 epoch in configs/sst2_minilm.py);
  2. teacher_views computes its logits for the training phrases and the transfer set once
     (`tfkd.hub_stage`), cached in workdir/teacher/logits/;
  3. two students, each from scratch and distilled from those logits, exported int8:
     the config's text CNN in `--workdir`, and the microcontroller student
     (`configs/sst2_minilm.py:micro`) in workdir/micro/ with its own vocabulary;
  4. with `--seeds=N` the scratch, distill and export stages again for N−1 more seeds
     (workdir[/micro]/seed<k>/, the teacher folder shared), every int8 file evaluated on
     LiteRT and, one sentence per invoke, on TFLite Micro (arena and flash measured).
Dev (dev.tsv, 872 sentences) and the held-out validation sentences are both scored.
Writes `sst2_minilm.{md,json,png}` to `--out` and prints the table; the plot alone again
from a finished run's json: `python -m bench.sst2_minilm --replot=runs/bench_sst2_minilm`.

A quick try of the whole chain on 2,000 phrases:
  .venv/bin/python -m bench.sst2_minilm --config=configs/sst2_minilm.py --workdir=/tmp/minilm_try \
      --out=/tmp/minilm_try/bench --seeds=2 --config.data.train_limit=2000 --config.data.val_size=100
"""

import os
import time

import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from bench import common
from bench.text_eval import keras_accuracy, tflm_predictions
from configs import sst2_minilm
from tfkd import cli, hub_stage, pipeline
from tfkd.run_context import Run
from tflite import files, interpreter, micro

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/sst2_minilm.py (its student: the CNN).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/sst2_minilm", "Run folder (resumed if it exists).")
_OUT = flags.DEFINE_string("out", "runs/bench_sst2_minilm", "Folder for sst2_minilm.{md,json,png}.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds of both students (1 = only config.seed).")
_STUDENTS = flags.DEFINE_multi_enum("students", ["cnn", "micro"], ["cnn", "micro"],
                                   "Students to run (configs/sst2_minilm.py's STUDENTS).")
_REPLOT = flags.DEFINE_string("replot", "", "Only redraw sst2_minilm.png from this folder's json.")
GOAL = 0.85  # the text CNN's int8 target on dev
MICRO_FLASH = 256 * 1024  # the microcontroller student's flash budget
CNN_FLASH = 1024 * 1024


def int8_results(path: str, x: np.ndarray, y: np.ndarray, tflm: bool) -> dict:
  """LiteRT accuracy of an int8 `.tflite`; with `tflm` also TFLite Micro's, arena and flash."""
  with open(path, "rb") as f:
    model_bytes = f.read()
  litert = interpreter.predict(model_bytes, x, dequantize=False)
  result = {"litert": float(np.mean(np.argmax(litert, -1) == y)),
            "flash_bytes": micro.flash_bytes(model_bytes)}
  if tflm:
    arena = micro.find_arena_size(model_bytes).size
    outputs = tflm_predictions(model_bytes, x, arena)
    result.update(tflm=float(np.mean(np.argmax(outputs, -1) == y)), arena_bytes=arena,
                  tflm_litert_agreement=float(np.mean(np.argmax(outputs, -1) == np.argmax(litert, -1))))
  return result


def seed_results(run: Run, seed: int) -> dict:
  """Every score of one seed's scratch and distilled student, float and int8, dev and validation."""
  held_out = {"dev": run.splits.test, "val": run.splits.val}
  row = {"seed": seed}
  for stage in ("scratch", "distill"):
    for name, (x, y) in held_out.items():
      row[f"{stage}_{name}"], row[f"{stage}_parameters"] = keras_accuracy(run.model_path(stage), x, y)
    int8 = int8_results(run.tflite_path(stage, "int8"), *run.splits.test, tflm=stage == "distill")
    row.update({f"{stage}_int8_{k}": v for k, v in int8.items()})
  return row


def seed_run(config, workdir: str, seed: int) -> Run:
  """Scratch, distill and export again with another seed; teacher folder and vocabulary shared."""
  seed_dir = os.path.join(workdir, f"seed{seed}")
  link_shared(workdir, seed_dir, ("teacher", "vocab.txt"))
  config = config.copy_and_resolve_references()
  config.seed = seed
  config.stages = ("teacher_views", "scratch", "distill", "export")
  return pipeline.run_pipeline(config, seed_dir)


def link_shared(source_dir: str, target_dir: str, names) -> None:
  """Symbolic links in `target_dir` to `source_dir`'s files or folders `names` (kept if present)."""
  os.makedirs(target_dir, exist_ok=True)
  for name in names:
    link = os.path.join(target_dir, name)
    if not os.path.lexists(link):
      os.symlink(os.path.abspath(os.path.join(source_dir, name)), link)


def student(config, workdir: str, seeds: int) -> dict:
  """One student's runs over `seeds` seeds and their scores; the first run fine-tunes the teacher
  when it is not there yet."""
  start = time.time()
  run = pipeline.run_pipeline(config, workdir)
  per_seed = [seed_results(run, config.seed)]
  for seed in range(config.seed + 1, config.seed + seeds):
    per_seed.append(seed_results(seed_run(config, workdir, seed), seed))
  summary = {}
  for key in per_seed[0]:
    values = np.array([s[key] for s in per_seed], float)
    summary[key] = {"mean": float(values.mean()), "min": float(values.min()),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
  gains = {k: [s[f"distill_{k}"] - s[f"scratch_{k}"] for s in per_seed]
           for k in ("dev", "val", "int8_litert")}
  return {"per_seed": per_seed, "summary": summary, "gains": gains,
          "minutes": (time.time() - start) / 60, "run": run}


def teacher_costs(run: Run) -> dict:
  """The fine-tuned teacher's scores and its one-time costs (fine-tune, logits pass)."""
  result = files.read_json(hub_stage.result_path(run))
  logits_path = hub_stage.teacher_logits_file(run)  # cached: only finds the file
  logits = files.read_json(logits_path[:-len(".npy")] + ".json")
  reused = logits.get("reused_rows", 0)  # taken from an earlier file: not this file's cost
  return {**result, "logits_seconds": logits["seconds"], "logits_rows": logits["rows"],
          "logits_reused_rows": reused,
          "logits_dtype": logits.get("dtype", result["dtype"]),  # older files: the fine-tune's
          "logits_per_second": (logits["rows"] - reused) / max(logits["seconds"], 1e-9)}


def markdown(teacher: dict, students: dict) -> str:
  pct = lambda v: f"{100 * v:.2f}%"
  lines = [
      f"Teacher: {teacher['name']} ({teacher['parameters']:,} parameters) fine-tuned "
      f"{teacher['epochs']} epoch(s) ({teacher['steps_per_epoch']:,} length-bucketed steps of "
      f"{teacher['batch_size']}, {teacher['dtype']}, ≤ {teacher['sequence_length']} wordpieces): "
      f"**dev {pct(teacher['dev_accuracy'])}**, validation {pct(teacher['val_accuracy'])}. "
      f"One-time cost: fine-tune {teacher['fine_tune_seconds'] / 60:.1f} min, logits of "
      f"{teacher['logits_rows']:,} texts (training phrases and transfer set) "
      f"{teacher['logits_seconds'] / 60:.1f} min ({teacher['logits_dtype']}, "
      f"{teacher['logits_per_second']:.0f} texts/s"
      + (f"; the first {teacher['logits_reused_rows']:,} taken from an earlier logits file"
         if teacher["logits_reused_rows"] else "") + ").", ""]
  for name, r in students.items():
    s, seeds = r["summary"], len(r["per_seed"])
    budget = MICRO_FLASH if name == "micro" else CNN_FLASH
    lines += [f"### Student `{name}` ({int(s['distill_parameters']['mean']):,} parameters), "
              f"{seeds} seed(s)", "",
              "| seed | scratch dev | distilled dev | scratch val | distilled val | scratch int8 "
              "LiteRT | distilled int8 LiteRT | distilled int8 TFLM | gain int8 (dev) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["per_seed"]:
      lines.append(f"| {row['seed']} | " + " | ".join(pct(row[k]) for k in (
          "scratch_dev", "distill_dev", "scratch_val", "distill_val", "scratch_int8_litert",
          "distill_int8_litert", "distill_int8_tflm"))
          + f" | {100 * (row['distill_int8_litert'] - row['scratch_int8_litert']):+.2f} pt |")
    lines.append("| mean ± sd | " + " | ".join(
        f"{100 * s[k]['mean']:.2f} ± {100 * s[k]['std']:.2f}" for k in (
            "scratch_dev", "distill_dev", "scratch_val", "distill_val", "scratch_int8_litert",
            "distill_int8_litert", "distill_int8_tflm"))
        + f" | {100 * np.mean(r['gains']['int8_litert']):+.2f} pt |")
    flash, arena = s["distill_int8_flash_bytes"]["mean"], s["distill_int8_arena_bytes"]["mean"]
    verdict = lambda ok: "yes" if ok else "**no**"
    lines += ["",
              f"- int8 flash {flash:,.0f} B (≤ {budget // 1024} KB: {verdict(flash <= budget)}), "
              f"TFLM arena {arena:,.0f} B; TFLM agrees with LiteRT on "
              f"{100 * s['distill_int8_tflm_litert_agreement']['min']:.2f}% of dev sentences or more",
              f"- distilled above scratch on every seed (int8, dev): "
              f"{verdict(min(r['gains']['int8_litert']) > 0)}; (float, dev): "
              f"{verdict(min(r['gains']['dev']) > 0)}; (float, validation): "
              f"{verdict(min(r['gains']['val']) > 0)}",
              f"- lowest distilled int8 dev accuracy: LiteRT {pct(s['distill_int8_litert']['min'])}, "
              f"TFLM {pct(s['distill_int8_tflm']['min'])}"
              + (f" (≥ {GOAL:.0%}: {verdict(min(s['distill_int8_litert']['min'], s['distill_int8_tflm']['min']) >= GOAL)})"
                 if name == "cnn" else ""),
              f"- wall time of this student's runs: {r['minutes']:.0f} min", ""]
  return "\n".join(lines)


def plot(teacher: dict, students: dict, path: str) -> None:
  """Dev accuracy of each student (bars: means over seeds, dots: seeds) beside the teacher's."""
  fig, axes = files.new_figure(1, len(students), figsize=(5.5 * len(students), 4.2), sharey=True)
  axes = np.atleast_1d(axes)  # one student: a single Axes
  columns = [("scratch_dev", "scratch\nfloat"), ("distill_dev", "distilled\nfloat"),
             ("scratch_int8_litert", "scratch\nint8 LiteRT"),
             ("distill_int8_litert", "distilled\nint8 LiteRT"),
             ("distill_int8_tflm", "distilled\nint8 TFLM")]
  for ax, (name, r) in zip(axes, students.items()):
    means = [100 * r["summary"][key]["mean"] for key, _ in columns]
    bars = ax.bar([label for _, label in columns], means,
                  color=["#c88", "#58c", "#c88", "#58c", "#58c"])
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    for i, (key, _) in enumerate(columns):
      ax.scatter([i + 0.25] * len(r["per_seed"]), [100 * s[key] for s in r["per_seed"]],
                 color="k", s=10, zorder=3)
    ax.axhline(100 * teacher["dev_accuracy"], color="#777", linewidth=1.5,
               label=f"MiniLM teacher {100 * teacher['dev_accuracy']:.2f}%")
    if name == "cnn":
      ax.axhline(100 * GOAL, color="k", linestyle="--", linewidth=1, label=f"goal {GOAL:.0%} (int8)")
    flash = r["summary"]["distill_int8_flash_bytes"]["mean"]
    arena = r["summary"]["distill_int8_arena_bytes"]["mean"]
    ax.set_title(f"student {name}: {flash / 1024:.0f} KiB flash, {arena / 1024:.1f} KiB arena "
                 f"({len(r['per_seed'])} seeds)", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(loc="lower right", fontsize=7)
  lowest = min(100 * s[key] for r in students.values() for s in r["per_seed"] for key, _ in columns)
  axes[0].set_ylim(lowest - 3, 100 * teacher["dev_accuracy"] + 2)
  axes[0].set_ylabel("SST-2 dev accuracy (%), 872 sentences")
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  if _REPLOT.value:
    results = files.read_json(os.path.join(_REPLOT.value, "sst2_minilm.json"))
    plot(results["teacher"], results["students"], os.path.join(_REPLOT.value, "sst2_minilm.png"))
    return
  if _CONFIG.value is None:
    raise flags.IllegalFlagValueError("--config is required (configs/sst2_minilm.py).")
  meta = common.provenance("bench.sst2_minilm")
  print(common.header(meta))
  start = time.time()
  config = _CONFIG.value
  workdir = _WORKDIR.value
  students = {}
  for name in _STUDENTS.value:  # 'cnn' is config's own student; the others run in subfolders
    student_dir = workdir if name == "cnn" else os.path.join(workdir, name)
    if student_dir != workdir:  # one teacher for all: fine-tuned once, its logits cached once
      os.makedirs(os.path.join(workdir, "teacher"), exist_ok=True)
      link_shared(workdir, student_dir, ("teacher",))
    student_config = config if name == "cnn" else sst2_minilm.with_student(config, name)
    students[name] = student(student_config, student_dir, _SEEDS.value)
  first = next(iter(students.values()))["run"]
  teacher = teacher_costs(first)
  teacher.update(batch_size=config.teacher.hub.batch_size,
                 name=config.teacher.hub.preset or "all-MiniLM-L6-v2 (the shipped wheel)")
  table = markdown(teacher, students)
  wall = (time.time() - start) / 60
  files.write_atomic(os.path.join(_OUT.value, "sst2_minilm.md"),
                     "# SST-2, MiniLM teacher\n\n" + common.header(meta) + "\n" + table
                     + f"\nWhole command: {wall:.0f} min.\n\n![dev accuracy](sst2_minilm.png)\n")
  files.write_json(os.path.join(_OUT.value, "sst2_minilm.json"), {
      **meta, "teacher": teacher, "wall_minutes": wall,
      "students": {k: {key: v for key, v in r.items() if key != "run"} for k, r in students.items()},
      "config": first.config.to_dict()})
  plot(teacher, students, os.path.join(_OUT.value, "sst2_minilm.png"))
  logging.info("Wrote %s/sst2_minilm.{md,json,png}", _OUT.value)
  print(table)


if __name__ == "__main__":
  cli.run(main)
