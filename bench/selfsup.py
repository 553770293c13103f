r"""Benchmark: 10% of the CIFAR-10 labels, three ways to a ResNet-8 student (issue 18, item 2).

  .venv/bin/python -m bench.selfsup --teacher_path=runs/cifar10_e80/teacher/model.keras \
      --out=runs/bench_selfsup --epochs=20 --seeds=0,1

One teacher (`--teacher_path`, or a ResNet-20 trained here first for `--teacher_epochs` on
every label in `--out/teacher`) and, per seed, three students that see the labels of the
same `--label_fraction` of the training images (`data.label_fraction`, class-stratified,
drawn with `data.seed=--label_seed`: the same images for every route and seed):
  scratch  cross-entropy on the labelled images alone (the `scratch` stage);
  soft     soft-target distillation on every training image: the labelled ones with
           α = 0.1 of cross-entropy, the unlabelled rest from the teacher alone (`distill`);
  seed     SEED on every training image without any label (`selfsup_pretrain`), then
           `--head` on the labelled images (`selfsup`).
Every route trains `--epochs` epochs; an epoch is a pass over what the route trains on,
so the labelled-only stages take fewer steps (the table gives the steps). Each seed runs
the pipeline's stages in `--out/runs/seed<k>` (export, report: Keras float and int8
`.tflite` accuracy on the whole test set). Writes selfsup.{md,json,png} to `--out`;
rerunning resumes (finished stages skip).
"""

import copy
import os

import numpy as np
import tf_keras
from absl import flags

from bench import common
from configs import cifar10_resnet
from tfkd import cli, config_checks, from_config, report_stage, selfsup_stages
from tfkd.run_context import Run, make_workdir
from tflite import files

_OUT = flags.DEFINE_string("out", "runs/bench_selfsup", "Output folder (resumed if it exists).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_TEACHER = flags.DEFINE_string("teacher_path", "", "Trained teacher .keras; '' = train a ResNet-20 first.")
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 80, "Epochs of that teacher when trained here.")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Epochs of every student stage (SEED and head each).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Student seeds.")
_LABEL_FRACTION = flags.DEFINE_float("label_fraction", 0.1, "Share of training images labelled.")
_LABEL_SEED = flags.DEFINE_integer("label_seed", 0, "data.seed: which images keep their label.")
_HEAD = flags.DEFINE_enum("head", "fine_tune", ["fine_tune", "linear"], "selfsup.head.")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", 0, "Use only N training images (0 = all).")
_VAL_SIZE = flags.DEFINE_integer("val_size", 5000, "Validation images carved from train (logged only).")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                                "train.precision of every model trained here (tfkd.precision).")
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 50, "Timed LiteRT invokes per .tflite.")
_CHECK_TEACHER = flags.DEFINE_bool("check_teacher", True, "distill.check_teacher: False for a "
                                   "smoke run's untrained teacher.")

STAGES = ("scratch", "distill", "selfsup_pretrain", "selfsup", "export", "report")
ROUTES = {"scratch": "scratch", "soft": "distill", "seed": "selfsup"}  # route → its model's stage


def base_config():
  config = cifar10_resnet.get_config()
  config.data.path, config.data.train_limit = _DATA.value, _TRAIN_LIMIT.value
  config.data.val_size, config.data.seed = _VAL_SIZE.value, _LABEL_SEED.value
  config.teacher.epochs, config.train.epochs = _TEACHER_EPOCHS.value, _EPOCHS.value
  config.train.precision = _PRECISION.value
  config.selfsup.head, config.distill.check_teacher = _HEAD.value, _CHECK_TEACHER.value
  config.report.edge, config.report.latency_runs = False, _LATENCY_RUNS.value
  config.report.latency_spread_s = 0.0  # its table reads no row latency: no wait for quiet rounds
  return from_config.with_defaults(config)


def run_seed(base_run: Run, seed: int) -> dict:
  """The stages of one seed on the loaded data (labels already budgeted); its report.json."""
  run = copy.copy(base_run)
  run.workdir = os.path.join(_OUT.value, "runs", f"seed{seed}")
  run.config = base_run.config.copy_and_resolve_references()
  run.config.seed, run.config.stages = seed, STAGES
  config_checks.validate(run.config)
  make_workdir(run.workdir)
  tf_keras.utils.set_random_seed(seed)
  return common.run_stages(run, STAGES, f"seed {seed}")


def accuracies(report: dict) -> dict:
  """{route: {'float': accuracy, 'int8': accuracy}} and the teacher's, from one report."""
  found = {r["label"]: r["accuracy"] for r in report["rows"]}
  result = {"teacher": {"float": found.get("teacher (Keras float)")}}
  for route, stage in ROUTES.items():
    label = report_stage.KERAS_LABELS[stage]
    result[route] = {"float": found.get(f"{label} (Keras float)"),
                     "int8": found.get(f"{label}, int8 TFLite")}
  return result


def _pct(value) -> str:
  return "—" if value is None else f"{value * 100:.2f}%"


def markdown(results: dict, steps: dict) -> str:
  """Per route: each seed's float and int8 test accuracy, and their means."""
  lines = ["| route | labels used | training steps | seed | test accuracy (Keras float) | "
           "test accuracy (int8 TFLite) |", "|---|---|---:|---:|---:|---:|"]
  used = {"scratch": "labelled images only", "soft": "labelled + teacher on the rest",
          "seed": "none (SEED), then labelled images"}
  for route in ROUTES:
    per_seed = [(seed, r[route]) for seed, r in results.items()]
    for seed, acc in per_seed:
      lines.append(f"| {route} | {used[route]} | {steps[route]} | {seed} | {_pct(acc['float'])} | "
                   f"{_pct(acc['int8'])} |")
    means = {k: [a[k] for _, a in per_seed if a[k] is not None] for k in ("float", "int8")}
    lines.append(f"| **{route}** | | | mean | **{_pct(np.mean(means['float']))}** | "
                 f"**{_pct(np.mean(means['int8']))}** |")
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  fig, axis = files.new_figure(figsize=(7, 4))
  for offset, (kind, colour) in zip((-0.18, 0.18), (("float", "tab:blue"), ("int8", "tab:orange"))):
    for i, route in enumerate(ROUTES):
      values = [r[route][kind] * 100 for r in results.values() if r[route][kind] is not None]
      axis.bar(i + offset, np.mean(values), width=0.34, color=colour,
               label=f"{'Keras float' if kind == 'float' else 'int8 TFLite'}" if i == 0 else None)
      axis.scatter([i + offset] * len(values), values, color="black", s=10, zorder=3)
  axis.set_xticks(range(len(ROUTES)), list(ROUTES))
  axis.set_ylabel("test accuracy (%)")
  axis.set_title(f"ResNet-8 with {_LABEL_FRACTION.value:.0%} of the labels (dots: seeds)")
  axis.legend(loc="lower right")
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.selfsup")
  print(common.header(meta))
  base = base_config()
  base.teacher.path = common.given_or_trained_teacher(base, _TEACHER.value, _OUT.value)
  base.data.label_fraction = _LABEL_FRACTION.value
  config_checks.validate(base)
  make_workdir(_OUT.value)
  base_run = Run(base, _OUT.value)  # the data and its label budget, loaded once for every seed
  batch = base_run.config.train.batch_size
  per_epoch = {"scratch": base_run.steps_per_epoch(batch),
               "soft": base_run.steps_per_epoch(batch, distillation=True)}
  steps = {"scratch": f"{_EPOCHS.value * per_epoch['scratch']:,}",
           "soft": f"{_EPOCHS.value * per_epoch['soft']:,}",
           "seed": f"{_EPOCHS.value * per_epoch['soft']:,} + {_EPOCHS.value * per_epoch['scratch']:,}"}
  results = {}
  for seed in (int(s) for s in _SEEDS.value):
    results[seed] = accuracies(run_seed(base_run, seed))
    print(markdown({seed: results[seed]}, steps), flush=True)
  table = markdown(results, steps)
  plot(results, os.path.join(_OUT.value, "selfsup.png"))
  teacher = [r["teacher"]["float"] for r in results.values() if r["teacher"]["float"] is not None]
  body = [common.header(meta), table, "", f"Teacher `{base.teacher.path}`: test accuracy "
          f"{_pct(teacher[0] if teacher else None)} (trained on every label). "
          f"{selfsup_stages.summary(base_run)} Head: `{_HEAD.value}`. Each seed's report.md: "
          "runs/seed<k>/.", "", "![accuracy per route](selfsup.png)"]
  files.write_atomic(os.path.join(_OUT.value, "selfsup.md"), "\n".join(body) + "\n")
  files.write_json(os.path.join(_OUT.value, "selfsup.json"), {
      **meta, "teacher_path": base.teacher.path, "epochs": _EPOCHS.value,
      "label_fraction": _LABEL_FRACTION.value, "label_seed": _LABEL_SEED.value, "head": _HEAD.value,
      "train_limit": _TRAIN_LIMIT.value, "steps": steps, "results": results})
  print(table)


if __name__ == "__main__":
  cli.run(main)
