"""What every benchmark prints and saves beside its numbers: command, date, machine."""

import datetime
import os
import platform
import sys


def provenance(module: str) -> dict:
  """The exact command, the date (UTC), the CPU count and the Python/TF versions.

  Args:
    module: the benchmark's module name, e.g. "bench.cifar10".
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return {
      "command": " ".join([".venv/bin/python -m", module] + sys.argv[1:]),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "python": platform.python_version(),
      "tensorflow": tf.__version__,
  }


def header(meta: dict) -> str:
  """A markdown preamble for BENCHMARKS.md."""
  return (f"- date: {meta['date']}\n- machine: {meta['cpu_count']} CPU cores ({meta['machine']}), "
          f"Python {meta['python']}, TensorFlow {meta['tensorflow']}\n"
          f"- command: `{meta['command']}`\n")
