r"""Benchmark of SST-2 distilled into an int8 text CNN that runs on TFLite Micro.

  .venv/bin/python -m bench.sst2 --config=configs/sst2_full.py --workdir=runs/sst2 --out=runs/bench_sst2

Runs (or resumes) the pipeline of the config, then measures on every dev
sentence (dev.tsv, 872 sentences, the "test" split): the teacher, the student
trained from scratch and the distilled student (Keras float), the distilled
student's int8 `.tflite` on LiteRT and, one sentence per invoke, on TFLite
Micro; plus the student's smallest TFLM arena and its flash bytes. With
`--seeds=N` the scratch and distill stages are repeated with N−1 more seeds
against the same teacher and vocabulary (in workdir/seed<k>/), and the table
adds their mean and spread: 872 sentences make one seed's difference noisy
(one sentence = 0.11 points). Writes
`sst2.md`, `sst2.json` and `sst2.png` to `--out` and prints the table.

Any config value can be overridden, e.g. a quick try on 2,000 phrases:
  .venv/bin/python -m bench.sst2 --config=configs/sst2_full.py --workdir=/tmp/sst2_try \
      --out=/tmp/sst2_try/bench \
      --config.data.train_limit=2000 --config.data.val_size=200
"""

import os
import time

import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from bench import common
from bench.text_eval import keras_accuracy, tflm_predictions
from tfkd import cli, pipeline
from tfkd.run_context import Run
from tflite import files, interpreter, micro

# No default file: ml_collections would apply --config.* overrides to it at import, before
# cli.run can explain a misspelt key.
_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config, e.g. configs/sst2_full.py.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/sst2", "Run folder (resumed if it exists).")
_OUT = flags.DEFINE_string("out", "runs/bench_sst2", "Folder for sst2.{md,json,png}.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds of the scratch and distilled students (1 = only config.seed).")
flags.mark_flags_as_required(["config"])
GOAL = 0.85  # the target: the int8 student at 85% dev accuracy or better


def measure(run: Run) -> dict:
  """Every dev-accuracy and size figure of the benchmark, from a finished run."""
  x, y = run.splits.test
  results = {"dev_sentences": int(len(y))}
  for stage in ("teacher", "scratch", "distill"):
    results[stage], results[f"{stage}_parameters"] = keras_accuracy(run.model_path(stage), x, y)
  int8_path = run.tflite_path("distill", "int8")
  with open(int8_path, "rb") as f:
    model_bytes = f.read()
  litert_raw = interpreter.predict(model_bytes, x, dequantize=False)
  results["int8_litert"] = float(np.mean(np.argmax(litert_raw, -1) == y))
  arena = micro.find_arena_size(model_bytes)
  start = time.time()
  tflm_raw = tflm_predictions(model_bytes, x, arena.size)
  results["tflm_seconds"] = time.time() - start
  results["int8_tflm"] = float(np.mean(np.argmax(tflm_raw, -1) == y))
  results["tflm_litert_top1_agreement"] = float(np.mean(
      np.argmax(tflm_raw, -1) == np.argmax(litert_raw, -1)))
  results["tflm_litert_max_lsb"] = float(np.abs(tflm_raw.astype(int) - litert_raw.astype(int)).max())
  results["tflm_arena_bytes"] = arena.size
  results["flash_bytes"] = micro.flash_bytes(model_bytes)
  results["distilled_minus_scratch"] = results["distill"] - results["scratch"]
  results["int8_minus_float"] = results["int8_litert"] - results["distill"]
  return results


def seed_run(config, workdir: str, seed: int) -> Run:
  """Scratch and distill stages again with another seed, sharing the teacher and vocabulary."""
  seed_dir = os.path.join(workdir, f"seed{seed}")
  for shared in ("teacher/model.keras", "vocab.txt"):
    link = os.path.join(seed_dir, shared)
    if not os.path.exists(link):
      os.makedirs(os.path.dirname(link), exist_ok=True)
      os.symlink(os.path.abspath(os.path.join(workdir, shared)), link)
  config = config.copy_and_resolve_references()
  config.seed = seed
  config.stages = ("scratch", "distill")
  return pipeline.run_pipeline(config, seed_dir)


def seed_statistics(config, run: Run, seeds: int) -> dict:
  """Dev (and validation) accuracy of scratch and distilled students over `seeds` seeds.

  The first seed is `run`'s. Validation accuracy is measured too when the run
  has a validation split: with `data.val_unit='sentence'` it holds unseen
  sentences, a second held-out set beside dev.
  """
  held_out = {"": run.splits.test}
  if run.splits.val is not None:
    held_out["_val"] = run.splits.val
  per_seed = []
  for seed in range(config.seed, config.seed + seeds):
    seed_models = run if seed == config.seed else seed_run(config, run.workdir, seed)
    row = {"seed": seed}
    for stage in ("scratch", "distill"):
      for suffix, (x, y) in held_out.items():
        row[stage + suffix] = keras_accuracy(seed_models.model_path(stage), x, y)[0]
    per_seed.append(row)
  stats = {"per_seed": per_seed}
  for suffix in held_out:
    for stage in ("scratch", "distill"):
      values = np.array([s[stage + suffix] for s in per_seed])
      stats[stage + suffix] = {"mean": float(values.mean()),
                               "std": float(values.std(ddof=1)) if seeds > 1 else 0.0}
    gains = np.array([s["distill" + suffix] - s["scratch" + suffix] for s in per_seed])
    stats["gain_mean" + suffix], stats["gain_min" + suffix] = float(gains.mean()), float(gains.min())
  return stats


def markdown(r: dict) -> str:
  rows = [("teacher (Keras float)", r["teacher"], r["teacher_parameters"]),
          ("student from scratch (Keras float)", r["scratch"], r["scratch_parameters"]),
          ("distilled student (Keras float)", r["distill"], r["distill_parameters"]),
          ("distilled student, int8 on LiteRT", r["int8_litert"], r["distill_parameters"]),
          ("distilled student, int8 on TFLite Micro", r["int8_tflm"], r["distill_parameters"])]
  lines = ["| model | parameters | dev accuracy |", "|---|---:|---:|"]
  lines += [f"| {label} | {params:,} | {acc * 100:.2f}% |" for label, acc, params in rows]
  verdict = lambda ok: "yes" if ok else "**no**"
  lines += [
      "",
      f"- distilled − scratch: {r['distilled_minus_scratch'] * 100:+.2f} points "
      f"(distilled above scratch: {verdict(r['distilled_minus_scratch'] > 0)})",
      f"- int8 (LiteRT) − float: {r['int8_minus_float'] * 100:+.2f} points "
      f"(within 1 point: {verdict(abs(r['int8_minus_float']) <= 0.01)})",
      f"- int8 student ≥ {GOAL * 100:.0f}% dev accuracy: {verdict(r['int8_tflm'] >= GOAL)}",
      f"- TFLite Micro: arena {r['tflm_arena_bytes']:,} bytes (smallest that runs), flash "
      f"{r['flash_bytes']:,} bytes (the .tflite); {r['dev_sentences']} sentences in "
      f"{r['tflm_seconds']:.1f} s, top-1 agreement with LiteRT "
      f"{r['tflm_litert_top1_agreement'] * 100:.2f}% (max {r['tflm_litert_max_lsb']:.0f} LSB apart)",
      f"- whole run: {r['wall_seconds'] / 60:.1f} min",
  ]
  stats = r["seeds"]
  suffixes = [("", "dev")] + ([("_val", "validation")] if "gain_mean_val" in stats else [])
  if len(stats["per_seed"]) > 1:
    lines += ["", f"Students over {len(stats['per_seed'])} seeds (same teacher, vocabulary and "
              "transfer set):", "",
              "| seed | " + " | ".join(f"scratch ({name}) | distilled ({name}) | distilled − scratch ({name})"
                                     for _, name in suffixes) + " |",
              "|---:" + "|---:|---:|---:" * len(suffixes) + "|"]
    for s in stats["per_seed"]:
      lines.append(f"| {s['seed']} | " + " | ".join(
          f"{s['scratch' + k]:.2%} | {s['distill' + k]:.2%} | "
          f"{100 * (s['distill' + k] - s['scratch' + k]):+.2f} pt" for k, _ in suffixes) + " |")
    mean_std = lambda k: f"{100 * stats[k]['mean']:.2f} ± {100 * stats[k]['std']:.2f}%"
    lines.append("| mean ± sd | " + " | ".join(
        f"{mean_std('scratch' + k)} | {mean_std('distill' + k)} | {100 * stats['gain_mean' + k]:+.2f} pt "
        f"(lowest {100 * stats['gain_min' + k]:+.2f})" for k, _ in suffixes) + " |")
  return "\n".join(lines)


def plot(r: dict, path: str) -> None:
  seeds = r["seeds"]["per_seed"]
  # Students: bars are the mean over seeds, dots each seed; the int8 bars are config.seed's model.
  labels = ["teacher", f"scratch\n(mean of {len(seeds)})", f"distilled\n(mean of {len(seeds)})",
            f"int8 LiteRT\n(seed {seeds[0]['seed']})", f"int8 TFLM\n(seed {seeds[0]['seed']})"]
  values = [r["teacher"] * 100, r["seeds"]["scratch"]["mean"] * 100, r["seeds"]["distill"]["mean"] * 100,
            r["int8_litert"] * 100, r["int8_tflm"] * 100]
  fig, ax = files.new_figure(figsize=(8.5, 4))
  bars = ax.bar(labels, values, color=["#777", "#c88", "#58c", "#58c", "#58c"])
  ax.bar_label(bars, fmt="%.2f")
  for i, stage in ((1, "scratch"), (2, "distill")):
    ax.scatter([i + 0.25] * len(seeds), [s[stage] * 100 for s in seeds], color="k", s=12, zorder=3,
               label="one seed" if i == 1 else None)
  ax.axhline(GOAL * 100, color="k", linestyle="--", linewidth=1, label=f"goal {GOAL * 100:.0f}%")
  ax.set_ylim(min(values) - 5, max(max(values), GOAL * 100) + 2)
  ax.set_ylabel("SST-2 dev accuracy (%)")
  ax.set_title(f"SST-2: int8 student {r['flash_bytes'] / 1024:.0f} KiB flash, "
               f"{r['tflm_arena_bytes'] / 1024:.1f} KiB arena")
  ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.sst2")
  print(common.header(meta))
  start = time.time()
  config = _CONFIG.value
  run = pipeline.run_pipeline(config, _WORKDIR.value)
  results = measure(run)
  results["seeds"] = seed_statistics(config, run, _SEEDS.value)
  results["wall_seconds"] = time.time() - start
  table = markdown(results)
  files.write_atomic(os.path.join(_OUT.value, "sst2.md"), "# SST-2 benchmark\n\n" + common.header(meta)
                     + "\n" + table + "\n\n![dev accuracy](sst2.png)\n")
  files.write_json(os.path.join(_OUT.value, "sst2.json"),
                   {**meta, "results": results, "config": run.config.to_dict()})
  plot(results, os.path.join(_OUT.value, "sst2.png"))
  logging.info("Wrote %s/sst2.{md,json,png}", _OUT.value)
  print(table)


if __name__ == "__main__":
  cli.run(main)
