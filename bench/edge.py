r"""Edge benchmark: a trained Keras model in every TFLite mode, on LiteRT and TFLite Micro.

  .venv/bin/python -m bench.edge --keras_model=runs/cifar10_resnet/distill/model.keras \
      --data=../shared/data/cifar10-jpeg --out=runs/bench_edge

For every converter mode (float32, float16, dynamic, int8, uint8, int16x8):
- conversion with representative data = `--representative_size` training
  images spread evenly over the (sorted) training files — never test images;
- top-1 accuracy on the whole test split on LiteRT (`tflite.interpreter`);
- LiteRT single-stream latency p50/p90 (1 thread by default). All modes are
  timed in the same process in interleaved rounds (each round times every mode
  in turn), so background load hits every mode alike; the int8 / float32
  latency ratio is the ratio of their p50s over all rounds;
- TFLite Micro (`tflite.micro`): op support, the smallest arena (searched and
  confirmed by a run) and its ratio to the peak-activation lower bound from the
  graph (`tflite.cost`; the goal for int8 is ≤ 1.1×), parity with LiteRT on
  `--parity_samples` test images against LiteRT's reference kernels and its
  default XNNPACK kernels, and flash bytes (the `.tflite` size);
- device fit of each mode (`tflite.devices`).

Writes edge.{md,json,png} and the `.tflite` files to --out and prints the tables.
"""

import os
import time

from absl import app, flags, logging

import numpy as np

from bench import common
from tfkd import cli, data, eval_data, model_files
from tflite import benchmark, convert, cost, devices, files, interpreter

_KERAS_MODEL = flags.DEFINE_string("keras_model", "runs/cifar10_resnet/distill/model.keras",
                                   "The trained Keras model to export.")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "Class-folder dataset.")
_OUT = flags.DEFINE_string("out", "runs/bench_edge", "Output folder.")
_MODES = flags.DEFINE_list("modes", list(convert.MODES), "Converter modes to run.")
_REPRESENTATIVE_SIZE = flags.DEFINE_integer("representative_size", 500,
                                            "Training images used for calibration.", lower_bound=1)
_TEST_LIMIT = flags.DEFINE_integer("test_limit", 0, "Evaluate on the first N test images (0: all).",
                                   lower_bound=0)
_PARITY_SAMPLES = flags.DEFINE_integer("parity_samples", 100, "Test images compared on TFLM.",
                                       lower_bound=0)
_ROUNDS = flags.DEFINE_integer("rounds", 10, "Interleaved latency rounds.", lower_bound=1)
_RUNS = flags.DEFINE_integer("runs", 50, "Timed invokes per mode in each round.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed invokes per mode before timing.",
                               lower_bound=0)
_THREADS = flags.DEFINE_integer("threads", 1, "LiteRT threads.", lower_bound=1)


def markdown(rows, keras_accuracy, ratio, fit_mode, fit_rows) -> str:
  lines = [f"Keras float model: test accuracy {keras_accuracy * 100:.2f}%.", "",
           "| mode | .tflite bytes | test accuracy | LiteRT p50 ms | p90 ms | p50 / float32 | "
           "TFLM | TFLM arena B | arena / lower bound | TFLM vs LiteRT ref. kernels | "
           "TFLM vs LiteRT XNNPACK |",
           "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
  for r in rows:
    t = r["tflm"]
    if t["runs"]:
      ref, default = t["parity_reference_kernels"], t["parity_default_kernels"]
      lsb = " LSB" if default["integer_output"] else ""
      tflm = (f"runs | {t['arena_bytes']:,} | {t['arena_over_lower_bound']:.3f}× "
              f"(activations {t['head_over_lower_bound']:.3f}×) | "
              f"max {ref['max_abs_diff']:g}{lsb}, {ref['identical']}/{ref['samples']} identical | "
              f"max {default['max_abs_diff']:g}{lsb}, "
              f"{default['identical']}/{default['samples']} identical")
    else:  # Op names here; TFLM's reasons are in edge.json.
      tflm = "no: " + ", ".join(entry.split()[0] for entry in t["unsupported_ops"]) + " | — | — | — | —"
    lines.append(f"| {r['mode']} | {r['bytes']:,} | {r['accuracy'] * 100:.2f}% | "
                 f"{r['latency']['p50']:.3f} | {r['latency']['p90']:.3f} | "
                 f"{r['latency_over_float32']:.2f} | {tflm} |")
  reasons = [f"- {r['mode']}: " + "; ".join(r["tflm"]["unsupported_ops"])
             for r in rows if not r["tflm"]["runs"]]
  if reasons:
    lines += ["", "Why TFLM cannot run some modes:", "", *reasons]
  lines += ["", f"int8 / float32 LiteRT p50 latency, same run: **{ratio:.3f}**" if ratio else "",
            "", f"Device fit of the {fit_mode} model (flash: .tflite bytes; RAM: TFLM arena):", "",
            devices.markdown(fit_rows)]
  return "\n".join(lines)


def plot(rows, keras_accuracy, path: str) -> None:
  modes = [r["mode"] for r in rows]
  fig, (left, middle, right) = files.new_figure(1, 3, figsize=(15, 4.5))
  left.bar(modes, [r["accuracy"] * 100 for r in rows], color="tab:blue")
  left.axhline(keras_accuracy * 100, color="black", linestyle="--", label="Keras float")
  low = min([r["accuracy"] for r in rows] + [keras_accuracy]) * 100
  left.set_ylim(max(0, low - 5), min(100, max(r["accuracy"] for r in rows) * 100 + 3))
  left.set_ylabel("test accuracy (%)")
  left.set_title("Accuracy on LiteRT")
  left.legend()
  x = np.arange(len(rows))
  middle.bar(x - 0.2, [r["latency"]["p50"] for r in rows], 0.4, label="p50")
  middle.bar(x + 0.2, [r["latency"]["p90"] for r in rows], 0.4, label="p90")
  middle.set_xticks(x, modes)
  middle.set_yscale("log")  # int16x8 runs LiteRT's slow reference int16 kernels
  middle.set_ylabel("ms per inference (1 input, log scale)")
  middle.set_title("LiteRT single-stream latency")
  middle.legend()
  ran = [r for r in rows if r["tflm"]["runs"]]
  x = np.arange(len(ran))
  right.bar(x - 0.2, [r["cost"]["peak_activation_bytes"] / 1024 for r in ran], 0.4,
            label="peak-activation lower bound")
  right.bar(x + 0.2, [r["tflm"]["arena_bytes"] / 1024 for r in ran], 0.4, label="TFLM arena")
  right.set_xticks(x, [r["mode"] for r in ran])
  right.set_ylabel("KiB")
  right.set_title("TFLite Micro RAM")
  right.legend()
  for axis in (left, middle, right):
    axis.tick_params(axis="x", rotation=30)
    axis.grid(True, axis="y", alpha=0.3)
  fig.tight_layout()
  files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.edge")
  print(common.header(meta))
  os.makedirs(_OUT.value, exist_ok=True)
  unknown = [m for m in _MODES.value if m not in convert.MODES]
  if unknown:
    raise app.UsageError(f"Unknown --modes {unknown}: choose from {list(convert.MODES)}.")
  model = model_files.load_model(_KERAS_MODEL.value)
  input_shape = tuple(model.input_shape[1:])
  config = eval_data.data_config("folder", _DATA.value, input_shape)
  test_x, test_y = eval_data.load_split(config, "test")
  if _TEST_LIMIT.value:
    test_x, test_y = test_x[:_TEST_LIMIT.value], test_y[:_TEST_LIMIT.value]
  # Training images spread evenly over the sorted training files (every class), never test images.
  train_paths, _, _ = data.list_image_folder(os.path.join(_DATA.value, "train"))
  calibration = data.decode_images(list(data.evenly_spaced(np.array(train_paths),
                                                           _REPRESENTATIVE_SIZE.value)),
                                   config.image_size, config.channels)
  model.compile(metrics=["accuracy"])
  keras_accuracy = float(model.evaluate(data.eval_dataset(test_x, test_y, 500), verbose=0)[1])
  logging.info("Keras accuracy %.4f on %d test images", keras_accuracy, len(test_y))

  converted, rows = {}, []
  for mode in _MODES.value:
    start = time.time()
    converted[mode] = convert.convert(model, mode, calibration)
    seconds = time.time() - start
    files.write_atomic(os.path.join(_OUT.value, f"model_{mode}.tflite"), converted[mode])
    accuracy = interpreter.evaluate_accuracy(converted[mode], test_x, test_y, batch_size=500)
    model_cost = cost.model_cost(converted[mode])
    tflm = benchmark.micro_section(converted[mode], test_x[:_PARITY_SAMPLES.value],
                                   model_cost["peak_activation_bytes"])
    rows.append({"mode": mode, "bytes": len(converted[mode]), "convert_seconds": seconds,
                 "accuracy": accuracy, "cost": model_cost, "tflm": tflm,
                 "devices": devices.fit_table(len(converted[mode]), tflm.get("arena_bytes"))})
    logging.info("[%s] %d bytes, accuracy %.4f, TFLM %s", mode, len(converted[mode]), accuracy,
                 tflm.get("arena_bytes") or tflm["unsupported_ops"])

  latency = interpreter.interleaved_latency_ms(converted, test_x[0], _ROUNDS.value, _RUNS.value,
                                               _WARMUP.value, _THREADS.value)
  float_p50 = latency.get("float32", {}).get("p50")
  for r in rows:
    r["latency"] = latency[r["mode"]]
    r["latency_over_float32"] = r["latency"]["p50"] / float_p50 if float_p50 else float("nan")
  ratio = (latency["int8"]["p50"] / float_p50) if float_p50 and "int8" in latency else None
  fit_mode = "int8" if "int8" in converted else rows[0]["mode"]
  fit_rows = next(r["devices"] for r in rows if r["mode"] == fit_mode)

  table = markdown(rows, keras_accuracy, ratio, fit_mode, fit_rows)
  print(table)
  files.write_atomic(os.path.join(_OUT.value, "edge.md"), "# Edge benchmark\n\n" + common.header(meta)
                     + "\n" + table + "\n\n![edge](edge.png)\n")
  files.write_json(os.path.join(_OUT.value, "edge.json"), {
      **meta, "keras_model": _KERAS_MODEL.value, "keras_accuracy": keras_accuracy,
      "test_examples": int(len(test_y)), "representative_images": int(len(calibration)),
      "latency_settings": {"rounds": _ROUNDS.value, "runs_per_round": _RUNS.value,
                           "warmup": _WARMUP.value, "threads": _THREADS.value},
      "int8_over_float32_latency": ratio, "rows": rows})
  plot(rows, keras_accuracy, os.path.join(_OUT.value, "edge.png"))


if __name__ == "__main__":
  cli.run(main)
