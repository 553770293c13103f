r"""Check: every `keras.applications` model, saved by Keras 3, loads in tfkd with the same outputs.

  .venv/bin/python -m bench.keras3_applications --out=runs/bench_keras3_applications

A user's teacher is most often a Keras 3 file (today's `tf.keras`), often one of these
backbones. For each model (untrained: `weights=None`, 10 logits, the smallest input it
allows up to 32x32, BatchNorm statistics settled on 16 random images so that its logits
are not all near 0) this saves a `.keras` file with Keras 3, loads it with
`tfkd.model_files.load_model` (rebuilt in tf_keras by `tfkd.keras3_files`, which refuses a
model whose outputs differ) and reports the seconds that took, the seconds a second read
takes (a copy of the model rebuilt once per process, as a run's later stages get it), and
`keras3_files.compare_outputs` on 8 pixel rows (0-255) and 8 rows around 0: the outputs'
spread over the inputs (the comparison means something only where it is well above 0), the
largest difference between the two models, and the largest change rounding-sized input
nudges make to the Keras 3 model's outputs (a random deep network amplifies them).
`--models=all` runs all of them; the default is one per family. Writes keras3_applications.{md,json} to `--out`.
"""

import os
import tempfile
import time

import numpy as np
from absl import flags

from bench import common
from tfkd import cli, keras3_files, model_files
from tfkd.errors import ModelFileError

_OUT = flags.DEFINE_string("out", "runs/bench_keras3_applications", "Output folder.")
_MODELS = flags.DEFINE_list(
    "models", ["ConvNeXtTiny", "DenseNet121", "EfficientNetB0", "EfficientNetV2B0",
               "InceptionResNetV2", "InceptionV3", "MobileNet", "MobileNetV2", "MobileNetV3Small",
               "NASNetMobile", "ResNet50", "ResNet50V2", "VGG16", "Xception"],
    "keras.applications constructors, or 'all'.")

# The smallest input each family accepts (32x32 for the others); NASNet's top needs its own size.
_INPUT_SIDE = {"Inception": 75, "Xception": 71, "NASNetLarge": 331, "NASNet": 224}


def check(name: str, folder: str) -> dict:
  """Saves `keras.applications.<name>` with Keras 3 and loads it with tfkd."""
  import keras  # pylint: disable=import-outside-toplevel
  side = next((s for prefix, s in _INPUT_SIDE.items() if name.startswith(prefix)), 32)
  original = getattr(keras.applications, name)(weights=None, input_shape=(side, side, 3),
                                                classes=10, classifier_activation=None)
  rng = np.random.default_rng(0)
  common.settle_batch_norm(original, rng.uniform(0, 255, (16, side, side, 3)).astype(np.float32))
  path = os.path.join(folder, f"{name}.keras")
  original.save(path)
  row = {"model": name, "input_side": side, "parameters": original.count_params()}
  start = time.perf_counter()
  try:
    rebuilt = model_files.load_model(path)
  except ModelFileError as e:
    return {**row, "loaded": False, "error": str(e)}
  seconds = time.perf_counter() - start
  start = time.perf_counter()
  model_files.load_model(path)
  row.update(loaded=True, seconds=seconds, second_read_seconds=time.perf_counter() - start,
             comparisons=keras3_files.compare_outputs(original, rebuilt))
  return row


def main(argv):
  del argv
  import keras  # pylint: disable=import-outside-toplevel
  meta = common.provenance("bench.keras3_applications")
  print(common.header(meta))
  names = _MODELS.value
  if names == ["all"]:
    names = sorted(n for n in dir(keras.applications) if n[0].isupper())
  rows = []
  with tempfile.TemporaryDirectory() as folder:
    for i, name in enumerate(names):
      rows.append(check(name, folder))
      os.remove(os.path.join(folder, f"{name}.keras"))
      print(f"[{i + 1}/{len(names)}] {name}: "
            f"{'loaded' if rows[-1]['loaded'] else 'REFUSED: ' + rows[-1]['error']}", flush=True)
  lines = ["| model | input | parameters | loads in tfkd | load (s) | again (s) | inputs | "
           "output spread | largest difference | rounding's |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    head = f"| {r['model']} | {r['input_side']}² | {r['parameters']:,} | "
    if not r["loaded"]:
      lines.append(head + f"no: {r['error'][:160]} | | | | | | |")
    for c in r.get("comparisons", []):
      lines.append(head + f"yes | {r['seconds']:.1f} | {r['second_read_seconds']:.1f} | "
                   f"{c['inputs']} | {c['spread']:.2g} | "
                   f"{c['difference']:.2g} | {c['rounding']:.2g} |")
  common.write_table(_OUT.value, "keras3_applications", meta, lines, rows)


if __name__ == "__main__":
  cli.run(main)
