r"""Benchmark: students distilled from one CIFAR-10 teacher, full, pruned, int8 and bfloat16.

  .venv/bin/python -m bench.compressed_teacher --teacher_path=runs/cifar10_e80/teacher/model.keras \
      --out=runs/bench_compressed_teacher --epochs=20 --seeds=0,1

One teacher (`--teacher_path`, or a ResNet-20 trained first for `--teacher_epochs` in
`--out/teacher`) is compressed each way `teacher.compress` offers (the `teacher_compress`
stage: the pruned teachers fine-tuned `--prune_epochs` on the labels, the int8 teacher
on LiteRT, the bfloat16 teacher in Keras), and a ResNet-8 student is distilled from each,
once per seed, with the pipeline's stages teacher_compress → teacher_views → distill →
export → report in `--out/runs/<variant>/seed<k>`. Every student learns from cached
views (`--cache_epochs`), the int8 teacher's only way to teach, so all variants train
alike. A compressed teacher is made once (first seed) and copied to the other seeds, and
it labels the views once: every seed of a variant sees the first seed's views
(`data.view_seed`) and reads one cache, `--out/runs/<variant>/teacher_views`
(`distill.cache_dir`); the seeds differ in the student's weights and batch order.
Writes compressed_teacher.{md,json,png} to `--out`; rerunning resumes (finished stages skip).

Columns: the teacher's file bytes, weight sparsity, test accuracy and top-1 agreement
with the float teacher, and how long it takes to label a batch of `report.batch_size`
test images the way it teaches, timed in the same report run as the float teacher (so the
ratio is fair under background load); then the students' test accuracy, Keras float and
int8 `.tflite` on LiteRT, mean ± standard deviation over the seeds.
"""

import copy
import os
import shutil

import numpy as np
import tf_keras
from absl import flags

from bench import common
from configs import cifar10_resnet
from tfkd import cli, config_checks, from_config
from tfkd.run_context import Run, make_workdir
from tflite import files, sparsity

_OUT = flags.DEFINE_string("out", "runs/bench_compressed_teacher", "Output folder (resumed if it exists).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_TEACHER = flags.DEFINE_string("teacher_path", "", "Trained teacher .keras; '' = train a ResNet-20 first.")
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 80, "Epochs of that teacher when trained here.")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Distillation epochs of every student.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Student seeds.")
_VARIANTS = flags.DEFINE_list("variants", ["none", "prune50", "prune75", "int8", "bfloat16"],
                              "Teachers: none (float32), prune<percent>, int8, float16, bfloat16.")
_PRUNE_EPOCHS = flags.DEFINE_integer("prune_epochs", 5, "Fine-tuning epochs of each pruned teacher.")
_CACHE_EPOCHS = flags.DEFINE_integer("cache_epochs", 20, "Epochs of views each teacher labels.")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", 0, "Use only N training images (0 = all).")
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 200, "Timed LiteRT invokes per student .tflite.")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                                "train.precision of every model trained here (tfkd.precision).")
_BATCH_RUNS = flags.DEFINE_integer("batch_runs", 10, "Timed teacher batches in each report.")

STAGES = ("teacher_compress", "teacher_views", "distill", "export", "report")


def base_config():
  config = cifar10_resnet.get_config()
  config.data.path, config.data.train_limit = _DATA.value, _TRAIN_LIMIT.value
  config.teacher.epochs = _TEACHER_EPOCHS.value
  config.train.epochs, config.train.precision = _EPOCHS.value, _PRECISION.value
  config.distill.cached_teacher, config.distill.cache_epochs = True, _CACHE_EPOCHS.value
  config.teacher.prune_epochs = _PRUNE_EPOCHS.value
  config.report.edge, config.report.latency_runs = False, _LATENCY_RUNS.value
  config.report.latency_spread_s = 0.0  # its table reads no row latency: no wait for quiet rounds
  config.report.teacher_batch_runs = _BATCH_RUNS.value
  return from_config.with_defaults(config)


def variant_config(base, variant: str, seed: int, first_seed: int):
  """The base config with `teacher.compress` (and sparsity) of `variant`, the seed, and the
  first seed's views in the variant's one cache."""
  config = base.copy_and_resolve_references()
  config.seed, config.stages = seed, STAGES
  config.data.view_seed = first_seed
  config.distill.cache_dir = os.path.join(_OUT.value, "runs", variant, "teacher_views")
  if variant.startswith("prune"):
    config.teacher.compress, config.teacher.prune_sparsity = "prune", int(variant[5:]) / 100
  else:
    config.teacher.compress = variant
  config_checks.validate(config)
  return config


def run_variant(base_run: Run, variant: str, seed: int, first_seed: int) -> dict:
  """Runs the stages for one (teacher, seed) on the loaded data; returns its report.json."""
  run = copy.copy(base_run)
  run.workdir = os.path.join(_OUT.value, "runs", variant, f"seed{seed}")
  run.config = variant_config(base_run.config, variant, seed, first_seed)
  run._teacher_view_logits = None  # pylint: disable=protected-access  (this run's own views)
  make_workdir(run.workdir)
  shared = os.path.join(_OUT.value, "runs", variant, f"seed{first_seed}", "teacher_compress")
  own = run.path("teacher_compress")
  if seed != first_seed and os.path.isdir(shared) and not os.path.exists(own):
    shutil.copytree(shared, own)  # one compressed teacher per variant
  tf_keras.utils.set_random_seed(seed)
  return common.run_stages(run, STAGES, f"{variant} seed {seed}")


def summarize(variant: str, reports: list) -> dict:
  """One table row: the teacher's facts (from the first seed) and the students' accuracies."""
  def accuracies(label):
    return [r["accuracy"] for report in reports for r in report["rows"] if r["label"] == label]
  first = reports[0]
  facts = first.get("teacher_compression")
  teacher_row = next(r for r in first["rows"] if r["label"] == "teacher (Keras float)")
  if facts:
    teacher = facts["after"]
    ratio = teacher["batch_latency_ms"]["p50"] / facts["before"]["batch_latency_ms"]["p50"]
  else:
    with open(first["config"]["teacher"]["path"], "rb") as f:
      gzip_bytes = sparsity.gzip_bytes(f.read())
    teacher = {"runtime": "Keras float32", "file_bytes": teacher_row["file_bytes"],
               "gzip_bytes": gzip_bytes, "sparsity": 0.0, "accuracy": teacher_row["accuracy"],
               "agreement": 1.0, "batch_latency_ms": None}
    ratio = 1.0
  return {"variant": variant, "teacher": teacher, "batch_time_vs_float": ratio,
          "student_float": accuracies("distilled student (Keras float)"),
          "student_int8": accuracies("distilled student, int8 TFLite"),
          "seeds": [r["config"]["seed"] for r in reports]}


def _mean_sd(values) -> str:
  if not values:
    return "—"
  sd = f" ± {np.std(values, ddof=1) * 100:.2f}" if len(values) > 1 else ""
  return f"{np.mean(values) * 100:.2f}{sd}%"


def markdown(rows) -> str:
  lines = ["| teacher | runs on | file bytes | gzip bytes | weight sparsity | teacher test acc. | "
           "top-1 as float teacher | batch time vs float teacher | student (Keras float) | "
           "student int8 | seeds |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    t = r["teacher"]
    lines.append(f"| {r['variant']} | {t['runtime']} | {t['file_bytes']:,} | {t['gzip_bytes']:,} | "
                 f"{t['sparsity']:.1%} | "
                 f"{t['accuracy'] * 100:.2f}% | {t['agreement'] * 100:.2f}% | "
                 f"{r['batch_time_vs_float']:.2f}× | {_mean_sd(r['student_float'])} | "
                 f"{_mean_sd(r['student_int8'])} | {','.join(map(str, r['seeds']))} |")
  return "\n".join(lines)


def plot(rows, path: str) -> None:
  """Students' accuracy per teacher (bars: mean, dots: seeds, x: the teacher), and teacher sizes."""
  fig, (students, teachers) = files.new_figure(1, 2, figsize=(11, 4), width_ratios=(3, 2))
  names = [r["variant"] for r in rows]
  for offset, (key, label, colour) in zip((-0.18, 0.18), (
      ("student_float", "student, Keras float", "tab:blue"),
      ("student_int8", "student, int8 TFLite", "tab:orange"))):
    for i, r in enumerate(rows):
      values = [v * 100 for v in r[key]]
      students.bar(i + offset, np.mean(values), width=0.34, color=colour,
                   label=label if i == 0 else None)
      students.scatter([i + offset] * len(values), values, color="black", s=10, zorder=3)
  students.scatter(range(len(rows)), [r["teacher"]["accuracy"] * 100 for r in rows], marker="x",
                   color="tab:red", s=40, zorder=4, label="its teacher")
  values = [v for r in rows
            for v in r["student_int8"] + r["student_float"] + [r["teacher"]["accuracy"]]]
  students.set(xticks=range(len(rows)), xticklabels=names,
               ylim=(min(values) * 100 - 3, min(100, max(values) * 100 + 3)),
               ylabel="test accuracy (%)", title="ResNet-8 students of each teacher (dots: seeds)")
  students.legend(loc="lower right", fontsize=8)
  for offset, key, colour in ((-0.2, "file_bytes", "tab:gray"), (0.2, "gzip_bytes", "silver")):
    teachers.bar([i + offset for i in range(len(rows))],
                 [r["teacher"][key] / 1000 for r in rows], width=0.4, color=colour,
                 label=key.replace("_", " "))
  for i, r in enumerate(rows):
    teachers.annotate(f"{r['batch_time_vs_float']:.2f}× time",
                      (i, r["teacher"]["file_bytes"] / 1000), ha="center", va="bottom", fontsize=8)
  teachers.set(xticks=range(len(rows)), xticklabels=names, ylabel="teacher (kB)",
               title="teachers: size; batch time vs float")
  teachers.legend(loc="center right", fontsize=8)
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.compressed_teacher")
  print(common.header(meta))
  base = base_config()
  base.teacher.path = common.given_or_trained_teacher(base, _TEACHER.value, _OUT.value)
  make_workdir(_OUT.value)
  base_run = Run(base, _OUT.value)  # the data, loaded once for every variant
  seeds = [int(s) for s in _SEEDS.value]
  rows = []
  for variant in _VARIANTS.value:
    reports = [run_variant(base_run, variant, seed, seeds[0]) for seed in seeds]
    rows.append(summarize(variant, reports))
    print(markdown(rows[-1:]), flush=True)
  table = markdown(rows)
  settings = {"teacher_path": base.teacher.path, "epochs": _EPOCHS.value, "seeds": seeds,
              "prune_epochs": _PRUNE_EPOCHS.value, "cache_epochs": _CACHE_EPOCHS.value,
              "train_limit": _TRAIN_LIMIT.value, "batch_size": base.report.batch_size,
              "test_examples": int(len(base_run.splits.test[1]))}
  body = [common.header(meta), table, "",
          f"Teachers' batch time: labelling {base.report.batch_size} test images the way each "
          "teacher teaches (Keras, or LiteRT on every core), timed alternately with the float "
          "teacher in the same report, p50 ratio. Students: ResNet-8 distilled "
          f"{_EPOCHS.value} epochs from {_CACHE_EPOCHS.value} cached epochs of views; test accuracy, "
          "mean ± sd over the seeds. Each run's report.md: runs/<variant>/seed<k>/."]
  files.write_atomic(os.path.join(_OUT.value, "compressed_teacher.md"), "\n".join(body) + "\n")
  files.write_json(os.path.join(_OUT.value, "compressed_teacher.json"),
                   {**meta, "settings": settings, "rows": rows})
  plot(rows, os.path.join(_OUT.value, "compressed_teacher.png"))
  print(table)


if __name__ == "__main__":
  cli.run(main)
