"""Settings that fit small datasets: a validation split and a batch size scaled to the data.

Defaults made for CIFAR-10 (5,000 validation images, batches of 128) break on a
folder of 2,000 images: the validation split would take everything, and an
epoch of a dozen steps leaves BatchNorm's moving statistics unsettled, so a
teacher fine in training mode is at chance in inference mode. With
`config.data.adapt` (the default) the run applies these rules and logs every
change in one line (`tfkd.from_config.adapted_to_data`):
  - validation: when `data.val_size` would take more than `MAX_VAL_SHARE` of the
    training images, `VAL_SHARE` of them are held out instead;
  - batch size: when an epoch would have fewer than `MIN_STEPS` steps, the largest
    power of two that gives that many (not below `MIN_BATCH`), with the learning
    rates scaled by the same factor (the linear scaling rule).
The random crop's padding follows the image size (`tfkd.views.crop_padding`).

Example:
  validation_size(5000, 2000)   # (200, '... 5000 → 200 ...')
  batch_size(128, 1800)         # (32, '... 128 → 32 ...')
"""

import math
from typing import Optional, Tuple

MAX_VAL_SHARE = 0.2   # a validation split larger than this share of the data is replaced ...
VAL_SHARE = 0.1       # ... by this share of it
MIN_STEPS = 50        # steps an epoch should have
MIN_BATCH = 16        # smallest batch the rule picks (BatchNorm needs a few examples per batch)


def validation_size(val_size: int, num_examples: int) -> Tuple[int, Optional[str]]:
  """(validation examples to hold out, a note saying what changed or None).

  Args:
    val_size: the configured size (0: no validation split, kept).
    num_examples: training examples before the split.
  """
  if not val_size or val_size <= MAX_VAL_SHARE * num_examples:
    return val_size, None
  adapted = max(1, int(round(VAL_SHARE * num_examples)))
  return adapted, (f"data.val_size {val_size} → {adapted} ({VAL_SHARE:.0%} of {num_examples}; "
                   f"{val_size} is over {MAX_VAL_SHARE:.0%} of the data)")


def batch_size(batch: int, num_examples: int) -> Tuple[int, Optional[str]]:
  """(batch size, a note saying what changed or None) so an epoch has `MIN_STEPS` steps if it can.

  Args:
    batch: the configured batch size.
    num_examples: training examples (after the validation split).
  """
  if num_examples // batch >= MIN_STEPS:
    return batch, None
  fitting = 2 ** int(math.floor(math.log2(max(1.0, num_examples / MIN_STEPS))))
  adapted = min(batch, max(MIN_BATCH, fitting))
  if adapted == batch:
    return batch, None
  return adapted, (f"train.batch_size {batch} → {adapted} and learning rates x{adapted / batch:g} "
                   f"({num_examples // adapted} steps an epoch, not {num_examples // batch})")
