"""Errors the `tflite` tools raise for input a user can fix; each message names the problem and the fix.

`tflite` is the lower layer and knows nothing of tfkd, so it has its own base
class; tfkd's command-line entry points report both this and `tfkd.errors.TfkdError`.
"""


class TfliteError(ValueError):
  """Base class: a model, file or argument the TFLite tools cannot use as given."""
