"""The stages of a tfkd run: teacher → scratch → distill → export → report.

Each stage reads and writes `workdir/<stage>/`. A stage whose final artifact
exists is skipped, and an interrupted training stage resumes from its last
epoch (see `training.fit_resumable`), so rerunning the same command continues
where it stopped. Artifacts are written atomically.

Example:
  run(config, "runs/cifar10")   # or: python -m tfkd.train --config=... --workdir=...
"""

import os
import time

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from tfkd import data, losses, models, report, training
from tfkd.distiller import Distiller
from tfkd.errors import ConfigError
from tflite import benchmark, convert, interpreter

STAGES = ("teacher", "scratch", "distill", "export", "report")


class Run:
  """What every stage needs: config, workdir, data, distribution strategy.

  Args:
    config: the run's ConfigDict (see configs/).
    workdir: folder for all artifacts.
  """

  def __init__(self, config, workdir: str):
    self.config = config
    self.workdir = workdir
    self.strategy = make_strategy(config.get("distribute", ""))
    self.splits = data.load_splits(config.data, workdir)  # text keeps workdir/vocab.txt
    self.normalization = self.splits.channel_stats() if len(self.splits.input_shape) == 3 else None

  def path(self, *parts) -> str:
    return os.path.join(self.workdir, *parts)

  def model_path(self, stage: str) -> str:
    return self.path(stage, "model.keras")

  def build(self, model_config, name: str) -> tf_keras.Model:
    kwargs = dict(model_config.get("kwargs", {}))
    model = models.build_model(model_config.model, self.splits.num_classes,
                               self.splits.input_shape, normalization=self.normalization, **kwargs)
    model._name = name  # pylint: disable=protected-access  (distinct names for teacher/student)
    return model

  def datasets(self, batch_size: int, distillation: bool = False):
    """(train, val) `tf.data` pipelines; `distillation` marks the distill stage's data.

    In the distill stage a configured transfer set (`config.data.transfer_set`:
    augmented token ids, see `tfkd.text`) joins the training data, labelled -1 so
    the student learns it from the teacher alone. Its epochs keep the other
    stages' number of batches, drawn afresh each epoch from the shuffled union,
    so the learning-rate schedule and the step budget match the scratch baseline.
    """
    from tfkd import text  # pylint: disable=import-outside-toplevel
    x, y = self.splits.train
    transfer_set = self.config.data.get("transfer_set") if distillation else None
    if transfer_set and transfer_set.get("copies"):
      x, y = text.with_transfer_set(x, y, transfer_set)
    train = data.train_dataset(x, y, batch_size=batch_size,
                               augment=self.config.data.augment, seed=self.config.seed)
    if len(y) > len(self.splits.train[1]):
      train = train.take(self.steps_per_epoch(batch_size))
    val = data.eval_dataset(*self.splits.val, batch_size) if self.splits.val else None
    return train, val

  def steps_per_epoch(self, batch_size: int) -> int:
    return len(self.splits.train[1]) // batch_size


def make_strategy(name: str) -> tf.distribute.Strategy:
  """'' (default, one device), 'mirrored' (all local devices) or 'multiworker' (TF_CONFIG)."""
  if not name:
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multiworker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ConfigError(f"Unknown distribute={name!r}: use '', 'mirrored' or 'multiworker'.")


def _skip(run: Run, stage: str, artifact: str) -> bool:
  if os.path.exists(artifact):
    logging.info("[%s] done already (%s): skipping.", stage, artifact)
    return True
  return False


def train_supervised(run: Run, stage: str, model_config, epochs: int) -> None:
  """Trains a model on labels alone (the teacher, or the student from scratch)."""
  if _skip(run, stage, run.model_path(stage)):
    return
  train_config = run.config.train.copy_and_resolve_references()
  train_config.epochs = epochs
  with run.strategy.scope():
    model = run.build(model_config, stage)
    model.compile(
        optimizer=training.make_optimizer(train_config, run.steps_per_epoch(train_config.batch_size)),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
  logging.info("[%s] %s, %d parameters, %d epochs.", stage, model_config.model,
               model.count_params(), epochs)
  training.fit_resumable(model, *run.datasets(train_config.batch_size), epochs, run.path(stage))
  training.save_model_atomic(model, run.model_path(stage))


def stage_teacher(run: Run) -> None:
  train_supervised(run, "teacher", run.config.teacher,
                   run.config.teacher.get("epochs") or run.config.train.epochs)


def stage_scratch(run: Run) -> None:
  train_supervised(run, "scratch", run.config.student, run.config.train.epochs)


def make_distillation_losses(distill_config):
  """The `DistillationLoss` list and weights a `distill` config block asks for.

  `distill.method` names the losses joined by '+' (e.g. 'soft+features'):
    soft         LogitsDistillation(temperature)
    features     FeatureDistillation(teacher_layer, student_layer, feature_adapter)
    attention    AttentionTransfer(teacher_layer, student_layer)
    contrastive  ContrastiveDistillation(embedding_layer, projection_dim, contrastive_temperature)
    relational   RelationalDistillation(embedding_layer)
  and `distill.weights` gives one weight per name (empty: 1 each). Each call
  makes new losses: adapters and projection heads start untrained. Keys other
  than `temperature` are optional (see docs/distillation.md for their defaults).

  Returns:
    (losses, weights), two lists of equal length.
  """
  c = distill_config
  teacher_layer, student_layer = c.get("teacher_layer", "stage3"), c.get("student_layer", "stage3")
  embedding_layer = c.get("embedding_layer", "features")
  adapters = {"auto": "auto", "always": True, "never": False}
  adapter = c.get("feature_adapter", "auto")
  if adapter not in adapters:
    raise ConfigError(f"Unknown distill.feature_adapter {adapter!r}: use one of {list(adapters)}.")
  builders = {
      "soft": lambda: losses.LogitsDistillation(temperature=c.temperature),
      "features": lambda: losses.FeatureDistillation(teacher_layer, student_layer,
                                                     adapter=adapters[adapter]),
      "attention": lambda: losses.AttentionTransfer(teacher_layer, student_layer),
      "contrastive": lambda: losses.ContrastiveDistillation(
          embedding_layer, embedding_layer, projection_dim=c.get("projection_dim", 128),
          temperature=c.get("contrastive_temperature", 0.1)),
      "relational": lambda: losses.RelationalDistillation(embedding_layer, embedding_layer),
  }
  names = [n.strip() for n in c.get("method", "soft").split("+") if n.strip()]
  unknown = [n for n in names if n not in builders]
  if unknown or not names:
    raise ConfigError(f"Unknown distill.method {c.get('method')!r}: join one or more of "
                      f"{list(builders)} with '+', e.g. 'soft+features'.")
  if len(set(names)) != len(names):
    raise ConfigError(f"distill.method {c.method!r} names a loss twice: name each loss once.")
  weights = [float(w) for w in c.get("weights", ())] or [1.0] * len(names)
  if len(weights) != len(names):
    raise ConfigError(f"distill.weights {tuple(weights)} has {len(weights)} values for the "
                      f"{len(names)} losses of distill.method={c.method!r}: give one weight per loss.")
  return [builders[n]() for n in names], weights


def stage_distill(run: Run) -> None:
  """Trains a fresh student against the trained teacher(s); saves the student alone.

  `distill.extra_teachers` (paths of `.keras` models) join the trained teacher;
  their logits are averaged with `distill.teacher_weights`. With
  `distill.cached_teacher` the teachers' logits on the training split are
  computed once (kept in `distill/teacher_logits.npy`), and with
  `distill.teacher_logits_path` they are read from a file; the training epochs
  then run the student alone. See docs/distillation.md.
  """
  from tfkd import teacher_cache  # pylint: disable=import-outside-toplevel
  if _skip(run, "distill", run.model_path("distill")):
    return
  cfg, train_config = run.config.distill, run.config.train
  logits_path = cfg.get("teacher_logits_path", "")
  cached = bool(cfg.get("cached_teacher", False) or logits_path)
  teacher_paths = [run.model_path("teacher")] + list(cfg.get("extra_teachers", ()))
  if logits_path and not os.path.exists(teacher_paths[0]):
    teacher_paths = teacher_paths[1:]  # an offline teacher: its logits are all there is
  for path in teacher_paths:
    if not os.path.exists(path):
      raise ConfigError(f"The distill stage needs a trained teacher at {path}: run the 'teacher' "
                        "stage first (it is in the default config.stages) or fix "
                        "distill.extra_teachers.")
  distillation_losses, weights = make_distillation_losses(cfg)
  if cached:
    teacher_cache.check_cacheable(distillation_losses, augment=run.config.data.augment)
    if (run.config.data.get("transfer_set") or {}).get("copies"):
      raise ConfigError("Cached teacher logits cover the training split only, but "
                        "data.transfer_set adds inputs the teacher must label live: turn off "
                        "distill.cached_teacher or the transfer set.")
  with run.strategy.scope():
    teachers = [tf_keras.models.load_model(path) for path in teacher_paths]
    student = run.build(run.config.student, "student")
    distiller = Distiller(teachers or None, student, distillation_losses, weights,
                          student_loss_weight=cfg.student_loss_weight,
                          teacher_weights=tuple(cfg.get("teacher_weights", ())) or None)
    distiller.compile(
        optimizer=training.make_optimizer(train_config, run.steps_per_epoch(train_config.batch_size)),
        metrics=["accuracy"])
  logging.info("[distill] %s → %s, method=%s, %d teacher(s)%s, α=%.2f, %d epochs.",
               [os.path.basename(os.path.dirname(p)) for p in teacher_paths],
               run.config.student.model, cfg.get("method", "soft"), len(teacher_paths),
               ", cached logits" if cached else "", cfg.student_loss_weight, train_config.epochs)
  train, val = run.datasets(train_config.batch_size, distillation=True)
  if cached:
    train_x, train_y = run.splits.train
    if logits_path:
      logits = teacher_cache.load_teacher_logits(logits_path, len(train_y), run.splits.num_classes)
    else:
      cache_file = run.path("distill", "teacher_logits.npy")
      if not os.path.exists(cache_file):
        teacher_cache.save_teacher_logits(cache_file, teacher_cache.compute_teacher_logits(
            teachers, train_x, distiller.teacher_weights))
      logits = teacher_cache.load_teacher_logits(cache_file, len(train_y), run.splits.num_classes)
    logging.info("[distill] cached teacher logits agree with %.1f%% of the training labels.",
                 100 * teacher_cache.label_agreement(logits, train_y))
    train = teacher_cache.cached_train_dataset(train_x, train_y, logits, train_config.batch_size,
                                               seed=run.config.seed)
  training.fit_resumable(distiller, train, val, train_config.epochs, run.path("distill"))
  training.save_model_atomic(distiller.student, run.model_path("distill"))


def tflite_path(run: Run, model_name: str, mode: str) -> str:
  return run.path("export", f"{model_name}_{mode}.tflite")


def representative_inputs(run: Run) -> np.ndarray:
  """Calibration inputs: an evenly spread sample of the training split."""
  x = run.splits.train[0]
  n = min(run.config.export.representative_size, len(x))
  return x[np.linspace(0, len(x) - 1, n).astype(int)]


def stage_export(run: Run) -> None:
  """Converts the distilled student in every `export.modes`, and the others to float32.

  The float32 teacher and scratch student exist so the report can time them on LiteRT.
  """
  wanted = [("distill", m) for m in run.config.export.modes]
  wanted += [(name, "float32") for name in ("teacher", "scratch")]
  representative = representative_inputs(run)
  for name, mode in wanted:
    out = tflite_path(run, name, mode)
    if not os.path.exists(run.model_path(name)) or _skip(run, "export", out):
      continue
    start = time.time()
    model = tf_keras.models.load_model(run.model_path(name))
    training.write_atomic(out, convert.convert(model, mode, representative))
    logging.info("[export] %s (%d bytes, %.0fs)", out, os.path.getsize(out), time.time() - start)


def stage_report(run: Run) -> None:
  """Evaluates every model on the whole test set and writes report.{md,json,png}."""
  test_x, test_y = run.splits.test
  cfg = run.config.report
  rows, parameters = [], {}
  labels = {"teacher": "teacher", "scratch": "student from scratch", "distill": "distilled student"}
  for name, label in labels.items():
    path = run.model_path(name)
    if not os.path.exists(path):
      continue
    model = tf_keras.models.load_model(path)
    model.compile(metrics=["accuracy"])
    _, accuracy = model.evaluate(data.eval_dataset(test_x, test_y, cfg.batch_size), verbose=0)
    float_tflite = tflite_path(run, name, "float32")
    latency = (interpreter.latency_ms(float_tflite, test_x[0], cfg.latency_runs, cfg.warmup_runs,
                                      cfg.threads) if os.path.exists(float_tflite) else None)
    parameters[name] = model.count_params()
    rows.append(report.Row(f"{label} (Keras float)", model.name, parameters[name],
                           os.path.getsize(path), accuracy, latency and latency["p50"],
                           latency and latency["p90"]))
    logging.info("[report] %s: test accuracy %.4f", label, accuracy)
  for mode in run.config.export.modes:
    path = tflite_path(run, "distill", mode)
    if not os.path.exists(path):
      continue
    accuracy = interpreter.evaluate_accuracy(path, test_x, test_y, cfg.batch_size)
    latency = interpreter.latency_ms(path, test_x[0], cfg.latency_runs, cfg.warmup_runs, cfg.threads)
    rows.append(report.Row(f"distilled student, {mode} TFLite", os.path.basename(path),
                           parameters.get("distill"),
                           os.path.getsize(path), accuracy, latency["p50"], latency["p90"]))
    logging.info("[report] %s TFLite: test accuracy %.4f, p50 %.3f ms", mode, accuracy, latency["p50"])
  add_compression_rows(run, rows, parameters)
  meta = {"config": run.config.to_dict(), "test_examples": int(len(test_y)),
          "latency": {"runs": cfg.latency_runs, "warmup": cfg.warmup_runs, "threads": cfg.threads}}
  d = run.config.distill
  sections = [("Distillation", f"method `{d.get('method', 'soft')}`, temperature {d.temperature}, "
               f"student loss weight α = {d.student_loss_weight}, teacher `{run.config.teacher.model}`"
               f"{' + ' + str(len(d.get('extra_teachers', ()))) + ' more' if d.get('extra_teachers') else ''}"
               f", student `{run.config.student.model}`, {run.config.train.epochs} epochs.")]
  edge_model = tflite_path(run, "distill", cfg.get("edge_mode", "int8"))
  if cfg.get("edge", True) and os.path.exists(edge_model):
    # Device view of the deployable student: TFLM ops, arena, parity, flash, cost, board fit.
    edge, markdown = benchmark.edge_report(
        edge_model, test_x[:cfg.get("parity_samples", 100)], cfg.latency_runs, cfg.warmup_runs,
        cfg.threads, c_out=run.path("export", "firmware"))
    meta["edge"] = edge
    sections.append((f"Edge deployment: {os.path.basename(edge_model)}", markdown))
  table = report.write(run.workdir, rows, meta, sections)
  print(table)
  for title, markdown in sections:
    print(f"\n{title}\n{markdown}")


# ------------------------------------------------------- compression (tfkd.compress)
# prune, qat and prune_qat fine-tune a compressed copy of the distilled student
# inside a Distiller, the teacher guiding it as in the distill stage, and export it
# to full-integer int8. See docs/compression.md.


def compress_config(run: Run):
  """The `config.compress` block, or a ConfigError saying where to get one."""
  if "compress" not in run.config:
    raise ConfigError("The prune, qat and prune_qat stages need a config.compress block: start "
                      "from configs/cifar10_compress.py (keys in docs/compression.md).")
  return run.config.compress


def compress_train_config(run: Run, qat: bool = False):
  """`config.train` with `config.compress.train` (and for QAT `compress.qat`) overrides."""
  cfg = compress_config(run)
  train_config = run.config.train.copy_and_resolve_references()
  train_config.update(cfg.train)
  if qat:
    train_config.epochs = cfg.qat.get("epochs") or train_config.epochs
    train_config.learning_rate = cfg.qat.get("learning_rate") or train_config.learning_rate
  return train_config


def compressed_model_path(run: Run, stage: str) -> str:
  """Where a compression stage keeps its Keras model: `.h5` for QAT models.

  tf_keras cannot reload tfmot's QAT wrappers from `.keras` files
  (tensorflow/model-optimization#1123); load them with `compress.load_model`.
  """
  return run.path(stage, "model.h5") if stage in ("qat", "prune_qat") else run.model_path(stage)


def finetune_with_teacher(run: Run, stage: str, start: str, wrap_student, callbacks=(),
                          qat: bool = False) -> tf_keras.Model:
  """Fine-tunes a wrapped copy of a saved student inside a `Distiller`, resumably.

  Args:
    run: the run.
    stage: this stage's name (its folder keeps the backup and history).
    start: the stage whose saved model is the starting point ('distill' or 'prune').
    wrap_student: fn(model, total_steps) → the model to train, e.g. a pruned copy.
    callbacks: extra `fit` callbacks (pruning needs `compress.pruning_callbacks()`).
    qat: use the `compress.qat` epochs and learning rate.

  Returns:
    The trained (still wrapped) student.
  """
  from tfkd import compress  # pylint: disable=import-outside-toplevel
  train_config = compress_train_config(run, qat)
  start_path = compressed_model_path(run, start)
  teacher_paths = [run.model_path("teacher")] + list(run.config.distill.get("extra_teachers", ()))
  for path, producer in [(start_path, start), (teacher_paths[0], "teacher")]:
    if not os.path.exists(path):
      raise ConfigError(f"The {stage} stage needs {path}: run the '{producer}' stage first "
                        f"(list it before '{stage}' in config.stages).")
  steps = run.steps_per_epoch(train_config.batch_size)
  with run.strategy.scope():
    teachers = [tf_keras.models.load_model(p) for p in teacher_paths]
    student = wrap_student(compress.load_model(start_path), train_config.epochs * steps)
    distillation_losses, weights = make_distillation_losses(run.config.distill)
    distiller = Distiller(teachers, student, distillation_losses, weights,
                          student_loss_weight=run.config.distill.student_loss_weight,
                          teacher_weights=tuple(run.config.distill.get("teacher_weights", ())) or None)
    distiller.compile(optimizer=training.make_optimizer(train_config, steps), metrics=["accuracy"])
  logging.info("[%s] fine-tuning %s with the teacher: %d epochs, learning rate %g.", stage, start_path,
               train_config.epochs, train_config.learning_rate)
  training.fit_resumable(distiller, *run.datasets(train_config.batch_size, distillation=True),
                         train_config.epochs, run.path(stage), callbacks=list(callbacks))
  return student


def export_compressed(run: Run, stage: str) -> None:
  """Converts a compression stage's saved model to full-integer int8 TFLite."""
  from tfkd import compress  # pylint: disable=import-outside-toplevel
  out = tflite_path(run, stage, "int8")
  model = compress.load_model(compressed_model_path(run, stage))
  training.write_atomic(out, convert.convert(model, "int8", representative_inputs(run)))
  measured = compress.tflite_sparsity(out)["sparsity"]
  logging.info("[%s] %s: %d bytes, weight sparsity %.3f", stage, out, os.path.getsize(out), measured)


def stage_prune(run: Run) -> None:
  """Prunes the distilled student while the teacher guides it; exports post-training int8.

  `compress.prune.sparsity` is reached with a polynomial schedule, or with
  `compress.prune.m_by_n=(2, 4)` every 4 input-channel weights keep 2.
  """
  from tfkd import compress  # pylint: disable=import-outside-toplevel
  if _skip(run, "prune", tflite_path(run, "prune", "int8")):
    return
  if not os.path.exists(compressed_model_path(run, "prune")):
    cfg = compress_config(run)
    m_by_n = tuple(cfg.prune.get("m_by_n", ())) or None

    def wrap(model, total_steps):
      schedule = None if m_by_n else compress.pruning_schedule(
          cfg.prune.sparsity, total_steps, cfg.prune.end_fraction, cfg.prune.frequency)
      return compress.prune(model, schedule, m_by_n, cfg.unsupported)

    student = finetune_with_teacher(run, "prune", "distill", wrap, compress.pruning_callbacks())
    training.save_model_atomic(compress.strip_pruning(student), compressed_model_path(run, "prune"))
  export_compressed(run, "prune")


def _finetune_quantized(run: Run, stage: str, start: str, preserve_sparsity: bool) -> None:
  from tfkd import compress  # pylint: disable=import-outside-toplevel
  if _skip(run, stage, tflite_path(run, stage, "int8")):
    return
  path = compressed_model_path(run, stage)
  if not os.path.exists(path):
    representative = representative_inputs(run)  # QAT's activation ranges start calibrated
    student = finetune_with_teacher(
        run, stage, start, lambda model, _: compress.quantize(model, preserve_sparsity, representative),
        qat=True)
    with compress.quantize_scope():
      training.save_model_atomic(student, path)
  export_compressed(run, stage)


def stage_qat(run: Run) -> None:
  """Quantisation-aware fine-tuning of the distilled student with the teacher; exports int8."""
  _finetune_quantized(run, "qat", "distill", preserve_sparsity=False)


def stage_prune_qat(run: Run) -> None:
  """QAT of the pruned student with tfmot's prune-preserve scheme (zeros stay); exports int8."""
  _finetune_quantized(run, "prune_qat", "prune", preserve_sparsity=True)


def _pruning_label(run: Run) -> str:
  prune_config = run.config.get("compress", {}).get("prune", {})
  if prune_config.get("m_by_n"):
    return "{}:{} sparse".format(*prune_config["m_by_n"])
  return f"{prune_config['sparsity']:.0%} sparse" if "sparsity" in prune_config else "pruned"


def add_compression_rows(run: Run, rows, parameters) -> None:
  """Measures gzip bytes and weight sparsity in the `.tflite` files for the report.

  Fills `gzip_bytes` and `sparsity` of the distilled student's TFLite rows and
  appends one row per compressed int8 model found in `export/` (accuracy on the
  test set, LiteRT latency, sizes, sparsity read from the file).

  Args:
    run: the run.
    rows: the report's `Row`s so far; changed in place.
    parameters: stage name → parameter count of its Keras model.
  """
  from tfkd import compress  # pylint: disable=import-outside-toplevel
  test_x, test_y = run.splits.test
  cfg = run.config.report

  def measure(path):
    with open(path, "rb") as f:
      content = f.read()
    return compress.gzip_bytes(content), compress.tflite_sparsity(content)["sparsity"]

  by_file = {r.model: r for r in rows}
  for mode in run.config.export.modes:
    path = tflite_path(run, "distill", mode)
    if os.path.basename(path) in by_file and os.path.exists(path):
      row = by_file[os.path.basename(path)]
      row.gzip_bytes, row.sparsity = measure(path)
  labels = {"prune": f"pruned student ({_pruning_label(run)}), int8 TFLite (post-training)",
            "qat": "QAT student, int8 TFLite",
            "prune_qat": f"pruned ({_pruning_label(run)}) + QAT student, int8 TFLite"}
  for stage, label in labels.items():
    path = tflite_path(run, stage, "int8")
    if not os.path.exists(path):
      continue
    accuracy = interpreter.evaluate_accuracy(path, test_x, test_y, cfg.batch_size)
    latency = interpreter.latency_ms(path, test_x[0], cfg.latency_runs, cfg.warmup_runs, cfg.threads)
    gzip_size, sparsity = measure(path)
    rows.append(report.Row(label, os.path.basename(path), parameters.get("distill"),
                           os.path.getsize(path), accuracy, latency["p50"], latency["p90"],
                           gzip_bytes=gzip_size, sparsity=sparsity))
    logging.info("[report] %s: test accuracy %.4f, sparsity %.3f, gzip %d bytes", label, accuracy,
                 sparsity, gzip_size)


STAGE_FUNCTIONS = {
    "teacher": stage_teacher,
    "scratch": stage_scratch,
    "distill": stage_distill,
    "export": stage_export,
    "report": stage_report,
    "prune": stage_prune,
    "qat": stage_qat,
    "prune_qat": stage_prune_qat,
}


def run_pipeline(config, workdir: str) -> None:
  """Runs `config.stages` in order in `workdir`.

  Args:
    config: a ConfigDict from `configs/`.
    workdir: output folder (created if needed).
  """
  unknown = [s for s in config.stages if s not in STAGE_FUNCTIONS]
  if unknown:
    raise ConfigError(f"Unknown stage(s) {unknown} in config.stages: choose from {list(STAGE_FUNCTIONS)}.")
  os.makedirs(workdir, exist_ok=True)
  tf_keras.utils.set_random_seed(config.seed)
  run = Run(config, workdir)
  for stage in config.stages:
    start = time.time()
    logging.info("=== stage %s ===", stage)
    STAGE_FUNCTIONS[stage](run)
    logging.info("=== stage %s finished in %.0fs ===", stage, time.time() - start)
