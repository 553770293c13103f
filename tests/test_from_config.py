"""Config → library: the base schema, every key overridable, unknown keys refused, losses,
optimizer and stage settings built from config blocks, library errors given their block."""

import subprocess
import sys

import pytest
import tensorflow as tf
from absl import flags
from ml_collections import ConfigDict, config_flags

from configs import (cifar10_compress, cifar10_multitask, cifar10_quick, cifar10_resnet, csbm_glnn,
                     defaults, sst2_full, sst2_quick)
from tfkd import from_config
from tfkd.errors import ConfigError

CASE_CONFIGS = (cifar10_resnet, cifar10_quick, cifar10_compress, cifar10_multitask, sst2_full,
                sst2_quick, csbm_glnn)


def leaves(config: ConfigDict, prefix: str = ""):
  """(dotted key, value) of every value in `config`, depth first."""
  for key, value in config.items():
    path = f"{prefix}{key}"
    if isinstance(value, ConfigDict):
      yield from leaves(value, path + ".")
    else:
      yield path, value


def changed(value):
  """Another value of the same type, written as a command-line override would be."""
  if isinstance(value, bool):
    return (not value), str(not value)
  if isinstance(value, int):
    return value + 1, str(value + 1)
  if isinstance(value, float):
    return value * 2 + 1, repr(value * 2 + 1)
  if isinstance(value, str):
    return value + "x", value + "x"
  if isinstance(value, tuple):
    new = value + value[:1] if value else (7,)
    return new, repr(new)
  raise AssertionError(f"no override for {value!r}")


@pytest.mark.parametrize("module", CASE_CONFIGS, ids=lambda m: m.__name__)
def test_every_leaf_of_every_case_config_overrides_from_the_command_line(module):
  """Each key the code reads is in the schema and can be set as --config.<key>=<value>."""
  keys = dict(leaves(module.get_config()))
  schema_keys = {k for k, _ in leaves(defaults.get_config()) if ".kwargs." not in k}
  assert schema_keys <= set(keys)  # case configs start from the base schema
  for key, value in keys.items():
    expected, text = changed(value)
    argv = ["prog", f"--config={module.__file__}", f"--config.{key}={text}"]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    node = flag_values.config
    for part in key.split("."):
      node = node[part]
    assert node == expected, key


def test_a_config_without_a_key_takes_its_default_and_an_unknown_key_is_refused():
  partial = ConfigDict(dict(train=dict(epochs=3), distill=dict(temperature=2.0)))
  merged = from_config.with_defaults(partial)
  assert merged.train.epochs == 3 and merged.distill.temperature == 2.0
  assert merged.report.parity_samples == defaults.get_config().report.parity_samples
  with pytest.raises(ConfigError, match=r"'distill.temprature' \(did you mean 'temperature'\?\)"
                                        r".*configs/defaults.py"):
    from_config.with_defaults(ConfigDict(dict(distill=dict(temprature=2.0))))
  with pytest.raises(ConfigError, match="config.train.epochs='three' has the wrong type"):
    from_config.with_defaults(ConfigDict(dict(train=dict(epochs="three"))))
  # Model builders' kwargs are free-form.
  free = from_config.with_defaults(ConfigDict(dict(student=dict(kwargs=dict(filters=(8, 16))))))
  assert free.student.kwargs.filters == (8, 16)


def test_text_config_names_a_layer_text_models_have():
  from tfkd import models
  config = sst2_full.get_config()
  student = models.build_model(config.student.model, 2, (config.data.max_length,),
                               **config.student.kwargs.to_dict())
  assert config.distill.student_layer in [l.name for l in student.layers]


def test_stage_train_config_applies_the_stage_overrides():
  config = cifar10_compress.get_config()
  config.teacher.epochs, config.train.epochs = 0, 7
  assert from_config.stage_train_config(config, "teacher").epochs == 7
  config.teacher.epochs = 9
  assert from_config.stage_train_config(config, "teacher").epochs == 9
  assert from_config.stage_train_config(config, "distill").epochs == 7
  prune = from_config.stage_train_config(config, "prune")
  assert prune.epochs == config.compress.train.epochs and prune.schedule == "cosine"
  assert prune.batch_size == config.train.batch_size
  qat = from_config.stage_train_config(config, "qat")
  assert (qat.epochs, qat.learning_rate) == (config.compress.qat.epochs, config.compress.qat.learning_rate)
  config.compress.qat.epochs = 0
  assert from_config.stage_train_config(config, "prune_qat").epochs == config.compress.train.epochs


def test_optimizer_from_config_and_library_errors_name_block_and_argument():
  train = cifar10_resnet.get_config().train
  optimizer = from_config.optimizer(train, steps_per_epoch=10)
  assert type(optimizer).__name__ == "SGD" and optimizer.nesterov
  train.optimizer = "adam"
  with pytest.raises(ConfigError, match=r"config.train: Unknown optimizer name='adam'"):
    from_config.optimizer(train, steps_per_epoch=10)
  train.optimizer, train.schedule = "sgd", "linear"
  with pytest.raises(ConfigError, match=r"config.train: Unknown schedule='linear'"):
    from_config.optimizer(train, steps_per_epoch=10)
  distill = cifar10_resnet.get_config().distill
  distill.temperature = -1.0
  with pytest.raises(ConfigError, match="config.distill: temperature must be > 0"):
    from_config.distillation_losses(distill)


def test_strategy_names():
  assert from_config.strategy("") is tf.distribute.get_strategy()  # the default: one device
  with pytest.raises(ConfigError, match="config.distribute='tpu'"):
    from_config.strategy("tpu")


def test_config_selects_losses_and_weights():
  config = cifar10_resnet.get_config().distill
  config.method = "soft+features+attention+contrastive+relational+logits"
  config.weights = (1.0, 0.5, 2.0, 0.3, 1.5, 0.2)
  config.feature_adapter = "always"
  built, weights = from_config.distillation_losses(config)
  assert [type(l).__name__ for l in built] == [
      "LogitsDistillation", "FeatureDistillation", "AttentionTransfer", "ContrastiveDistillation",
      "RelationalDistillation", "LogitMatching"]
  assert weights == [1.0, 0.5, 2.0, 0.3, 1.5, 0.2]
  assert built[0].temperature == config.temperature and built[1].use_adapter is True
  assert built[1].teacher_layer_name == "stage3" and built[3].student_layer_name == "features"
  assert built[3].temperature == config.contrastive_temperature


@pytest.mark.parametrize("method, weights, match", [
    ("soft+hints", (), r"Unknown config.distill.method='soft\+hints'.*'soft', 'logits', 'features'"),
    ("soft+soft", (), "names a loss twice"),
    ("soft+features", (1.0,), "1 values for the 2 losses"),
])
def test_config_errors_name_the_fix(method, weights, match):
  config = cifar10_resnet.get_config().distill
  config.method, config.weights = method, weights
  with pytest.raises(ConfigError, match=match):
    from_config.distillation_losses(config)


def test_importing_tfkd_after_tensorflow_chose_keras_3_is_refused_with_the_fix():
  code = ("import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
          "import tensorflow as tf; tf.keras.layers.Dense\n"
          "import tfkd\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in __import__("os").environ.items()
                                            if k != "TF_USE_LEGACY_KERAS"})
  assert result.returncode != 0
  assert "ImportError" in result.stderr and "import tfkd before" in result.stderr
  # Imported first (or after TensorFlow but before tf.keras is used), tfkd selects Keras 2.
  ok = subprocess.run([sys.executable, "-c", "import tensorflow as tf; import tfkd; "
                       "print(tf.keras.layers.Dense.__module__)"],
                      capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0 and ok.stdout.strip().startswith("tf_keras")


def test_public_api():
  import tfkd
  for name in ("Distiller", "LogitsDistillation", "LogitMatching", "FeatureDistillation",
               "AttentionTransfer", "ContrastiveDistillation", "RelationalDistillation", "DistillationLoss",
               "run_pipeline", "build_model", "prune", "quantize", "strip_pruning", "TfkdError"):
    assert hasattr(tfkd, name), name


def test_text_models_follow_the_vocabulary_size_set_on_the_command_line():
  argv = ["prog", f"--config={sst2_full.__file__}", "--config.data.vocab_size=123"]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  config = from_config.with_defaults(flag_values.config)
  assert config.student.kwargs.vocab_size == config.teacher.kwargs.vocab_size == 123
