"""Entry points' `run(main)`: `absl.app.run` that explains an unknown `--config.` key.

ml_collections applies overrides such as `--config.train.epochs=3` while absl
parses the flags; a key the config file does not have ends there in a bare
traceback (`AttributeError: "'epochz'"`). `run` checks every override against
the config file first and, for a key that does not exist, stops before any
work with a message naming the key, the keys that do exist beside it and the fix.

Example:
  if __name__ == "__main__":
    cli.run(main)
"""

import difflib
import sys
from typing import Optional, Sequence

from absl import app, flags
from ml_collections import ConfigDict

from tfkd.errors import TfkdError
from tflite.errors import TfliteError


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


def _one_line_errors(main):
  """`main`, reporting input errors (tfkd's and the TFLite tools') as one line and exit code 2.

  These errors already say what is wrong and how to fix it; a traceback would bury that.
  """
  def wrapped(argv):
    try:
      return main(argv)
    except (TfkdError, TfliteError) as e:
      sys.stderr.write(f"ERROR: {e}\n")
      sys.exit(2)
  return wrapped


def run(main, flag_name: str = "config") -> None:
  """`absl.app.run(main)`, after refusing `--<flag_name>.` overrides of keys that do not exist.

  Input errors (`TfkdError`, `TfliteError`) end the program with their message on one line.
  """
  message = unknown_override(sys.argv, flag_name)
  if message:
    sys.stderr.write(f"FATAL: {message}\n")
    sys.exit(2)
  app.run(_one_line_errors(main))
