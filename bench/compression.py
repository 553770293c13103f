r"""Benchmark of pruning, 2:4 sparsity, QAT and pruning + QAT of the distilled ResNet-8.

  .venv/bin/python -m bench.compression --workdir=runs/cifar10_resnet --out=runs/bench_compression \
      --epochs=10 --qat_epochs=5

Starts from a finished run's teacher and distilled student (`--workdir`) and
fine-tunes copies of the student with the teacher guiding them (the pipeline's
prune / qat / prune_qat stages) into:
  dense int8          the distilled student, post-training int8 (the reference);
  50% / 75% sparse    pruned with a polynomial schedule, post-training int8;
  2:4 sparse          2 of every 4 input-channel weights zero, post-training int8;
  QAT int8            quantisation-aware fine-tuning from the dense student;
  75% sparse + QAT    prune-preserving QAT from the 75% model.
Each is measured on the CIFAR-10 test set: accuracy of the int8 `.tflite` on
LiteRT, file bytes, gzip bytes, weight sparsity read from the `.tflite`, and
single-stream LiteRT latency. Writes compression.{md,json,png} to `--out`;
rerunning resumes (finished variants are skipped).
"""

import copy
import json
import os
import time

import ml_collections
from absl import flags

from bench import common
from configs import cifar10_compress
from tfkd import cli, compression_stages, from_config, pipeline
from tfkd.run_context import Run
from tflite import files, interpreter, sparsity

_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar10_resnet",
                               "Finished run holding teacher/model.keras and distill/model.keras.")
_OUT = flags.DEFINE_string("out", "runs/bench_compression", "Output folder (resumed if it exists).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Fine-tuning epochs of each pruned model.")
_QAT_EPOCHS = flags.DEFINE_integer("qat_epochs", 0, "Fine-tuning epochs of QAT models (0 = --epochs).")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.01, "Peak learning rate while pruning (cosine).")
_QAT_LEARNING_RATE = flags.DEFINE_float("qat_learning_rate", 0.001, "Peak learning rate of QAT.")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", 0, "Use only N training images (0 = all).")
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 200, "Timed LiteRT invokes per model.")
_VARIANTS = flags.DEFINE_list("variants", [], "Only these variant keys (dense always runs); [] = all.")
_END_FRACTION = flags.DEFINE_float("end_fraction", 0.7, "Share of the pruning steps by which the target is reached.")

# (key, label, pruning settings or None, stage): each pruning setting gets its own run folder.
VARIANTS = (
    ("dense", "dense int8 (post-training)", None, None),
    ("sparse50", "50% sparse, int8 (post-training)", {"sparsity": 0.5}, "prune"),
    ("sparse75", "75% sparse, int8 (post-training)", {"sparsity": 0.75}, "prune"),
    ("sparse2of4", "2:4 sparse, int8 (post-training)", {"m_by_n": (2, 4)}, "prune"),
    ("qat", "QAT, int8", {"sparsity": 0.75}, "qat"),
    ("sparse75_qat", "75% sparse + QAT (prune-preserving), int8", {"sparsity": 0.75}, "prune_qat"),
)


def base_config() -> ml_collections.ConfigDict:
  """The source run's own config (from its report.json) with the compress block and flags."""
  saved = os.path.join(_WORKDIR.value, "report.json")
  config = cifar10_compress.get_config()
  if os.path.exists(saved):  # Same data split and distillation losses as the student had.
    with open(saved) as f:
      source = json.load(f)["config"]
    for block in ("data", "distill", "train", "export"):
      config[block] = ml_collections.ConfigDict(source[block])
  config.data.path = _DATA.value
  config.data.train_limit = _TRAIN_LIMIT.value
  config.compress.train.epochs = _EPOCHS.value
  config.compress.train.learning_rate = _LEARNING_RATE.value
  config.compress.prune.end_fraction = _END_FRACTION.value
  config.compress.qat.epochs = _QAT_EPOCHS.value
  config.compress.qat.learning_rate = _QAT_LEARNING_RATE.value
  return from_config.with_defaults(config)


def variant_run(base_run: Run, key: str, pruning) -> Run:
  """A `Run` sharing the loaded data, in its own folder, linked to the source models."""
  run = copy.copy(base_run)
  run.workdir = os.path.join(_OUT.value, "runs", "sparse75" if key in ("qat", "sparse75_qat") else key)
  run.config = base_run.config.copy_and_resolve_references()
  if pruning:
    run.config.compress.prune.sparsity = pruning.get("sparsity", 0.75)
    run.config.compress.prune.m_by_n = pruning.get("m_by_n", ())
  for stage in ("teacher", "distill"):
    link = run.model_path(stage)
    if not os.path.exists(link):
      os.makedirs(os.path.dirname(link), exist_ok=True)
      os.symlink(os.path.abspath(os.path.join(_WORKDIR.value, stage, "model.keras")), link)
  return run


def check_same_settings(config) -> None:
  """Refuses to resume an `--out` folder made with other settings (it would skip their variants)."""
  settings = {"source_workdir": os.path.abspath(_WORKDIR.value), "data": config.data.to_dict(),
              "compress": config.compress.to_dict()}
  settings = json.loads(json.dumps(settings, default=list))  # tuples → lists, as they come back
  path = os.path.join(_OUT.value, "settings.json")
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    if before != settings:
      raise SystemExit(f"{_OUT.value} holds results made with other settings ({path}): pass a new "
                       "--out, or delete that folder to start again.")
  files.write_json(path, settings)


def measure(run: Run, path: str) -> dict:
  """Test accuracy on LiteRT, sizes, sparsity in the file and latency of one `.tflite`."""
  with open(path, "rb") as f:
    content = f.read()
  test_x, test_y = run.splits.test
  zeros = sparsity.tflite_sparsity(content)
  latency = interpreter.latency_ms(content, test_x[0], _LATENCY_RUNS.value, warmup=20)
  return {"accuracy": interpreter.evaluate_accuracy(content, test_x, test_y, 500),
          "file_bytes": len(content), "gzip_bytes": sparsity.gzip_bytes(content),
          "sparsity": zeros["sparsity"], "m_by_n_2_4": zeros["m_by_n_2_4"],
          "latency_p50_ms": latency["p50"], "latency_p90_ms": latency["p90"], "file": path}


def markdown(rows) -> str:
  dense = rows[0]
  lines = ["| model | test accuracy | Δ vs dense int8 | file bytes | gzip bytes | gzip vs dense "
           "| weight sparsity | 2:4 groups | LiteRT p50 ms | fine-tune s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(
        f"| {r['label']} | {r['accuracy']:.2%} | {100 * (r['accuracy'] - dense['accuracy']):+.2f} pt "
        f"| {r['file_bytes']:,} | {r['gzip_bytes']:,} | {r['gzip_bytes'] / dense['gzip_bytes']:.2f}× "
        f"| {r['sparsity']:.1%} | {r['m_by_n_2_4']:.1%} | {r['latency_p50_ms']:.3f} "
        f"| {r['seconds']:.0f} |")
  return "\n".join(lines)


def claims(rows) -> dict:
  """The compression targets (BENCHMARKS.md, section 4), for the variants that were measured."""
  by_key = {r["key"]: r for r in rows}
  dense = by_key["dense"]
  accuracy_gap = lambda key: abs(by_key[key]["accuracy"] - dense["accuracy"])
  checks = {  # name: (variant needed, check)
      "qat_int8_at_least_post_training_int8":
          ("qat", lambda: by_key["qat"]["accuracy"] >= dense["accuracy"]),
      "sparse50_within_1pt_of_dense_int8": ("sparse50", lambda: accuracy_gap("sparse50") <= 0.01),
      "sparse75_within_1pt_of_dense_int8": ("sparse75", lambda: accuracy_gap("sparse75") <= 0.01),
      "sparse75_gzip_at_most_half_of_dense":
          ("sparse75", lambda: by_key["sparse75"]["gzip_bytes"] <= dense["gzip_bytes"] / 2),
  }
  return {name: check() for name, (key, check) in checks.items() if key in by_key}


def plot(rows, path: str) -> None:
  """Accuracy against gzip size, and latency per model."""
  fig, (left, right) = files.new_figure(1, 2, figsize=(12, 4.5))
  for r in rows:
    left.scatter(r["gzip_bytes"] / 1024, r["accuracy"] * 100, s=40)
    left.annotate(r["label"], (r["gzip_bytes"] / 1024, r["accuracy"] * 100), fontsize=7,
                  xytext=(4, 3), textcoords="offset points")
  left.set_xlabel("gzip size of the .tflite (KiB)")
  left.set_ylabel("CIFAR-10 test accuracy, int8 on LiteRT (%)")
  left.set_title("Accuracy against compressed size")
  left.grid(True, alpha=0.3)
  right.barh([r["label"] for r in rows], [r["latency_p50_ms"] for r in rows])
  right.invert_yaxis()
  right.tick_params(axis="y", labelsize=7)
  right.set_xlabel("LiteRT p50 latency, 1 thread (ms)")
  right.set_title("Latency (LiteRT's int8 kernels compute dense)")
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.compression")
  print(common.header(meta))
  for stage in ("teacher", "distill"):
    if not os.path.exists(os.path.join(_WORKDIR.value, stage, "model.keras")):
      raise SystemExit(f"{_WORKDIR.value}/{stage}/model.keras is missing: finish the run first "
                       f"(python -m tfkd.train --config=configs/cifar10_resnet.py --workdir={_WORKDIR.value}).")
  config = base_config()
  check_same_settings(config)
  base_run = Run(config, _OUT.value)
  rows = []
  unknown = set(_VARIANTS.value) - {v[0] for v in VARIANTS}
  if unknown:
    raise SystemExit(f"Unknown --variants {sorted(unknown)}: choose from {[v[0] for v in VARIANTS]}.")
  for key, label, pruning, stage in VARIANTS:
    if _VARIANTS.value and key != "dense" and key not in _VARIANTS.value:
      continue
    run = variant_run(base_run, key, pruning)
    start = time.time()
    if stage is None:
      path = pipeline.export_model(run, "distill", "int8")
    else:
      if stage == "prune_qat":
        compression_stages.stage_prune(run)
      pipeline.STAGE_FUNCTIONS[stage](run)
      path = run.tflite_path(stage, "int8")
    seconds = time.time() - start
    rows.append({"key": key, "label": label, "seconds": seconds, **measure(run, path)})
    print(f"{label}: accuracy {rows[-1]['accuracy']:.4f}, gzip {rows[-1]['gzip_bytes']:,} bytes, "
          f"sparsity {rows[-1]['sparsity']:.3f} ({seconds:.0f}s)", flush=True)
  table = markdown(rows)
  verdicts = claims(rows)
  settings = {"epochs": _EPOCHS.value, "qat_epochs": _QAT_EPOCHS.value or _EPOCHS.value,
              "end_fraction": _END_FRACTION.value, "variants": _VARIANTS.value or "all",
              "learning_rate": _LEARNING_RATE.value, "qat_learning_rate": _QAT_LEARNING_RATE.value,
              "train_limit": _TRAIN_LIMIT.value, "latency_runs": _LATENCY_RUNS.value,
              "source_workdir": _WORKDIR.value, "test_examples": int(len(base_run.splits.test[1]))}
  body = [common.header(meta), table, "",
          "Accuracy: int8 `.tflite` on LiteRT over the CIFAR-10 test set. Sparsity: zeros in the "
          "conv/dense kernels stored in the `.tflite`. gzip: `gzip -9` of the file. Latency: "
          "single-stream LiteRT invoke, 1 thread. Fine-tune s: wall time of that variant's stage "
          "(0 when resumed).", "",
          "Checks: " + ", ".join(f"{k}={v}" for k, v in verdicts.items()), "",
          "![accuracy against gzip size](compression.png)"]
  files.write_atomic(os.path.join(_OUT.value, "compression.md"), "\n".join(body) + "\n")
  files.write_json(os.path.join(_OUT.value, "compression.json"),
                   {**meta, "settings": settings, "rows": rows, "claims": verdicts})
  plot(rows, os.path.join(_OUT.value, "compression.png"))
  print(table)
  print("\nChecks:", json.dumps(verdicts, indent=2))


if __name__ == "__main__":
  cli.run(main)
