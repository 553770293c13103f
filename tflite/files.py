"""Writing artifacts so a reader never sees half a file: bytes, text, JSON and figures.

Every file tfkd, `tflite` and `bench/` write (models, `.tflite` files, reports,
C arrays, plots, caches) goes through these helpers: the content is written to
`<path>.partial` beside the target and renamed over it, and a rename on one
filesystem is atomic, so a killed process leaves the old file or the new one,
never a torn one. It lives in `tflite`, the lower of the two packages, so both
can use it.

Example:
  write_atomic("runs/x/export/m.tflite", model_bytes)
  write_json("runs/x/report.json", {"accuracy": 0.85})
  save_figure(fig, "runs/x/report.png")
"""

import hashlib
import json
import os
from typing import Any, Union


def _partial_path(path: str) -> str:
  """The temporary name beside `path`; the extension stays last so writers that infer
  the format from it (matplotlib, Keras) still do."""
  root, ext = os.path.splitext(path)
  return f"{root}.partial{ext}"


def write_atomic(path: str, data: Union[bytes, str]) -> str:
  """Writes bytes or text to `path` through a temporary file and a rename.

  Args:
    path: the target file; its folder is created if needed.
    data: `bytes` (written as is) or `str` (UTF-8).

  Returns:
    `path`.
  """
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = _partial_path(path)
  if isinstance(data, str):
    data = data.encode("utf-8")
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
  return path


def write_json(path: str, payload: Any) -> str:
  """Writes `payload` as indented JSON, atomically; values JSON lacks are written as `str`."""
  return write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def read_json(path: str) -> Any:
  """The JSON value in `path`."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def json_digest(value: Any, length: int = 10) -> str:
  """A short stable name for a JSON-able value (a config, an architecture), for cache folders.

  Example:
    json_digest({"b": 1, "a": [2]}) == json_digest({"a": [2], "b": 1})
  """
  text = json.dumps(value, sort_keys=True, default=str)
  return hashlib.sha1(text.encode()).hexdigest()[:length]


def save_figure(fig, path: str, dpi: int = 120) -> str:
  """Saves a matplotlib figure atomically and closes it.

  Args:
    fig: a `matplotlib.figure.Figure`.
    path: the target, e.g. `report.png` (the format follows the extension).
    dpi: resolution.

  Returns:
    `path`.
  """
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel  (only for plots)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = _partial_path(path)
  fig.savefig(tmp, dpi=dpi)
  plt.close(fig)
  os.replace(tmp, path)
  return path


def new_figure(*args, **kwargs):
  """`matplotlib.pyplot.subplots` on the non-interactive Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt.subplots(*args, **kwargs)
