r"""Input normalisation folded out of the int8 ResNet-8: TFLite Micro arena and accuracy.

  .venv/bin/python -m bench.fold --model=runs/cifar10_resnet/distill/model.keras \
      --out=runs/bench_fold
  .venv/bin/python -m bench.fold --epochs=5 --out=runs/bench_fold   # trains a ResNet-8 first

Compares three exports of one trained ResNet-8 (`tfkd.fold`):
  unfolded       the Keras model as trained: Normalization → SUB and MUL in the graph;
  folded, zeros  the normalisation folded into the stem conv, which pads raw 0 (no extra op);
  folded, mean   folded, the stem padded with the mean pixel value by a PADV2 op.
For each: the Keras float test accuracy and its top-1 agreement with the unfolded model
(the fold's exactness, border included), the int8 export calibrated as the pipeline does
(`export.representative_size` training images), its ops, input scale and zero point, test
accuracy on LiteRT, and the smallest TFLite Micro arena (a real TFLM run, `tflite.micro`)
against the peak-activation bound (`tflite.cost`; the issue's goal is at most 1.10×).

Without `--model` it trains a ResNet-8 from scratch for `--epochs` epochs with tfkd's
pipeline (`configs/cifar10_resnet.py`, scratch stage, resumable in `--out/train`): the
comparison is of the fold's exactness on a trained network, not of peak accuracy.
Writes fold.{md,json} to `--out` and prints the table.
"""

import os

import numpy as np
from absl import flags, logging

from bench import common
from configs import cifar10_resnet
from tfkd import cli, data, fold, model_files, pipeline
from tflite import convert, cost, files, graph, interpreter, micro

_MODEL = flags.DEFINE_string("model", "", "A trained ResNet-8 (.keras); '' = train one for --epochs.")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_OUT = flags.DEFINE_string("out", "runs/bench_fold", "Output folder.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Training epochs when --model is not given.")

GOAL_RATIO = 1.10
NORMALIZATION_OPS = ("SUB", "MUL")   # what a Normalization layer becomes; ResNet-8 has no others


def variants(model) -> dict:
  return {"unfolded": model,
          "folded, zeros": fold.fold_input_normalization(model, "zeros", strict=True),
          "folded, mean (default)": fold.fold_input_normalization(model, "mean", strict=True)}


def measure(model, reference_logits, calibration, test_x, test_y) -> dict:
  """Keras and int8 results of one variant (see the module docstring)."""
  logits = model.predict(data.eval_dataset(test_x, test_y, 500).map(lambda x, y: x), verbose=0)
  int8 = convert.convert(model, "int8", calibration)
  g = graph.read(int8)
  pixels = g.tensors[g.inputs[0]]
  int8_logits = interpreter.predict(int8, test_x, batch_size=500)
  arena = micro.find_arena_size(int8)
  bound = cost.peak_activation_bytes(g)
  return {
      "keras_accuracy": float(np.mean(np.argmax(logits, -1) == test_y)),
      "keras_top1_agreement": float(np.mean(np.argmax(logits, -1)
                                            == np.argmax(reference_logits, -1))),
      "keras_max_logit_diff": float(np.max(np.abs(logits - reference_logits))),
      "int8_accuracy": float(np.mean(np.argmax(int8_logits, -1) == test_y)),
      "int8_predictions": np.argmax(int8_logits, -1),
      "ops": len(g.operators), "tensors": len(g.tensors), "first_ops": g.op_names()[:3],
      "normalization_ops": sum(op in NORMALIZATION_OPS for op in g.op_names()),
      "input_scale": float(pixels.scale[0]), "input_zero_point": int(pixels.zero_point[0]),
      "arena_bytes": arena.size, "arena_head_bytes": arena.head, "arena_tail_bytes": arena.tail,
      "lower_bound_bytes": bound, "arena_over_bound": arena.size / bound,
      "flash_bytes": len(int8)}


def markdown(rows: dict) -> str:
  base = rows["unfolded"]
  lines = ["| export | Keras acc. | Keras top-1 = unfolded | int8 ops (first) | SUB/MUL | "
           "input scale, zero point | int8 acc. | Δ int8 acc. | int8 top-1 = unfolded | "
           "TFLM arena B (head + tail) | arena / bound | .tflite B |",
           "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
  for name, r in rows.items():
    agree = np.mean(r["int8_predictions"] == base["int8_predictions"])
    lines.append(
        f"| {name} | {r['keras_accuracy'] * 100:.2f}% | {r['keras_top1_agreement'] * 100:.2f}% | "
        f"{r['ops']} ({', '.join(r['first_ops'])}) | {r['normalization_ops']} | "
        f"{r['input_scale']:g}, {r['input_zero_point']} | {r['int8_accuracy'] * 100:.2f}% | "
        f"{(r['int8_accuracy'] - base['int8_accuracy']) * 100:+.2f} | {agree * 100:.2f}% | "
        f"{r['arena_bytes']:,} ({r['arena_head_bytes']:,} + {r['arena_tail_bytes']:,}) | "
        f"{r['arena_over_bound']:.3f}× | {r['flash_bytes']:,} |")
  bound = base["lower_bound_bytes"]
  lines += ["", f"Goal: arena ≤ {GOAL_RATIO:.2f}× the {bound:,} B bound = {int(GOAL_RATIO * bound):,} B, "
            "int8 accuracy within 0.1 point of the unfolded export."]
  for name, r in list(rows.items())[1:]:
    met_arena = r["arena_bytes"] <= GOAL_RATIO * bound
    met_accuracy = abs(r["int8_accuracy"] - base["int8_accuracy"]) <= 0.001 + 1e-9
    lines.append(f"- {name}: arena {'met' if met_arena else 'missed'} "
                 f"({r['arena_bytes'] - base['arena_bytes']:+,} B vs unfolded), accuracy "
                 f"{'met' if met_accuracy else 'missed'}.")
  return "\n".join(lines)


def trained_model(config) -> tuple:
  """(model path, Run): `--model`, or a ResNet-8 trained `--epochs` epochs in `--out/train`."""
  config.stages = () if _MODEL.value else ("scratch",)
  config.train.epochs = _EPOCHS.value
  run = pipeline.run_pipeline(config, os.path.join(_OUT.value, "train"))
  return _MODEL.value or run.model_path("scratch"), run


def main(argv):
  del argv
  meta = common.provenance("bench.fold")
  print(common.header(meta))
  config = cifar10_resnet.get_config()
  config.data.path = _DATA.value
  model_path, run = trained_model(config)
  model = model_files.load_model(model_path)
  test_x, test_y = run.splits.test
  calibration = run.representative_inputs()
  reference = model.predict(data.eval_dataset(test_x, test_y, 500).map(lambda x, y: x), verbose=0)
  rows = {}
  for name, variant in variants(model).items():
    rows[name] = measure(variant, reference, calibration, test_x, test_y)
    logging.info("[%s] %s", name, {k: v for k, v in rows[name].items() if k != "int8_predictions"})
  table = markdown(rows)
  print(table)
  os.makedirs(_OUT.value, exist_ok=True)
  files.write_atomic(os.path.join(_OUT.value, "fold.md"),
                     "# Input normalisation fold\n\n" + common.header(meta) + "\n" + table + "\n")
  files.write_json(os.path.join(_OUT.value, "fold.json"), {
      **meta, "model": model_path, "trained_epochs": 0 if _MODEL.value else _EPOCHS.value,
      "test_examples": int(len(test_y)), "representative_images": int(len(calibration)),
      "rows": {name: {k: v for k, v in r.items() if k != "int8_predictions"}
               for name, r in rows.items()}})


if __name__ == "__main__":
  cli.run(main)
