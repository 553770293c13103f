r"""Does a search trial's validation accuracy read its weights, or its lagging BatchNorm averages?

  .venv/bin/python -m bench.batch_norm_probe --config=configs/cifar10_search.py \
      --workdir=runs/cifar10_search --config.train.precision=float32 \
      --family=ds_cnn --resolution=32 --knobs='{"blocks": 5, "width": 24}' --epochs=3

Trains one candidate as `tfkd.search` trains a trial (--mode distill, from the teacher's
cached views in --workdir, or scratch; the optimizer scheduled for search.epochs), for the
first --epochs epochs, without re-estimation. After each epoch it reads the validation
accuracy twice, the weights unchanged: with the moving BatchNorm statistics training left,
and with statistics re-estimated from search.batch_norm_batches training batches
(`tfkd.batch_norm`, what the search now validates with). Writes batch_norm_probe.{md,json,png}
to --out. It writes nothing in --workdir.
"""

import json
import os
import time

import numpy as np
import tf_keras
from absl import flags
from ml_collections import config_flags

from bench import common
from tfkd import batch_norm, cli, config_checks, from_config, search, search_space, search_trial
from tflite import files

_CONFIG = config_flags.DEFINE_config_file("config", "configs/cifar10_search.py", "Search config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar10_search",
                               "A search workdir (its teacher's cached views, for --mode=distill).")
_OUT = flags.DEFINE_string("out", "runs/bench_batch_norm_probe", "Output folder.")
_MODE = flags.DEFINE_enum("mode", "distill", ["distill", "scratch"], "How the trial trains.")
_FAMILY = flags.DEFINE_enum("family", "ds_cnn", list(search_space.FAMILIES), "Candidate family.")
_RESOLUTION = flags.DEFINE_integer("resolution", 32, "Candidate input size.")
_KNOBS = flags.DEFINE_string("knobs", '{"blocks": 5, "width": 24}',
                             "The family's knobs as JSON (`tfkd.search_space.candidate`).")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs to train and read (of search.epochs).")


def plot(rows, path: str) -> str:
  fig, ax = files.new_figure(figsize=(6, 4))
  epochs = [r["epoch"] for r in rows]
  for key, label in (("train_accuracy", "training (batch statistics, epoch mean)"),
                     ("val_moving", "validation, moving statistics"),
                     ("val_reestimated", "validation, re-estimated statistics")):
    ax.plot(epochs, [r[key] for r in rows], marker="o", label=label)
  ax.set_xlabel("epoch")
  ax.set_ylabel("accuracy")
  ax.set_xticks(epochs)
  ax.legend()
  return files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.batch_norm_probe")
  config = from_config.with_defaults(_CONFIG.value)
  config_checks.validate(config)
  searcher = search.Search(config, _WORKDIR.value)
  run, train_config = searcher.run, searcher.train_config
  cand = search_space.candidate(_FAMILY.value, _RESOLUTION.value, **json.loads(_KNOBS.value))
  distill = _MODE.value == "distill"
  steps = run.steps_per_epoch(train_config.batch_size, distillation=distill)
  student = search_trial.build(run, cand)
  model = from_config.distiller(run.config.distill, [], student) if distill else student
  model.compile(optimizer=from_config.optimizer(train_config, steps), metrics=["accuracy"],
                **({} if distill else {"loss": tf_keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True)}))
  train, _ = run.datasets(train_config.batch_size, "search/trials/_probe", distillation=distill,
                          teacher_logits=searcher.teacher_views() if distill else None)
  train = search_trial._resized_batches(train, cand["resolution"])  # pylint: disable=protected-access
  inputs = train.map(lambda features, labels: features[0] if isinstance(features, tuple) else features)
  val_x = search_trial.resize_images(run.splits.val[0], cand["resolution"]).numpy()

  def val_accuracy():
    logits = student.predict(val_x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == run.splits.val[1]))

  rows = []
  for epoch in range(_EPOCHS.value):
    start = time.time()
    history = model.fit(train, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=steps,
                        verbose=0)
    saved = batch_norm.moving_statistics(student)
    moving = val_accuracy()
    batch_norm.reestimate(student, inputs, config.search.batch_norm_batches)
    rows.append({"epoch": epoch + 1, "train_accuracy": history.history["accuracy"][-1],
                 "val_moving": moving, "val_reestimated": val_accuracy(),
                 "seconds": time.time() - start})
    batch_norm.set_moving_statistics(student, saved)  # training goes on with its own, as trials do
    print(rows[-1], flush=True)
  lines = [f"{search_space.describe(cand)}, {_MODE.value}, {_EPOCHS.value} of "
           f"{train_config.epochs} scheduled epochs; re-estimated from "
           f"{config.search.batch_norm_batches} batches of {train_config.batch_size} training views", "",
           "| epoch | training accuracy (batch statistics) | validation, moving statistics | "
           "validation, re-estimated statistics |", "|---:|---:|---:|---:|",
           *[f"| {r['epoch']} | {r['train_accuracy']:.1%} | {r['val_moving']:.1%} | "
             f"{r['val_reestimated']:.1%} |" for r in rows], "",
           f"Plot: {plot(rows, os.path.join(_OUT.value, 'batch_norm_probe.png'))}"]
  common.write_table(_OUT.value, "batch_norm_probe", meta, lines, rows)


if __name__ == "__main__":
  cli.run(main)
