"""`tflite` is the lower layer: it imports nothing from tfkd, and its errors share one base."""

import ast
import glob
import os
import subprocess
import sys

import pytest

from tflite import convert, errors, firmware, micro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFLITE_FILES = sorted(glob.glob(os.path.join(REPO, "tflite", "*.py")))


def imported_modules(path):
  """Every module an `import` or `from ... import` statement of the file names."""
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module


def test_the_tflite_modules_are_found():
  assert len(TFLITE_FILES) > 10  # else the test below would have no cases and pass silently


@pytest.mark.parametrize("path", TFLITE_FILES, ids=os.path.basename)
def test_no_tflite_module_imports_tfkd(path):
  tfkd_imports = [m for m in imported_modules(path) if m == "tfkd" or m.startswith("tfkd.")]
  assert tfkd_imports == []
  # Nor do its docstrings show tfkd being imported (commands such as `python -m tfkd.x` are fine).
  text = open(path, encoding="utf-8").read()
  assert "import tfkd" not in text and "from tfkd" not in text


def test_importing_every_tflite_module_loads_no_tfkd_and_no_flags():
  # A fresh interpreter: the test process has tfkd loaded already (conftest).
  modules = [f"tflite.{os.path.basename(p)[:-3]}" for p in TFLITE_FILES
             if not p.endswith("__init__.py")]
  code = "\n".join([
      "import sys",
      *[f"import {m}" for m in modules],
      "from absl import flags",
      "assert 'tfkd' not in sys.modules, sorted(m for m in sys.modules if m.startswith('tfkd'))",
      "import tfkd.benchmark, tfkd.evaluate",
      "assert 'model' not in flags.FLAGS, 'importing a command defined its flags'",
      "print('ok')"])
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"},
                          timeout=300)
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_tflite_errors_share_a_base_that_is_not_tfkds():
  for error in (convert.ConversionError, micro.MicroError, firmware.FirmwareNameError):
    assert issubclass(error, errors.TfliteError) and issubclass(error, ValueError)
    assert not any(base.__module__.startswith("tfkd") for base in error.__mro__)
