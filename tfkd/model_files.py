"""Loading saved Keras models without running code that came with the file.

tf_keras runs the Python bytecode a `Lambda` layer stores when it loads an HDF5
(`.h5`) file, whatever its name (an HDF5 file renamed `model.keras` included),
and a SavedModel folder runs the TensorFlow graph it holds. Only the `.keras`
format honours `safe_mode`. So every model tfkd loads goes through `load_model`,
which tells the format from the file's first bytes, never its name:

- `.keras` (a zip): loaded with `safe_mode=True`; a Lambda layer's code is refused. One
  saved by Keras 3 (today's `tf.keras`) is rebuilt in tf_keras (`tfkd.keras3_files`),
  once per process and file: a run reads its teacher up to three times (distillation,
  export, report), and rebuilding and checking a large model takes minutes.
- HDF5 and SavedModel: refused unless the caller allows legacy formats (a config's
  `teacher.allow_legacy_formats`, or the compression stages' own `.h5` QAT files);
  an allowed HDF5 file still loads in safe mode, so Lambda code never runs.

Example:
  teacher = load_model("runs/x/teacher/model.keras")
  old = load_model("teacher.h5", allow_legacy_formats=True)
"""

import os
import zipfile
from typing import Optional

import tf_keras
from tf_keras.src.saving import serialization_lib  # SafeModeScope: safe mode for HDF5 too

from tfkd import fold, keras3_files, text_models, training
from tfkd.errors import ModelFileError

# Imported for what they register (register_keras_serializable) for the loads here: tfkd's
# layers and schedule. The package imports its modules lazily, so nothing else may have.
_REGISTERING_MODULES = (fold, text_models, training)

LEGACY_FORMATS = ("hdf5", "savedmodel")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# Keras 3 files read in this process: (path, size, mtime) -> the rebuilt model, or the
# NotRebuildable error with the Keras 3 model in it.
_KERAS3_FILES_READ = {}


def _is_hdf5(path: str) -> bool:
  """HDF5's signature at offset 0, 512, 1024, 2048, ... (where the format allows it)."""
  with open(path, "rb") as f:
    offset = 0
    while True:
      f.seek(offset)
      head = f.read(len(HDF5_SIGNATURE))
      if len(head) < len(HDF5_SIGNATURE):
        return False
      if head == HDF5_SIGNATURE:
        return True
      offset = offset * 2 or 512


def model_format(path: str) -> str:
  """The format of a saved model, from its content: 'keras', 'hdf5' or 'savedmodel'.

  Raises:
    ModelFileError: `path` does not exist or is none of these (e.g. damaged or truncated).

  Example:
    model_format("teacher.h5")   # 'hdf5'
  """
  if os.path.isdir(path):
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
      return "savedmodel"
    raise ModelFileError(f"Model {path!r} is a folder without saved_model.pb: pass a .keras file.")
  if not os.path.isfile(path):
    raise ModelFileError(f"Model file {path!r} does not exist: check the path, or train that "
                         "model first.")
  if zipfile.is_zipfile(path):
    return "keras"
  if _is_hdf5(path):
    return "hdf5"
  raise ModelFileError(
      f"Model file {path!r} ({os.path.getsize(path)} bytes) is not a Keras model: neither a "
      ".keras archive nor HDF5 (damaged, truncated or another kind of file). Fix: save the "
      "model again with model.save('name.keras').")


def check_model_file(path: str, allow_legacy_formats: bool = False,
                     opt_in: Optional[str] = None) -> str:
  """Checks that `load_model` would accept the file's format, without loading it.

  Args:
    path: the saved model.
    allow_legacy_formats: accept HDF5 and SavedModel files.
    opt_in: how the user allows legacy formats (e.g. a config key), for the message;
      None where they cannot.

  Returns:
    The format ('keras', 'hdf5' or 'savedmodel').

  Raises:
    ModelFileError: missing, not a model, or a legacy format that is not allowed.

  Example:
    check_model_file("extra_teacher.keras")   # 'keras'
  """
  found = model_format(path)
  if found == "keras" and not path.endswith(".keras"):
    raise ModelFileError(f"Model file {path!r} is a .keras archive under another name: rename "
                         "it to end in .keras.")
  if found in LEGACY_FORMATS and not allow_legacy_formats:
    kind = "an HDF5 file" if found == "hdf5" else "a SavedModel folder"
    raise ModelFileError(
        f"Model {path!r} is {kind}, a legacy format that can run code stored in it (Lambda "
        "layers, graph ops) when loaded, so tfkd does not load it unasked. Fix: re-save it "
        "as .keras where you trust it (tf_keras.models.load_model(path).save('model.keras'))"
        + (f", or set {opt_in} (Lambda layers' code still never runs)." if opt_in else "."))
  return found


def load_model(path: str, allow_legacy_formats: bool = False,
               opt_in: Optional[str] = None) -> tf_keras.Model:
  """Loads a saved Keras model without running code stored in it (see the module docstring).

  Custom objects come from the caller's scope (e.g. `compress.quantize_scope()`).

  Args:
    path: a `.keras` file, or with `allow_legacy_formats` an HDF5 file or SavedModel folder.
    allow_legacy_formats: accept HDF5 and SavedModel (HDF5 still loads in safe mode).
    opt_in: how the user allows legacy formats, for the message (None: they cannot).

  Returns:
    The model.

  Raises:
    ModelFileError: naming the file: missing, damaged, a refused format, or holding a
      Lambda layer with Python code.

  Example:
    teacher = load_model("runs/x/teacher/model.keras")
  """
  found = check_model_file(path, allow_legacy_formats, opt_in)
  if found == "keras" and keras3_files.is_keras3_file(path):
    return _rebuilt_once(path)
  return _read(path, found, keras3=False)


def _rebuilt_once(path: str) -> tf_keras.Model:
  """A Keras 3 file's model rebuilt in tf_keras: rebuilt and checked once, a fresh copy each call.

  Callers change the models they get (compression, precision policies), so each gets its own.

  Raises:
    NotRebuildable: (again, on later calls) when the model has no tf_keras twin.
  """
  stat = os.stat(path)
  key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
  if key not in _KERAS3_FILES_READ:
    try:  # outputs checked against the Keras 3 model's
      _KERAS3_FILES_READ[key] = keras3_files.rebuild(_read(path, "keras", keras3=True), path)
    except keras3_files.NotRebuildable as e:
      _KERAS3_FILES_READ[key] = e
  known = _KERAS3_FILES_READ[key]
  if isinstance(known, keras3_files.NotRebuildable):
    raise keras3_files.NotRebuildable(str(known), known.model)
  copy = tf_keras.models.clone_model(known)
  copy.set_weights(known.get_weights())
  return copy


def _read(path: str, found: str, keras3: bool):
  """The model in `path` as its own Keras loads it; a ModelFileError names what went wrong."""
  try:
    if keras3:  # Keras 3 loads its own files; `_rebuilt_once` rebuilds them in tf_keras
      import keras  # pylint: disable=import-outside-toplevel  (Keras 3, only for its own files)
      return keras.saving.load_model(path, compile=False, safe_mode=True)
    if found == "keras":
      return tf_keras.models.load_model(path, safe_mode=True)
    with serialization_lib.SafeModeScope(True):
      return tf_keras.models.load_model(path)
  except Exception as e:  # pylint: disable=broad-except  (zip, HDF5, JSON and Keras errors alike)
    reason = " ".join(str(e).split())
    if any(words in reason for words in ("deserialization of a Lambda layer", "a `lambda` object",
                                         "deserialization of a `Lambda` layer")):  # Keras 2, 3
      raise ModelFileError(f"Model {path!r} holds a Lambda layer of Python code, which tfkd never "
                           "runs (safe mode). Fix: replace the Lambda layer by a layer class and "
                           "save the model again.") from e
    fix = ("import the module that defines its custom objects first (a run: "
           f"--config.teacher.import_modules=\"('my_layers',)\"), or {keras3_files.OTHER_WAYS}"
           if keras3 else "save the model again with model.save('name.keras'), from tf_keras and "
           "built-in layers")
    raise ModelFileError(f"Model {path!r} cannot be loaded ({type(e).__name__}: {reason[:400]}). "
                         f"Fix: {fix}.") from e
