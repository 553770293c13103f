"""Command-line programs that end an input error with one line on stderr and exit code 2.

A user who passes a bad file or number should read what is wrong and how to fix
it, not a traceback. `run(main)` is `absl.app.run(main)` that prints the errors
the program raises for bad input (`TfliteError` here; tfkd adds its own),
absl's flag and usage errors, and file-system errors (`OSError`: a full disk, a
folder that cannot be written) as `ERROR: <message>`, and exits with 2. Any
other exception is a bug and keeps its traceback. `TFKD_DEBUG=1` in the
environment shows the traceback of input errors too.

Example:
  if __name__ == "__main__":
    cli.run(main)            # python -m tflite.benchmark --model=missing.tflite
                             # ERROR: --model='missing.tflite' is not a file: ...
"""

import os
import sys
from typing import Callable, NoReturn, Sequence, Tuple, Type

from absl import app, flags

from tflite.errors import TfliteError

DEBUG_VARIABLE = "TFKD_DEBUG"  # set to 1 for the traceback behind a one-line error
USAGE_EXIT_CODE = 2


def debugging() -> bool:
  """True when `TFKD_DEBUG` asks for tracebacks (set, and not '0' or '')."""
  return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def fail(message: str) -> NoReturn:
  """Prints `ERROR: <message>` (one line) on stderr and exits with code 2."""
  sys.stderr.write("ERROR: " + " ".join(str(message).split()) + "\n")
  sys.exit(USAGE_EXIT_CODE)


def one_line_errors(main: Callable, errors: Tuple[Type[BaseException], ...] = (TfliteError,)):
  """`main`, with `errors`, absl's `UsageError` and `OSError` reported by `fail` unless debugging.

  Args:
    main: the program's main function, taking argv.
    errors: exception classes that mean bad input; their messages name the fix.

  Returns:
    The wrapped function.
  """
  def wrapped(argv):
    try:
      return main(argv)
    except (app.UsageError, *errors) as e:
      if debugging():
        raise
      fail(str(e))
    except OSError as e:  # the file system, not the program: a full disk, a read-only folder
      if debugging():
        raise
      fail(f"{e}. Fix: check that path (free space, permissions); {DEBUG_VARIABLE}=1 shows "
           "where it happened.")
  return wrapped


def parse_flags(argv: Sequence[str]):
  """absl's flag parsing, with a bad flag value reported as one line (absl prints two, exit 1)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if debugging():
      raise
    fail(f"{e}. Fix: correct the flag; --helpshort lists every flag.")


def run(main: Callable, errors: Tuple[Type[BaseException], ...] = (TfliteError,)) -> None:
  """`absl.app.run(main)` with one-line input errors (see the module docstring)."""
  app.run(one_line_errors(main, errors), flags_parser=parse_flags)
