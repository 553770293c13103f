"""`Run`: what every pipeline stage needs (config, workdir, data, strategy) and where it writes.

Example:
  run = Run(config, "runs/cifar10")
  train_ds, val_ds = run.datasets(batch_size=128, stage="scratch")
  run.model_path("distill")           # runs/cifar10/distill/model.keras
  run.tflite_path("distill", "int8")  # runs/cifar10/export/distill_int8.tflite
"""

import dataclasses
import os
import tempfile
import time
from typing import Callable, Optional

import numpy as np
import tf_keras
from absl import logging

from tfkd import (config_checks, data, from_config, hub_stage, keras3_files, keras3_teacher,
                  model_files, precision, splits, teacher_cache, teacher_checks,
                  teacher_compression, training, view_cache, views, workers)
from tfkd.errors import ConfigError, TeacherError
from tflite import files


def make_workdir(workdir: str) -> None:
  """Creates the run folder if needed and checks it can be written, before any work.

  Raises:
    ConfigError: `workdir` is a file, or a folder that cannot be created or written.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir!r} is a file, not a folder: pass a folder path "
                      "(created if missing) for the run's models and reports.")
  try:
    os.makedirs(workdir, exist_ok=True)
    tempfile.TemporaryFile(dir=workdir).close()  # a real write: root ignores permission bits
  except OSError as e:
    raise ConfigError(f"--workdir={workdir!r} cannot be written ({e.strerror or e}): pass a "
                      "folder you can write to.") from e


def label_budget(dataset: splits.Splits, fraction: float, seed: int) -> splits.Splits:
  """`dataset` with the labels of all but a stratified `fraction` of its training examples
  set to -1 (`splits.keep_labels`), logged in one line; unchanged for a fraction of 1."""
  if fraction == 1.0:
    return dataset
  x, y = dataset.train
  kept = splits.keep_labels(y, fraction, seed)
  logging.info("[data] labels kept for %s of %s training images (%.0f%%, stratified, seed %d); "
               "the rest are unlabelled (-1).", f"{int(np.sum(kept >= 0)):,}", f"{len(y):,}",
               100 * fraction, seed)
  return dataclasses.replace(dataset, train=(x, kept))


class Run:
  """What every stage needs: config, workdir, data, distribution strategy.

  On several workers (`config.distribute='multiworker'`, `tfkd.workers`) `Run` is
  made first in the process (the strategy must precede any other TensorFlow
  call), only the chief (`is_chief`) writes files, and every decision read from
  the shared workdir (`exists`, `done`, the epoch a stage resumes at) is checked
  to be the same on every worker. `alone` is set while the chief runs a stage
  the others skip (export, report): it then decides by itself.

  Args:
    config: the run's ConfigDict with every key (`from_config.with_defaults`).
    workdir: folder for all artifacts.
  """

  def __init__(self, config, workdir: str):
    self.workdir = workdir
    self.strategy = from_config.strategy(config.distribute)
    self.is_chief = workers.is_chief(self.strategy)
    self.alone = False
    # Text keeps workdir/vocab.txt; the other workers read it, or build the same one unsaved.
    self.splits = from_config.splits(config.data, workdir, save_vocabulary=self.is_chief)
    self.splits = label_budget(self.splits, config.data.label_fraction, config.data.seed)
    # Small data: batch size and learning rates; `adaptations` says what changed, for the report.
    self.config, self.adaptations = from_config.adapted_to_data(config, self.splits)
    self._teacher_view_logits = None  # filled by teacher_view_logits()
    self._checked_teachers = {}  # paths teacher_checks has seen, once per run
    precision.check_hardware(self.config.train.precision)

  def path(self, *parts) -> str:
    return os.path.join(self.workdir, *parts)

  def model_path(self, stage: str) -> str:
    return self.path(stage, "model.keras")

  def teacher_file(self) -> str:
    """The teacher's model file: `teacher.path`, or the one the teacher stage trains."""
    return self.config.teacher.path or self.model_path("teacher")

  def saved_model(self, name: str) -> str:
    """The Keras file of 'teacher' (see `teacher_file`) or of a student stage ('scratch', 'distill',
    'selfsup')."""
    return self.teacher_file() if name == "teacher" else self.model_path(name)

  def compressed_teacher_file(self) -> str:
    """The `teacher_compress` stage's teacher (`teacher.compress`), '' when it is 'none'.

    One folder per kind (and sparsity), so a run asking for another never finds this one's.
    """
    how = self.config.teacher.compress
    if how == "none":
      return ""
    folder = f"prune_{self.config.teacher.prune_sparsity:g}" if how == "prune" else how
    return self.path("teacher_compress", folder,
                     "teacher_int8.tflite" if how == "int8" else "model.keras")

  def teacher_paths(self) -> list:
    """The teacher (compressed, with `teacher.compress`) and `distill.extra_teachers`: every
    model the student learns from."""
    teacher = self.compressed_teacher_file() or self.teacher_file()
    return [teacher] + list(self.config.distill.extra_teachers)

  def load_teachers(self, paths) -> list:
    """The models at `paths`, each returning logits, checked before anything learns from them.

    A `.tflite` teacher (`teacher.compress='int8'`) runs on LiteRT (`teacher_compression.LiteRTTeacher`).
    Loaded without running code stored in them (`tfkd.model_files`); HDF5 and SavedModel
    only with `teacher.allow_legacy_formats`. A teacher ending in softmax gets its logits back (`teacher_checks.as_logits`,
    logged); one at chance or with unsettled BatchNorm statistics stops the run with
    `TeacherError` (`teacher_checks.check_teacher`; only a warning with
    `distill.check_teacher` off). Checked once per run.
    """
    teachers = []
    for path in paths:
      if path.endswith(".tflite"):  # made and measured by teacher_compress from a checked teacher
        teachers.append(teacher_compression.LiteRTTeacher(path))
        continue
      try:
        loaded = model_files.load_model(path, self.config.teacher.allow_legacy_formats,
                                        opt_in=config_checks.LEGACY_OPT_IN)
      except keras3_files.NotRebuildable as e:
        loaded = self._keras3_teacher(e, path)
      model, how = teacher_checks.as_logits(loaded, self.splits.train[0][:64])
      if path not in self._checked_teachers:
        if how:
          logging.warning("[teacher] %s outputs probabilities, not logits: %s.", path, how)
        fix = (f"delete {self.path('teacher')} and rerun to train it again"
               if path == self.model_path("teacher") else f"replace {path}")
        try:
          measured = teacher_checks.check_teacher(
              model, path, self.splits.num_classes, *self.training_split(),
              *(self.splits.val or (None, None)), fix=fix)
          logging.info("[teacher] %s: accuracy %.1f%% (chance %.1f%%); training images %.1f%% in "
                       "training mode, %.1f%% in inference mode.", path,
                       *(100 * measured[k] for k in ("accuracy", "chance", "training_mode_accuracy",
                                                      "inference_mode_accuracy")))
        except TeacherError as e:
          if self.config.distill.check_teacher:
            raise
          logging.warning("%s (distill.check_teacher=False: distilling anyway.)", e)
        self._checked_teachers[path] = True
      teachers.append(model)
    return teachers

  def _keras3_teacher(self, error: keras3_files.NotRebuildable, path: str):
    """A Keras 3 teacher with no tf_keras twin: Keras 3 runs it (its outputs, no layers)."""
    how = "to label the cached views" if self.config.distill.cached_teacher else "live"
    why = str(error).split(": ", 1)[-1].split(" Fix:")[0]  # its fixes are for other uses
    logging.warning("[teacher] %s has no tf_keras twin (%s): Keras 3 runs it %s.", path, why, how)
    return keras3_teacher.Keras3Teacher(error.model, path)

  def tflite_path(self, model_name: str, mode: str) -> str:
    return self.path("export", f"{model_name}_{mode}.tflite")

  def exists(self, path: str) -> bool:
    """Whether `path` exists, the same answer on every worker (`workers.agree`)."""
    found = os.path.exists(path)
    return found if self.alone else bool(workers.agree(self.strategy, found,
                                                       f"whether {path} exists"))

  def done(self, stage: str, artifact: str, epochs: Optional[int] = None) -> bool:
    """True (and says so) when `artifact`, a stage's final output, exists: the stage is skipped.

    With `epochs` (a training stage's budget), a finished stage whose history shows
    another epoch count is still skipped, with a warning that names both counts.
    """
    if not self.exists(artifact):
      return False
    logging.info("[%s] done already (%s): skipping.", stage, artifact)
    if self.is_chief:  # a backup left by a kill between the final save and its removal
      training.remove_backup(self.path(stage))
    trained = training.trained_epochs(self.path(stage))
    if epochs is not None and trained is not None and trained != epochs:
      logging.warning("[%s] the finished model in %s was trained for %d epochs, the config asks "
                      "for %d: it is kept. To train it again, use a new --workdir or delete %s.",
                      stage, self.path(stage), trained, epochs, self.path(stage))
    return True

  def require(self, paths, stage: str) -> None:
    """Raises `ConfigError` naming the first of `paths` (earlier stages' outputs) that is missing."""
    producers = {self.model_path("teacher"): "teacher", self.model_path("distill"): "distill",
                 self.model_path("prune"): "prune", self.compressed_teacher_file(): "teacher_compress"}
    for path in paths:
      if not os.path.exists(path):
        producer = producers.get(path)
        fix = (f"run the '{producer}' stage first (list it before '{stage}' in config.stages)"
               if producer else "fix teacher.path" if path == self.config.teacher.path
               else "fix distill.extra_teachers, or train that model first")
        raise ConfigError(f"The {stage} stage needs {path}: {fix}.")

  def teacher_view_logits(self):
    """The teachers' logits for every cached epoch of the run's training views, [E, N, classes].

    Fills the cache (`distill.cache_dir`, by default `workdir/teacher_views/`) first when it
    is incomplete (resumably): from the teachers, or from `distill.teacher_logits_path`.
    Returns None when the run distils from a live teacher (`distill.cached_teacher` off and
    no file).
    Checked and loaded once per run: every distilling stage after the first reuses it.
    """
    cfg = self.config.distill
    if not (cfg.cached_teacher or cfg.teacher_logits_path or self.hub_teacher):
      return None
    if self._teacher_view_logits is None:
      self._teacher_view_logits = self._load_teacher_views()
    return self._teacher_view_logits

  def _load_teacher_views(self):
    cfg = self.config.distill
    x, y = self.splits.train
    cache_dir = cfg.cache_dir or self.path("teacher_views")
    with from_config.reading("distill"):
      teacher_cache.check_cacheable(from_config.distillation_losses(cfg)[0])
    logits_path = cfg.teacher_logits_path
    if self.hub_teacher:  # its logits cover the transfer set too (`hub_stage.distill_texts`)
      logits_path = hub_stage.teacher_logits_file(self)
      x, y = from_config.with_transfer_set(self.config.data, x, y)
    if logits_path:
      imported = teacher_cache.load_teacher_logits(logits_path, len(y), self.splits.num_classes,
                                                   self.config.data.augment)
      imported, how = teacher_checks.logits_of_file(imported, y, logits_path)
      if how:
        logging.warning("[teacher_views] %s holds probabilities, not logits: %s.", logits_path, how)
      fingerprint = from_config.view_cache_fingerprint(
          self.config, [logits_path], x, y, imported_epochs=len(imported))
      fill = lambda: view_cache.import_logits(cache_dir, fingerprint, imported)
    else:
      teacher_paths = self.teacher_paths()
      self.require(teacher_paths, "teacher_views")
      fingerprint = from_config.view_cache_fingerprint(self.config, teacher_paths, x, y)
      fill = lambda: view_cache.build(cache_dir, fingerprint, self.load_teachers(teacher_paths), x,
                                      cfg.cache_batch_size)
    logits = self.view_logits(cache_dir, fingerprint, fill, self.splits.num_classes)
    logging.info("[teacher_views] %d cached epochs; the teacher agrees with %.1f%% of the labels "
                 "on epoch 0's views.", len(logits), 100 * teacher_cache.label_agreement(logits[0], y))
    return logits

  def view_logits(self, cache_dir: str, fingerprint: dict, fill: Callable[[], None],
                  num_classes: int):
    """The logits a view cache holds (`tfkd.view_cache`), [E, N, classes], filled first if needed.

    Args:
      cache_dir: the cache's folder in the workdir.
      fingerprint: what its logits depend on (`from_config.view_cache_fingerprint`).
      fill: () → None, writes the missing epochs (`view_cache.build`, which resumes, or
        `import_logits`). Run by the chief only when the cache is incomplete, after the
        stored fingerprint is checked: a cache made for anything else is refused before any
        teacher is loaded.
      num_classes: the teachers' classes.

    Example:
      run.view_logits(run.path("teacher_views"), fingerprint,
                      lambda: view_cache.build(run.path("teacher_views"), fingerprint, teachers, x), 10)
    """
    if self.is_chief and not view_cache.is_complete(cache_dir, fingerprint):
      view_cache.check_fingerprint(cache_dir, fingerprint)
      start = time.time()
      fill()
      logging.info("[teacher_views] %s: %d epochs of views labelled in %.0fs.", cache_dir,
                   fingerprint["epochs"], time.time() - start)
    workers.barrier(self.strategy)  # the other workers read what the chief wrote
    return view_cache.load(cache_dir, fingerprint, num_classes)

  @property
  def hub_teacher(self) -> bool:
    """Whether the teacher is a keras-hub model (`teacher.kind`): text in, logits cached."""
    return self.config.teacher.kind == "keras_hub"

  def build(self, model_config, name: str) -> tf_keras.Model:
    """A fresh model as `config.teacher` / `config.student` describes, for this run's data.

    It computes in `train.precision` (`tfkd.precision`); it is saved as float32.
    """
    return precision.with_policy(from_config.model(model_config, self.splits, name),
                                 self.config.train.precision)

  def training_split(self, distillation: bool = False):
    """(x, y) a training stage learns from.

    Distillation: every training example, those without a label (`data.label_fraction`)
    labelled -1 so they learn from the teacher alone. Otherwise (supervised stages) the
    labelled examples only.
    """
    x, y = self.splits.train
    if distillation or (y >= 0).all():
      return x, y
    return x[y >= 0], y[y >= 0]

  def datasets(self, batch_size: int, stage: str, distillation: bool = False,
               teacher_logits=None, labels=None):
    """(train, val) `tf.data` pipelines of a training stage.

    Training batches are endless and keyed by (seed, epoch, example index)
    (`tfkd.views`); a resumed stage continues at its next epoch. With
    `teacher_logits` (the cached views' logits, `tfkd.view_cache`) each batch
    carries the teacher's logits for exactly its views.

    In the distill stage a configured transfer set (`config.data.transfer_set`:
    augmented token ids, see `tfkd.text_augment`) joins the training data, labelled -1 so
    the student learns it from the teacher alone. Epochs keep the other stages'
    number of batches (`steps_per_epoch`), drawn from the shuffled union, so the
    learning-rate schedule and the step budget match the scratch baseline.
    Supervised stages see the labelled examples only (`training_split`); `labels`, a function
    of the splits' labels (-1 kept), gives another task's (`tfkd.multitask`).
    """
    relabel = labels or (lambda y: y)
    x, y = self.training_split(distillation)
    if distillation:
      x, y = from_config.with_transfer_set(self.config.data, x, y)
    y = relabel(y)
    start_epoch = workers.agree(self.strategy, training.resume_epoch(self.path(stage)),
                                f"the epoch {stage} resumes at")
    train = views.train_dataset(x, y, batch_size=batch_size, augment=self.config.data.augment,
                                seed=self.config.seed, view_seed=from_config.view_seed(self.config),
                                start_epoch=start_epoch,
                                teacher_logits=teacher_logits)
    val = data.eval_dataset(self.splits.val[0], relabel(self.splits.val[1]),
                            batch_size) if self.splits.val else None
    return train, val

  def fit(self, model: tf_keras.Model, stage: str, train_config, distillation: bool = False,
          teacher_logits=None, callbacks=(), labels=None):
    """Trains `model` for a stage, resumably, on this run's data (see `datasets`, `labels`)."""
    with from_config.reading("train"):  # e.g. a batch larger than the training split
      train, val = self.datasets(train_config.batch_size, stage, distillation, teacher_logits,
                                 labels)
    return training.fit_resumable(model, train, val, train_config.epochs, self.path(stage),
                                  callbacks=list(callbacks),
                                  steps_per_epoch=self.steps_per_epoch(train_config.batch_size,
                                                                       distillation))

  def steps_per_epoch(self, batch_size: int, distillation: bool = False) -> int:
    """Batches per epoch of a training stage: over its `training_split` (without the transfer set)."""
    y = self.splits.train[1]
    return (len(y) if distillation else int(np.sum(y >= 0))) // batch_size

  def input_card(self) -> dict:
    """What the run's models take, for firmware and other tools: shape, pixels, resize filter, classes."""
    shape, facts = self.splits.input_shape, self.splits.facts
    card = {"input_shape": list(shape), "classes": list(self.splits.class_names)}
    if len(shape) != 3:
      return {**card, "input": "token ids of the run's vocabulary (workdir/vocab.txt)"}
    card.update({
        "input": ("raw pixel values in [0, 255], not normalised (the model's first layer does it), "
                  f"{'1 channel (greyscale)' if shape[-1] == 1 else f'{shape[-1]} channels (RGB)'}"),
        "resize": (f"images of another size than {shape[0]}x{shape[1]}: {data.RESIZE_FILTER}; "
                   "another filter costs accuracy"),
    })
    if facts:
      card["training_images"] = {"stored_sizes": facts["sizes"], "resized": facts["resized"],
                                 "greyscale": facts["greyscale"]}
    return card

  def write_input_card(self, tflite_path: str) -> str:
    """Writes `input_card` beside a `.tflite` file as `<name>.json`; returns its path."""
    return files.write_json(os.path.splitext(tflite_path)[0] + ".json",
                            {"model": os.path.basename(tflite_path), **self.input_card()})

  def representative_inputs(self) -> np.ndarray:
    """Calibration inputs for int8: an evenly spread sample of the training split."""
    return data.evenly_spaced(self.splits.train[0], self.config.export.representative_size)
