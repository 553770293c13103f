"""Entry points' `run(main)`: `absl.app.run` that ends every input error with one line.

Before any work, `run` checks the config file (`--config=`) loads and every
`--config.key=value` override names an existing key: ml_collections otherwise
ends in a bare traceback (`AttributeError: "'epochz'"`). A key that does not
exist stops the program with a message naming the key, the keys that do exist
beside it and the fix. While `main` runs, tfkd's and the TFLite tools' input
errors (`TfkdError`, `TfliteError`), absl's flag errors and file-system errors
are printed as one `ERROR:` line with exit code 2 (`tflite.cli`);
`TFKD_DEBUG=1` shows their traceback.

Example:
  if __name__ == "__main__":
    cli.run(main)
"""

import difflib
import os
import sys
from typing import Optional, Sequence

from absl import flags
from ml_collections import ConfigDict

from tfkd.errors import TfkdError
from tflite import cli as tflite_cli
from tflite.errors import TfliteError

INPUT_ERRORS = (TfkdError, TfliteError)


def _config_path(argv: Sequence[str], flag) -> Optional[str]:
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{flag.name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{flag.name}" and i + 1 < len(argv):
      return argv[i + 1]
  return flag.default_unparsed


def _where_to_add(parents, path: str) -> str:
  if "kwargs" in parents:  # a model builder's own arguments, set per case config
    return f"add it to the model's kwargs in get_config() in {path}"
  return "add it with its default and a comment to configs/defaults.py"


def unknown_override(argv: Sequence[str], flag_name: str = "config",
                     flag_values=flags.FLAGS) -> Optional[str]:
  """The error message for the first `--<flag_name>.key` override the config file lacks.

  Args:
    argv: the command line (`sys.argv`).
    flag_name: the `config_flags.DEFINE_config_file` flag.
    flag_values: where that flag is defined.

  Returns:
    A message naming the unknown key, its existing siblings and the fix, or
    None when every override names an existing key (or the config file itself
    cannot be read: ml_collections then reports that).
  """
  if flag_name not in flag_values:
    return None
  flag = flag_values[flag_name]
  path = _config_path(argv, flag)
  prefix = f"--{flag_name}."
  keys = [arg[len(prefix):].split("=", 1)[0] for arg in argv if arg.startswith(prefix)]
  if not path or not keys:
    return None
  try:
    config = flag.parser.parse(path)
  except Exception:  # pylint: disable=broad-except  (ml_collections explains a bad config file)
    return None
  for key in keys:
    node, parents = config, []
    for part in key.split("."):
      if isinstance(node, ConfigDict) and part in node:
        node, parents = node[part], parents + [part]
        continue
      where = ".".join(parents) or "the top level"
      siblings = sorted(node.keys()) if isinstance(node, ConfigDict) else []
      close = difflib.get_close_matches(part, siblings, n=1)
      return (f"Unknown config key {key!r} in {prefix}{key}: {path} has no {part!r} under {where}"
              + (f" (did you mean {close[0]!r}?)" if close else "")
              + (f"; the keys there are {siblings}" if siblings else f" ({where} is a value, not a group)")
              + ". Fix: correct the name, or, for a new setting, " + _where_to_add(parents, path)
              + ".")
  return None


def config_file_problem(argv: Sequence[str], flag_name: str = "config",
                        flag_values=flags.FLAGS) -> Optional[str]:
  """Why the `--<flag_name>=` config file given on the command line cannot be used, or None.

  ml_collections only reports a missing or broken config file when the config is
  first read, as a traceback; this reads it first to say so in one line.
  """
  if flag_name not in flag_values:
    return None
  path = _config_path(argv, flag_values[flag_name])
  if not path:
    return None
  file_part = path.split(":", 1)[0]  # `config.py:arg` passes an argument to get_config
  if not os.path.isfile(file_part):
    return (f"Config file {file_part!r} (--{flag_name}) does not exist: pass the path of a "
            "config file such as configs/cifar10_quick.py.")
  try:
    config = flag_values[flag_name].parser.parse(path)
  except Exception as e:  # pylint: disable=broad-except  (a user's Python file: anything)
    cause = e.__cause__ or e.__context__ or e  # ml_collections re-raises with a whole traceback
    return (f"Config file {path!r} (--{flag_name}) cannot be loaded: {type(cause).__name__}: "
            f"{cause}. Fix: correct the file; it must define get_config() returning a ConfigDict.")
  if not isinstance(config, ConfigDict):
    return (f"Config file {path!r} (--{flag_name}): get_config() returned {type(config).__name__}, "
            "not a ConfigDict. Fix: return the config (e.g. configs.defaults.get_config() with "
            "your changes).")
  return None


def run(main, flag_name: str = "config") -> None:
  """`absl.app.run(main)` that first checks the config file and its overrides, and prints
  input errors as one line with exit code 2 (see the module docstring)."""
  message = config_file_problem(sys.argv, flag_name) or unknown_override(sys.argv, flag_name)
  if message:
    tflite_cli.fail(message)
  tflite_cli.run(main, INPUT_ERRORS)
