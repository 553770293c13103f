"""The one place where config blocks become library calls.

Library functions and classes (`Distiller`, the losses, `training`, `models`,
`data`, ...) take plain arguments and never see a config. This module reads
the blocks of a config (schema and defaults: `configs/defaults.py`) and makes
the objects they describe: the distillation losses and the `Distiller`,
datasets, models, the optimizer and its schedule, the `tf.distribute`
strategy, and each training stage's settings. Errors the library raises about
an argument come back as `ConfigError`s that name the config block too.

Example:
  config = from_config.with_defaults(my_config)            # refuses unknown keys
  losses, weights = from_config.distillation_losses(config.distill)
  distiller = from_config.distiller(config.distill, [teacher], student)
  optimizer = from_config.optimizer(config.train, steps_per_epoch=351)
"""

import contextlib
import difflib
import os
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras
from absl import logging
from ml_collections import ConfigDict

from configs import defaults
from tfkd import (compress, data, fold, models, small_data, text_augment, text_data, training,
                  view_cache, views)
from tfkd.adversarial import AdversarialDistillation
from tfkd.distiller import Distiller
from tfkd.errors import ConfigError, TfkdError
from tfkd.splits import Splits, split_validation
from tfkd.text_table import TableSpec
from tfkd.vocabulary import VOCAB_FILENAME
from tfkd.logit_matching import LogitMatching
from tfkd.losses import (AttentionTransfer, ContrastiveDistillation, DistillationLoss,
                         FeatureDistillation, LogitsDistillation, RelationalDistillation)

# Blocks whose keys are a builder's keyword arguments: any names are allowed there.
FREE_FORM_BLOCKS = ("kwargs",)
LOSS_NAMES = ("soft", "logits", "features", "attention", "contrastive", "relational")
FEATURE_ADAPTERS = {"auto": "auto", "always": True, "never": False}
COMPRESSION_STAGES = ("prune", "qat", "prune_qat")


@contextlib.contextmanager
def reading(block: str):
  """Turns a library `ValueError` raised while a config block is used into a `ConfigError`.

  The library's message names the argument; this adds the config block it came from.
  """
  try:
    yield
  except TfkdError:
    raise
  except ValueError as e:
    raise ConfigError(f"config.{block}: {e}") from e


def _merge(target: ConfigDict, source, path: str) -> None:
  for key, value in source.items():
    where = f"{path}.{key}" if path else key
    if key not in target:
      siblings = sorted(target.keys())
      close = difflib.get_close_matches(key, siblings, n=1)
      raise ConfigError(
          f"Unknown config key {where!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
          + f"; the keys of config.{path or '<top>'} are {siblings}. Fix: correct the name, or, "
          "for a new setting, add it with its default and a comment to configs/defaults.py.")
    if isinstance(target[key], ConfigDict) and key not in FREE_FORM_BLOCKS:
      if not isinstance(value, (ConfigDict, dict)):
        raise ConfigError(f"config.{where} is a group of keys ({sorted(target[key].keys())}), "
                          f"not a value ({value!r}): set its keys one by one.")
      _merge(target[key], value, where)
      continue
    if isinstance(target[key], tuple) and isinstance(value, list):
      value = tuple(value)  # as a config saved to JSON (report.json) comes back
    try:
      target[key] = value
    except TypeError as e:
      raise ConfigError(f"config.{where}={value!r} has the wrong type: configs/defaults.py "
                        f"gives {type(target[key]).__name__} ({target[key]!r}).") from e


def with_defaults(config) -> ConfigDict:
  """`configs/defaults.py` with `config`'s values laid over it: every key present, none unknown.

  Args:
    config: a ConfigDict (or dict) from a config file, usually built from the defaults.

  Returns:
    A new, resolved ConfigDict holding every key tfkd reads.

  Raises:
    ConfigError: `config` holds a key the defaults do not, or a value of another type.
  """
  if isinstance(config, ConfigDict):
    config = config.copy_and_resolve_references()
  merged = defaults.get_config()
  _merge(merged, config, "")
  return merged.copy_and_resolve_references()


def strategy(name: str) -> tf.distribute.Strategy:
  """The `tf.distribute` strategy `config.distribute` names.

  Args:
    name: '' (the default strategy: one device), 'mirrored' (all local GPUs or
      CPUs) or 'multiworker' (the cluster in the TF_CONFIG environment variable).
  """
  if not name:
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multiworker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ConfigError(f"Unknown config.distribute={name!r}: use '', 'mirrored' or 'multiworker'.")


def splits(config, workdir: str = "", save_vocabulary: bool = True) -> Splits:
  """Loads the dataset a `config.data` block describes.

  Each key is read as an attribute, only those the source uses: a missing one
  is an error, never a silent default.

  Args:
    config: ConfigDict with `source` ('folder', 'tfds' or 'text'), `val_size`,
      `seed` (of the split), `train_limit` (0, or keep only the first N
      shuffled training examples) and `adapt` (images: a `val_size` too large for
      the data becomes a share of it, `tfkd.small_data`), plus
      - 'folder': `path` (train/ and test/ class subfolders), `image_size` (() = the
        images' own) and `channels` (0 = 1 for greyscale data, else 3);
      - 'tfds': `tfds_name` and `tfds_data_dir` ('' = TFDS' default);
      - 'text': `train_file` and `test_file` (each `path`, `label_column`,
        `text_column`), `delimiter`, `class_names`, `vocab_size`, `max_length`,
        `lowercase`, `vocab_path` ('' = workdir/vocab.txt), `val_unit` and
        `augment` (must be False), see `tfkd.text_data.load_text_splits`.
    workdir: the run's folder; the text source saves and reuses its vocabulary there.
    save_vocabulary: False: a vocabulary not saved yet is built but not written (a
      worker that is not the chief).

  Returns:
    A `Splits`.

  Example:
    splits = from_config.splits(config.data, workdir="runs/sst2")
  """
  if config.source == "text":
    with reading("data"):
      return _text_splits(config, workdir, save_vocabulary)
  facts, notes = {}, []
  if config.source == "folder":
    with reading("data"):
      train, test, class_names, facts = data.load_image_folder(
          config.path, tuple(config.image_size) or None, config.channels)
  elif config.source == "tfds":
    train, test, class_names = data.load_tfds(config.tfds_name, config.tfds_data_dir or None)
  else:
    raise ConfigError(f"Unknown config.data.source={config.source!r}: use 'folder', 'tfds' or 'text'.")
  val_size = config.val_size
  if config.adapt:
    val_size, note = small_data.validation_size(val_size, len(train[1]))
    notes += [note] if note else []
  train, val = split_validation(*train, val_size, config.seed)
  if config.train_limit:
    train = (train[0][:config.train_limit], train[1][:config.train_limit])
  logging.info("Loaded %d train, %d val, %d test examples of %d classes.",
               len(train[1]), 0 if val is None else len(val[1]), len(test[1]),
               len(class_names))
  return Splits(train=train, val=val, test=test, class_names=class_names, facts=facts, notes=notes)


def adapted_to_data(config, dataset: Splits) -> Tuple[ConfigDict, List[str]]:
  """`config` with the batch size (and learning rates) fitted to a small dataset, logged in one line.

  With `config.data.adapt`, `tfkd.small_data.batch_size` picks the batch size and
  the learning rates of every training stage scale with it. The line also lists
  what loading adapted (`dataset.notes`) and how images are read (own size,
  greyscale, crop padding).

  Returns:
    (a new ConfigDict, `config` unchanged; the line's phrases, one per change).
  """
  config = config.copy_and_resolve_references()
  notes = list(dataset.notes)
  if config.data.adapt:
    batch, note = small_data.batch_size(config.train.batch_size, len(dataset.train[1]))
    if note:
      scale = batch / config.train.batch_size
      config.train.batch_size = batch
      config.train.learning_rate *= scale
      config.compress.train.learning_rate *= scale
      config.compress.qat.learning_rate *= scale
      notes.append(note)
  facts, shape = dataset.facts, dataset.input_shape
  if facts.get("resized"):
    stored = ", ".join("x".join(map(str, size)) for size in facts["sizes"])
    notes.append(f"images of {stored} resized to {shape[0]}x{shape[1]} (bilinear)")
  if facts.get("greyscale") and facts.get("channels") == 1:
    notes.append("greyscale images kept as 1 channel")
  if len(shape) == 3 and config.data.augment and views.crop_padding(shape) != views.PAD:
    notes.append(f"random-crop padding {views.crop_padding(shape)} px for "
                 f"{shape[0]}x{shape[1]} images ({views.PAD} px is for 32x32)")
  if notes:
    logging.info("[data] adapted to this dataset (%d training examples, input %s): %s.%s",
                 len(dataset.train[1]), "x".join(map(str, shape)), "; ".join(notes),
                 " Set data.adapt=False to train with the config as given." if config.data.adapt
                 else "")
  return config, notes


def _text_splits(config, workdir: str, save_vocabulary: bool = True) -> Splits:
  """`config.data` with source 'text' translated into `text_data.load_text_splits`' arguments."""
  if config.augment:
    raise ConfigError("data.augment=True is image augmentation (crop and flip) and cannot apply "
                      "to text: set data.augment=False; text is augmented by data.transfer_set.")
  if config.vocab_path:
    vocab_path = config.vocab_path
  else:  # The run's own vocabulary; without a workdir it is rebuilt each time, never saved.
    vocab_path = os.path.join(workdir, VOCAB_FILENAME) if workdir else None
  if vocab_path and not save_vocabulary and not os.path.exists(vocab_path):
    vocab_path = None  # built from the same rows as the chief's, so the same
  table = lambda spec: TableSpec(spec.path, spec.label_column, spec.text_column)
  return text_data.load_text_splits(
      table(config.train_file), table(config.test_file), class_names=tuple(config.class_names),
      vocab_size=config.vocab_size, max_length=config.max_length, lowercase=config.lowercase,
      val_size=config.val_size, val_unit=config.val_unit, seed=config.seed,
      train_limit=config.train_limit, vocab_path=vocab_path, delimiter=config.delimiter)


def model(model_config, dataset: Splits, name: str, num_classes: int = 0) -> tf_keras.Model:
  """The model a `config.teacher` / `config.student` block names, built for `dataset`.

  Image models get the training split's channel statistics as their first
  (normalisation) layer. `num_classes` (0: the dataset's) serves another task's labels.
  """
  normalization = dataset.channel_stats() if len(dataset.input_shape) == 3 else None
  with reading(name):
    built = models.build_model(model_config.model, num_classes or dataset.num_classes,
                               dataset.input_shape,
                               normalization=normalization, **model_config.kwargs.to_dict())
  built._name = name  # pylint: disable=protected-access  (distinct names for teacher/student)
  return built


def stage_train_config(config, stage: str) -> ConfigDict:
  """The training settings of one stage: `config.train` with the stage's own overrides.

  The teacher trains for `teacher.epochs` (0: `train.epochs`); the compression
  stages replace `train`'s keys by `compress.train`'s, and QAT stages take
  `compress.qat`'s epochs and learning rate where they are not 0. The pruned
  teacher's fine-tune (`teacher_compress`) takes `compress.train`'s keys and
  `teacher.prune_epochs`.
  """
  train = config.train.copy_and_resolve_references()
  if stage == "teacher":
    train.epochs = config.teacher.epochs or train.epochs
  elif stage == "teacher_compress":
    train.update(config.compress.train.to_dict())
    train.epochs = config.teacher.prune_epochs
  elif stage in COMPRESSION_STAGES:
    train.update(config.compress.train.to_dict())
    if stage != "prune":
      train.epochs = config.compress.qat.epochs or train.epochs
      train.learning_rate = config.compress.qat.learning_rate or train.learning_rate
  return train


def optimizer(train_config, steps_per_epoch: int) -> tf_keras.optimizers.Optimizer:
  """The optimizer and learning-rate schedule a `config.train`-shaped block asks for."""
  with reading("train"):
    schedule = training.make_schedule(
        train_config.schedule, train_config.learning_rate, train_config.epochs * steps_per_epoch,
        warmup_steps=int(train_config.warmup_epochs * steps_per_epoch))
    return training.make_optimizer(train_config.optimizer, schedule, train_config.momentum,
                                   train_config.weight_decay)


def loss_names_and_weights(distill_config) -> Tuple[List[str], List[float]]:
  """The loss names of `distill.method` and their weights, checked (nothing is built).

  Raises:
    ConfigError: an unknown or repeated loss name, an unknown feature adapter, or
      not one weight per loss.
  """
  c = distill_config
  names = [n.strip() for n in c.method.split("+") if n.strip()]
  unknown = [n for n in names if n not in LOSS_NAMES]
  if unknown or not names:
    raise ConfigError(f"Unknown config.distill.method={c.method!r}: join one or more of "
                      f"{list(LOSS_NAMES)} with '+', e.g. 'soft+features'.")
  if len(set(names)) != len(names):
    raise ConfigError(f"config.distill.method={c.method!r} names a loss twice: name each loss once.")
  if c.feature_adapter not in FEATURE_ADAPTERS:
    raise ConfigError(f"Unknown config.distill.feature_adapter={c.feature_adapter!r}: use one of "
                      f"{list(FEATURE_ADAPTERS)}.")
  weights = [float(w) for w in c.weights] or [1.0] * len(names)
  if len(weights) != len(names):
    raise ConfigError(f"config.distill.weights={tuple(weights)} has {len(weights)} values for the "
                      f"{len(names)} losses of distill.method={c.method!r}: give one weight per loss.")
  return names, weights


def distillation_losses(distill_config) -> Tuple[List[DistillationLoss], List[float]]:
  """The losses and their weights that `config.distill` asks for.

  `distill.method` names losses joined by '+' (e.g. 'soft+features'):
    soft         LogitsDistillation(temperature)
    logits       LogitMatching() (no temperature)
    features     FeatureDistillation(teacher_layer, student_layer, feature_adapter)
    attention    AttentionTransfer(teacher_layer, student_layer)
    contrastive  ContrastiveDistillation(embedding_layer, projection_dim, contrastive_temperature)
    relational   RelationalDistillation(embedding_layer)
  and `distill.weights` gives one weight per name (empty: 1 each). Each call makes
  new losses: adapters and projection heads start untrained.

  Returns:
    (losses, weights), two lists of equal length.
  """
  c = distill_config
  names, weights = loss_names_and_weights(c)
  builders = {
      "soft": lambda: LogitsDistillation(temperature=c.temperature),
      "logits": LogitMatching,
      "features": lambda: FeatureDistillation(c.teacher_layer, c.student_layer,
                                              adapter=FEATURE_ADAPTERS[c.feature_adapter]),
      "attention": lambda: AttentionTransfer(c.teacher_layer, c.student_layer),
      "contrastive": lambda: ContrastiveDistillation(
          c.embedding_layer, c.embedding_layer, projection_dim=c.projection_dim,
          temperature=c.contrastive_temperature),
      "relational": lambda: RelationalDistillation(c.embedding_layer, c.embedding_layer),
  }
  with reading("distill"):
    return [builders[n]() for n in names], weights


def distiller(distill_config, teachers: Sequence[tf_keras.Model],
              student: tf_keras.Model) -> Distiller:
  """An uncompiled `Distiller` with the losses, α, teacher weights and adversarial training
  (`distill.adversarial`) of `config.distill`.

  Args:
    distill_config: `config.distill`.
    teachers: the live teacher models (empty or None: cached logits come with the data).
    student: the model to train.
  """
  losses, weights = distillation_losses(distill_config)
  teachers = list(teachers or [])
  # Cached logits are already the weighted ensemble: the weights apply to live teachers only.
  teacher_weights = (tuple(distill_config.teacher_weights) or None) if teachers else None
  with reading("distill"):
    return Distiller(teachers or None, student, losses, weights,
                     student_loss_weight=distill_config.student_loss_weight,
                     teacher_weights=teacher_weights,
                     adversarial=adversarial_distillation(distill_config.adversarial))


def adversarial_distillation(adversarial_config) -> Optional[AdversarialDistillation]:
  """The `AdversarialDistillation` `config.distill.adversarial` asks for, None for method 'none'."""
  c = adversarial_config
  if c.method == "none":
    return None
  with reading("distill.adversarial"):
    return AdversarialDistillation(c.method, c.attack, c.epsilon, c.step_size, c.steps,
                                   c.random_start, c.weight or None)


def robust_evaluation(config) -> bool:
  """Whether the report measures PGD robust accuracy (`config.report.robust`)."""
  if config.report.robust == "auto":
    return config.distill.adversarial.method != "none"
  return config.report.robust == "on"


def with_transfer_set(data_config, x, y):
  """The training rows plus the augmented copies `config.data.transfer_set` asks for, labelled -1.

  Returns (x, y) unchanged when `transfer_set.copies` and `long_copies` are 0.
  """
  t = data_config.transfer_set
  with reading("data.transfer_set"):
    return text_augment.with_transfer_set(
        x, y, copies=t.copies, mask_probability=t.mask_probability,
        ngram_probability=t.ngram_probability, ngram_range=tuple(t.ngram_range), seed=t.seed,
        long_copies=t.long_copies, long_min_tokens=t.long_min_tokens)


def transfer_texts(data_config, texts, ids, mask_token: str) -> list:
  """`with_transfer_set`'s augmented rows as text of the training rows' words (a text teacher's)."""
  t = data_config.transfer_set
  with reading("data.transfer_set"):
    return text_augment.augmented_texts(
        texts, ids, t.copies, mask_token, mask_probability=t.mask_probability,
        ngram_probability=t.ngram_probability, ngram_range=tuple(t.ngram_range), seed=t.seed,
        lowercase=data_config.lowercase, long_copies=t.long_copies,
        long_min_tokens=t.long_min_tokens)


def pruned_model(compress_config, model: tf_keras.Model, total_steps: int) -> tf_keras.Model:
  """`model` wrapped for magnitude pruning as `config.compress` asks: a polynomial schedule to
  `prune.sparsity`, or 2:4-style `prune.m_by_n` sparsity."""
  prune = compress_config.prune
  m_by_n = tuple(prune.m_by_n) or None
  with reading("compress"):
    schedule = None if m_by_n else compress.pruning_schedule(
        prune.sparsity, total_steps, prune.end_fraction, prune.frequency)
    return compress.prune(model, schedule, m_by_n, compress_config.unsupported)


def pruned_teacher(config, model: tf_keras.Model, total_steps: int) -> tf_keras.Model:
  """The teacher wrapped for magnitude pruning to `teacher.prune_sparsity` (polynomial schedule
  with `compress.prune`'s end_fraction and frequency)."""
  prune = config.compress.prune
  with reading("teacher"):
    schedule = compress.pruning_schedule(config.teacher.prune_sparsity, total_steps,
                                         prune.end_fraction, prune.frequency)
    return compress.prune(model, schedule, None, config.compress.unsupported)


def view_seed(config) -> int:
  """The key of the run's augmented views: `data.view_seed`, or `config.seed` when it is -1."""
  return config.seed if config.data.view_seed < 0 else config.data.view_seed


def view_cache_fingerprint(config, teacher_files: Sequence[str], x, y, imported_epochs: int = 0) -> dict:
  """What the run's teacher-logit cache depends on (`tfkd.view_cache.make_fingerprint`).

  Args:
    config: the run config (`distill.cache_*`, `.teacher_weights`, `data.augment`, `view_seed`)
    teacher_files: the teachers' `.keras` files, or the one logits file logits are imported from.
    x, y: the training split.
    imported_epochs: for an imported logits file, its epochs (its teachers are already weighted).
  """
  d = config.distill
  weights = None if imported_epochs else tuple(d.teacher_weights) or None
  with reading("distill"):
    return view_cache.make_fingerprint(
        teacher_files, weights, x, y, augment=config.data.augment, seed=view_seed(config),
        epochs=imported_epochs or d.cache_epochs, storage=d.cache_storage, top_k=d.cache_top_k)


def for_export(export_config, model: tf_keras.Model) -> tf_keras.Model:
  """The model as `config.export` converts it: input normalisation folded into the first conv
  with `export.fold_normalization` (`tfkd.fold`), else unchanged. The model passed is not touched."""
  if not export_config.fold_normalization:
    return model
  with reading("export"):  # an unknown fold_border
    return fold.fold_input_normalization(model, border=export_config.fold_border)
