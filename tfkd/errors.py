"""Errors tfkd raises for bad input. Each message names the problem and the fix."""


class TfkdError(Exception):
  """Base class for input errors a user can fix."""


class DatasetError(TfkdError, ValueError):
  """A dataset that is missing, empty, unreadable or inconsistent."""


class ModelMismatchError(TfkdError, ValueError):
  """Teacher and student that cannot be distilled together."""


class ConfigError(TfkdError, ValueError):
  """A config value that does not exist or is not valid."""


class ModelFileError(TfkdError, ValueError):
  """A saved Keras model that is missing, damaged, or in a format tfkd does not load unasked."""


class TrainingError(TfkdError):
  """A training stage that failed in a way the user can fix, e.g. a loss that became NaN."""


class TeacherError(TfkdError):
  """A teacher that would teach the student wrong things (at chance, unsettled BatchNorm)."""
