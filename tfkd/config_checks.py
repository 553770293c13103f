"""Every value of a run config checked before any data is read or any folder written.

A wrong number (`train.epochs=0`, `distill.temperature=-1`), an unknown name
(`train.optimizer='adam'`) or a missing input file (`data.path`,
`distill.extra_teachers`) would otherwise surface minutes later as a library
traceback. `validate` stops the run at once with one `ConfigError` that names
the key, the value and what to set instead. `tfkd.pipeline.run_pipeline` calls
it right after `from_config.with_defaults`; it reads the config the way
`tfkd.from_config` does and, like it, hands nothing to the library.

Example:
  config = from_config.with_defaults(my_config)
  validate(config)     # ConfigError: config.train.epochs=0 is not valid: ...
"""

import importlib
import math
import numbers
import os
import sys
from typing import Callable, Sequence, Tuple

from tfkd import (adversarial, compress, from_config, hub_teacher, model_files, teacher_compression,
                  text_data, view_cache)
from tfkd.errors import ConfigError, DatasetError, ModelFileError
from tfkd.models import MODELS
from tfkd.text_models import TEXT_MODELS
from tfkd.vocabulary import RESERVED_TOKENS
from tflite.convert import MODES

# The names `tfkd.training.make_optimizer` / `make_schedule` and `from_config` accept
# (tests/test_bad_inputs.py checks each is accepted there).
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
PRECISIONS = ("float32", "mixed_bfloat16")  # tfkd.precision.POLICIES
DATA_SOURCES = ("folder", "tfds", "text")
DISTRIBUTE = ("", "mirrored", "multiworker")
ROBUST_REPORT = ("auto", "on", "off")
TEACHER_KINDS = ("tfkd", "keras_hub")
SELFSUP_HEADS = ("fine_tune", "linear")
# How a user lets teachers be HDF5 or SavedModel (`tfkd.model_files`), for the messages.
LEGACY_OPT_IN = "--config.teacher.allow_legacy_formats=True"

Rule = Tuple[Callable[[object], bool], str]  # (is the value valid?, what a valid value is)


def _number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _whole(low: int) -> Rule:
  return (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low,
          f"a whole number >= {low}")


def _at_least(low: float, strict: bool = False) -> Rule:
  test = (lambda v: v > low) if strict else (lambda v: v >= low)
  return (lambda v: _number(v) and test(v), f"a number {'>' if strict else '>='} {low:g}")


def _between(low: float, high: float, closed: str = "[]") -> Rule:
  """A number in the interval `closed` describes, e.g. '[)' for low <= v < high."""
  above = (lambda v: v >= low) if closed[0] == "[" else (lambda v: v > low)
  below = (lambda v: v <= high) if closed[1] == "]" else (lambda v: v < high)
  return (lambda v: _number(v) and above(v) and below(v),
          f"a number in {closed[0]}{low:g}, {high:g}{closed[1]}")


def _one_of(choices: Sequence[str]) -> Rule:
  return (lambda v: v in choices, f"one of {list(choices)}")


def _all_of(choices: Sequence[str]) -> Rule:
  return (lambda v: len(v) > 0 and all(c in choices for c in v),
          f"a non-empty tuple of {list(choices)}")


_IMAGE_SIZE: Rule = (  # () keeps the images' own size (configs/defaults.py)
    lambda v: len(v) == 0 or (len(v) == 2 and all(isinstance(d, numbers.Integral) and d >= 1
                                                  for d in v)),
    "(height, width), two whole numbers >= 1, or () for the images' own size")
_WEIGHTS: Rule = (lambda v: all(_number(w) and w >= 0 for w in v), "numbers >= 0")

RULES = {
    "seed": _whole(0),
    "distribute": _one_of(DISTRIBUTE),
    "data.source": _one_of(DATA_SOURCES),
    "data.image_size": _IMAGE_SIZE,
    "data.val_size": _whole(0),
    "data.val_unit": _one_of(text_data.VAL_UNITS),
    "data.seed": _whole(0),
    "data.train_limit": _whole(0),
    "data.label_fraction": _between(0, 1, "(]"),
    "data.delimiter": (lambda v: len(v) <= 1, "'' (from the file extension) or one character"),
    "data.vocab_size": _whole(len(RESERVED_TOKENS) + 1),
    "data.max_length": _whole(1),
    "data.transfer_set.copies": _whole(0),
    "data.transfer_set.mask_probability": _between(0, 1),
    "data.transfer_set.ngram_probability": _between(0, 1),
    "data.transfer_set.ngram_range": (lambda v: len(v) == 2 and 1 <= v[0] <= v[1],
                                      "(low, high) with 1 <= low <= high"),
    "data.transfer_set.long_copies": _whole(0),
    "data.transfer_set.long_min_tokens": _whole(1),
    "data.transfer_set.seed": _whole(0),
    "data.view_seed": (_whole(-1)[0], "a seed >= 0, or -1 for config.seed"),
    "teacher.model": _one_of(sorted({**MODELS, **TEXT_MODELS})),
    "teacher.epochs": _whole(0),
    "teacher.compress": _one_of(teacher_compression.COMPRESSIONS),
    "teacher.prune_sparsity": _between(0, 1, "()"),
    "teacher.prune_epochs": _whole(1),
    "teacher.kind": _one_of(TEACHER_KINDS),
    "teacher.hub.sequence_length": _whole(3),
    "teacher.hub.epochs": _whole(1),
    "teacher.hub.batch_size": _whole(1),
    "teacher.hub.learning_rate": _at_least(0, strict=True),
    "teacher.hub.warmup_fraction": _between(0, 1, "[)"),
    "teacher.hub.weight_decay": _at_least(0),
    "teacher.hub.dropout": _between(0, 1, "[)"),
    "teacher.hub.dtype": _one_of(("float32", "mixed_bfloat16")),
    "teacher.hub.inference_dtype": _one_of(("float32", "mixed_bfloat16")),
    "teacher.hub.checkpoint_steps": _whole(1),
    "teacher.hub.inference_batch_size": _whole(1),
    "student.model": _one_of(sorted({**MODELS, **TEXT_MODELS})),
    "train.batch_size": _whole(1),
    "train.epochs": _whole(1),
    "train.optimizer": _one_of(OPTIMIZERS),
    "train.learning_rate": _at_least(0, strict=True),
    "train.momentum": _between(0, 1, "[)"),
    "train.weight_decay": _at_least(0),
    "train.schedule": _one_of(SCHEDULES),
    "train.warmup_epochs": _at_least(0),
    "train.precision": _one_of(PRECISIONS),
    "distill.temperature": _at_least(0, strict=True),
    "distill.student_loss_weight": _between(0, 1),
    "distill.weights": _WEIGHTS,
    "distill.projection_dim": _whole(1),
    "distill.contrastive_temperature": _at_least(0, strict=True),
    "distill.teacher_weights": _WEIGHTS,
    "distill.cache_epochs": _whole(1),
    "distill.cache_storage": _one_of(view_cache.STORAGES),
    "distill.cache_top_k": _whole(1),
    "distill.cache_batch_size": _whole(1),
    "distill.adversarial.method": _one_of(adversarial.METHODS),
    "distill.adversarial.attack": _one_of(adversarial.ATTACKS),
    "distill.adversarial.epsilon": _at_least(0, strict=True),
    "distill.adversarial.step_size": _at_least(0, strict=True),
    "distill.adversarial.steps": _whole(1),
    "distill.adversarial.weight": _between(0, 1),
    "selfsup.queue_size": _whole(1),
    "selfsup.teacher_temperature": _at_least(0, strict=True),
    "selfsup.student_temperature": _at_least(0, strict=True),
    "selfsup.epochs": _whole(0),
    "selfsup.head": _one_of(SELFSUP_HEADS),
    "selfsup.head_epochs": _whole(0),
    "selfsup.head_learning_rate": _at_least(0),
    "multitask.teacher_b.model": _one_of(sorted({**MODELS, **TEXT_MODELS})),
    "multitask.teacher_b.epochs": _whole(0),
    "multitask.student.model": _one_of(sorted({**MODELS, **TEXT_MODELS})),
    "multitask.task_weights": (lambda v: len(v) == 2 and _WEIGHTS[0](v) and sum(v) > 0,
                               "(λ of task A, λ of task B), numbers >= 0 with a positive sum"),
    "multitask.micro_examples": _whole(0),
    "compress.unsupported": _one_of(compress.UNSUPPORTED_CHOICES),
    "compress.train.epochs": _whole(1),
    "compress.train.learning_rate": _at_least(0, strict=True),
    "compress.train.schedule": _one_of(SCHEDULES),
    "compress.train.warmup_epochs": _at_least(0),
    "compress.prune.sparsity": _between(0, 1, "()"),
    "compress.prune.m_by_n": (lambda v: len(v) == 0 or (len(v) == 2 and 0 < v[0] < v[1]),
                              "() or (m, n) with 0 < m < n, e.g. (2, 4)"),
    "compress.prune.end_fraction": _between(0, 1, "(]"),
    "compress.prune.frequency": _whole(1),
    "compress.qat.epochs": _whole(0),
    "compress.qat.learning_rate": _at_least(0),
    "export.modes": _all_of(MODES),
    "export.representative_size": _whole(1),
    "report.batch_size": _whole(1),
    "report.latency_runs": _whole(1),
    "report.warmup_runs": _whole(0),
    "report.threads": _whole(1),
    "report.latency_spread_s": _at_least(0.0),
    "report.edge_mode": _one_of(MODES),
    "report.parity_samples": _whole(0),
    "report.robust": _one_of(ROBUST_REPORT),
    "report.pgd_epsilon": _at_least(0, strict=True),
    "report.pgd_step_size": _at_least(0, strict=True),
    "report.pgd_steps": _whole(1),
    "report.robust_examples": _whole(0),
    "report.teacher_batch_runs": _whole(1),
    "search.modes": _all_of(("distill", "scratch")),
    "search.trials": _whole(1),
    "search.max_rejected": _whole(1),
    "search.max_repeated": _whole(1),
    "search.epochs": _whole(1),
    "search.final_epochs": _whole(0),
    "search.seed": _whole(0),
    "search.min_epochs": _whole(1),
    "search.reduction_factor": _whole(2),
    "search.latency_runs": _whole(1),
    "search.latency_spread_s": _at_least(0.0),
    "search.space.families": _all_of(("resnet", "ds_cnn", "mobilenet_v2")),
}


def _value(config, key: str):
  for part in key.split("."):
    config = config[part]
  return config


def _check_rules(config, prefix: str = "") -> None:
  """Applies the `RULES` of the keys under `prefix` that `config` holds."""
  for key, (valid, requirement) in RULES.items():
    if not key.startswith(prefix):
      continue
    try:
      value = _value(config, key[len(prefix):])
    except (KeyError, AttributeError):  # a partial block (e.g. a tool's data block)
      continue
    try:
      ok = valid(value)
    except TypeError:  # e.g. len() of a number where a tuple belongs
      ok = False
    if not ok:
      raise ConfigError(f"config.{key}={value!r} is not valid: use {requirement} (in the config "
                        f"file, or --config.{key}=...).")


def validate(config) -> None:
  """Raises a `ConfigError` for the first value of `config` no run could use.

  Args:
    config: a whole run config (`from_config.with_defaults`).

  Raises:
    ConfigError: naming the key, its value and what to use instead; also for a
      missing input file (`data.path`, the text tables, `distill.extra_teachers`,
      `distill.teacher_logits_path`) or an extra teacher in a refused format.
  """
  _check_rules(config)
  _check_data_files(config.data)
  _check_run(config)


def validate_data(data) -> None:
  """`validate` for a `config.data` block alone (whole, or the keys a tool sets).

  Example:
    validate_data(eval_data.data_config("folder", "data/cifar10-jpeg", (32, 32, 3)))
  """
  _check_rules(data, prefix="data.")
  _check_data_files(data)


def _check_data_files(data) -> None:
  if data.source == "folder" and not os.path.isdir(data.path):
    raise DatasetError(f"config.data.path={data.path!r} does not exist or is not a folder: point "
                       "it at a folder holding train/<class>/ and test/<class>/ image folders.")
  if data.source == "tfds" and not data.tfds_name:
    raise ConfigError("config.data.tfds_name is empty: name a TFDS dataset, e.g. 'cifar10'.")
  if data.source == "text":
    for name in ("train_file", "test_file"):
      if not os.path.isfile(data[name].path):
        raise DatasetError(f"config.data.{name}.path={data[name].path!r} does not exist or is "
                           "not a file: give the path of a TSV or CSV file with a header row.")


def _import_teacher_modules(names) -> None:
  """Imports `teacher.import_modules`: the user's modules that register a teacher's custom layers."""
  if os.getcwd() not in sys.path:  # `tfkd-train` (a console script) does not put it there
    sys.path.append(os.getcwd())
  for name in names:
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ConfigError(f"config.teacher.import_modules: {name!r} cannot be imported ({e}). Fix: "
                        "run from the folder that holds it, or add that folder to PYTHONPATH.") from e


def _check_run(config) -> None:
  """Checks that need more than one key, and the teachers and logits a run reads."""
  if not config.stages or len(set(config.stages)) != len(config.stages):
    raise ConfigError(f"config.stages={tuple(config.stages)!r} must name each stage to run "
                      "once, in order, e.g. ('teacher', 'scratch', 'distill', 'export', 'report').")
  for block in ("train", "compress.train"):
    train = _value(config, block)
    if train.warmup_epochs >= train.epochs and train.warmup_epochs:
      raise ConfigError(f"config.{block}.warmup_epochs={train.warmup_epochs} leaves no epochs "
                        f"after the warm-up of the {train.epochs}: use fewer warm-up epochs.")
  from_config.loss_names_and_weights(config.distill)
  d = config.distill
  if d.teacher_weights and len(d.teacher_weights) != 1 + len(d.extra_teachers):
    raise ConfigError(f"config.distill.teacher_weights={tuple(d.teacher_weights)} has "
                      f"{len(d.teacher_weights)} values for {1 + len(d.extra_teachers)} teachers "
                      "(the teacher and distill.extra_teachers): give one weight per teacher.")
  if d.teacher_weights and not sum(d.teacher_weights) > 0:
    raise ConfigError("config.distill.teacher_weights are all 0: give at least one teacher a "
                      "weight above 0.")
  _import_teacher_modules(config.teacher.import_modules)
  for i, path in enumerate(d.extra_teachers):
    try:
      model_files.check_model_file(path, config.teacher.allow_legacy_formats,
                                   opt_in=LEGACY_OPT_IN)
    except ModelFileError as e:
      raise ConfigError(f"config.distill.extra_teachers[{i}]: {e}") from e
  if d.teacher_logits_path and not os.path.isfile(d.teacher_logits_path):
    raise ConfigError(f"config.distill.teacher_logits_path={d.teacher_logits_path!r} is not a "
                      "file: give the .npy file of teacher logits, or '' to run the teacher.")
  if config.data.source == "text" and (d.adversarial.method != "none" or
                                      config.report.robust == "on"):
    raise ConfigError(f"config.distill.adversarial.method={d.adversarial.method!r} / "
                      f"report.robust={config.report.robust!r} perturb image pixels, but "
                      "data.source='text' gives token ids: set distill.adversarial.method='none' "
                      "and report.robust='auto' or 'off'.")
  if config.teacher.compress == "int8" and not d.cached_teacher:
    raise ConfigError("config.teacher.compress='int8' makes a teacher that runs on LiteRT, which "
                      "cannot run inside a training step: set distill.cached_teacher=True (it "
                      "labels the training views once), or pick another teacher.compress.")
  if config.teacher.compress != "none" and d.teacher_logits_path:
    raise ConfigError(f"config.teacher.compress={config.teacher.compress!r} compresses the teacher "
                      "tfkd runs, but distill.teacher_logits_path replaces that teacher by a logits "
                      "file: set teacher.compress='none' or distill.teacher_logits_path=''.")
  if config.teacher.kind == "keras_hub":
    if config.teacher.compress != "none":
      raise ConfigError(f"config.teacher.compress={config.teacher.compress!r} compresses a tfkd "
                        "(tf_keras) teacher, but teacher.kind='keras_hub' fine-tunes a keras-hub "
                        "one: set teacher.compress='none'.")
    _check_hub_teacher(config)
  multitask_stages = {"teacher_b", "multitask"} & set(config.stages)
  if multitask_stages and not config.multitask.task_b_classes:
    raise ConfigError(f"config.stages runs {sorted(multitask_stages)} but multitask.task_b_classes "
                      "is empty: give every class its task-B class as 'class:group' pairs "
                      "(configs/cifar10_multitask.py).")
  if "report" in config.stages and config.report.edge and \
      config.report.edge_mode not in config.export.modes:
    raise ConfigError(f"config.report.edge_mode={config.report.edge_mode!r} is not among "
                      f"export.modes={tuple(config.export.modes)}: export that mode too, or "
                      "pick one of them.")


def _check_hub_teacher(config) -> None:
  """A keras-hub teacher reads text, runs in one process and teaches through cached logits."""
  if config.data.source != "text":
    raise ConfigError(f"config.teacher.kind='keras_hub' reads text, but data.source="
                      f"{config.data.source!r}: use data.source='text', or teacher.kind='tfkd'.")
  if config.data.label_fraction < 1:
    raise ConfigError(f"config.teacher.kind='keras_hub' fine-tunes on every training label, but "
                      f"data.label_fraction={config.data.label_fraction}: set data.label_fraction=1 "
                      "or use teacher.kind='tfkd'.")
  if config.distribute:
    raise ConfigError(f"config.teacher.kind='keras_hub' fine-tunes in one process, not with "
                      f"distribute={config.distribute!r}: set --config.distribute=''.")
  if config.teacher.path or config.distill.teacher_logits_path or config.distill.extra_teachers:
    raise ConfigError("config.teacher.kind='keras_hub' is the only teacher: clear teacher.path, "
                      "distill.teacher_logits_path and distill.extra_teachers, or use "
                      "teacher.kind='tfkd'.")
  try:
    hub_teacher.check_preset(config.teacher.hub.preset)
  except ValueError as e:
    raise ConfigError(f"config.teacher.hub.{e}") from e
