r"""Issue 6's benchmark: SST-2 distilled into an int8 text CNN that runs on TFLite Micro.

  .venv/bin/python -m bench.sst2 --config=configs/sst2_full.py --workdir=runs/sst2 --out=bench_out/sst2

Runs (or resumes) the pipeline of the config, then measures on every dev
sentence (dev.tsv, 872 sentences, the "test" split): the teacher, the student
trained from scratch and the distilled student (Keras float), the distilled
student's int8 `.tflite` on LiteRT and, one sentence per invoke, on TFLite
Micro; plus the student's smallest TFLM arena and its flash bytes. Writes
`sst2.md`, `sst2.json` and `sst2.png` to `--out` and prints the table.

Any config value can be overridden, e.g. a quick try on 2,000 phrases:
  .venv/bin/python -m bench.sst2 --workdir=/tmp/sst2_try --out=/tmp/sst2_try/bench \
      --config.data.train_limit=2000 --config.data.val_size=200
"""

import os
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

import tfkd  # noqa: F401  (before TensorFlow: selects Keras 2)
import tf_keras
from bench import common
from tfkd import data, pipeline
from tflite import interpreter, micro
from tflite_micro.python.tflite_micro import runtime

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sst2_full.py", "Run config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/sst2", "Run folder (resumed if it exists).")
_OUT = flags.DEFINE_string("out", "bench_out/sst2", "Folder for sst2.{md,json,png}.")
GOAL = 0.85  # issue 6: the int8 student at 85% dev accuracy or better


def keras_accuracy(path: str, x: np.ndarray, y: np.ndarray) -> tuple:
  """(dev accuracy, parameters) of a saved Keras model."""
  model = tf_keras.models.load_model(path)
  model.compile(metrics=["accuracy"])
  _, accuracy = model.evaluate(data.eval_dataset(x, y, 500), verbose=0)
  return float(accuracy), int(model.count_params())


def tflm_predictions(model_bytes: bytes, x: np.ndarray, arena_size: int) -> np.ndarray:
  """Raw outputs of TFLite Micro, one input row per invoke (as a device runs it)."""
  detail = interpreter.load(model_bytes).get_input_details()[0]
  tflm = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
  outputs = []
  for row in x:
    tflm.set_input(interpreter.quantize_input(row[None], detail), 0)
    tflm.invoke()
    outputs.append(tflm.get_output(0)[0].copy())
  return np.stack(outputs)


def measure(run: pipeline.Run) -> dict:
  """Every dev-accuracy and size figure of issue 6, from a finished run."""
  x, y = run.splits.test
  results = {"dev_sentences": int(len(y))}
  for stage in ("teacher", "scratch", "distill"):
    results[stage], results[f"{stage}_parameters"] = keras_accuracy(run.model_path(stage), x, y)
  int8_path = pipeline.tflite_path(run, "distill", "int8")
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
  return "\n".join(lines)


def plot(r: dict, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  labels = ["teacher", "scratch", "distilled", "int8 LiteRT", "int8 TFLM"]
  values = [r[k] * 100 for k in ("teacher", "scratch", "distill", "int8_litert", "int8_tflm")]
  fig, ax = plt.subplots(figsize=(7, 4))
  bars = ax.bar(labels, values, color=["#777", "#c88", "#58c", "#58c", "#58c"])
  ax.bar_label(bars, fmt="%.1f")
  ax.axhline(GOAL * 100, color="k", linestyle="--", linewidth=1, label=f"goal {GOAL * 100:.0f}%")
  ax.set_ylim(min(values) - 5, max(max(values), GOAL * 100) + 2)
  ax.set_ylabel("SST-2 dev accuracy (%)")
  ax.set_title(f"SST-2: int8 student {r['flash_bytes'] / 1024:.0f} KiB flash, "
               f"{r['tflm_arena_bytes'] / 1024:.1f} KiB arena")
  ax.legend(loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  meta = common.provenance("bench.sst2")
  print(common.header(meta))
  start = time.time()
  config = _CONFIG.value
  pipeline.run_pipeline(config, _WORKDIR.value)
  results = measure(pipeline.Run(config, _WORKDIR.value))
  results["wall_seconds"] = time.time() - start
  table = markdown(results)
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "sst2.md"), "w") as f:
    f.write("# SST-2 benchmark\n\n" + common.header(meta) + "\n" + table + "\n\n![dev accuracy](sst2.png)\n")
  common.save_json(_OUT.value, "sst2.json", {**meta, "results": results, "config": config.to_dict()})
  plot(results, os.path.join(_OUT.value, "sst2.png"))
  logging.info("Wrote %s/sst2.{md,json,png}", _OUT.value)
  print(table)


if __name__ == "__main__":
  app.run(main)
