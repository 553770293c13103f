"""The students a budget search may propose: families, their knobs, and how Optuna draws them.

A candidate is a plain dict, `{"family": ..., "kwargs": {...}, "resolution": r}`,
that `build_candidate` turns into an ordinary Keras model of `tfkd.models`
(`resnet_stages`, `ds_cnn`, `mobilenet_v2`): it converts to int8 and runs on
TFLite Micro like every tfkd student. `candidate_key` names it for caches.

The space is declared in `config.search.space` (see configs/defaults.py):

  resnet:       blocks per stage (3 stages) in [lo, hi], filters per stage from `widths`
  ds_cnn:       separable blocks in [lo, hi], base width from `widths`
                (filters double at each stride-2 block, as in ds_cnn's default)
  mobilenet_v2: width multiplier, expansion, blocks per stage (3 stages) in [lo, hi]
  resolutions:  square input sizes to try; () = the data's own size

Example:
  candidate = suggest(trial, config.search.space, data_size=32)
  model = build_candidate(candidate, num_classes=10, channels=3, normalization=stats)
"""

import collections.abc

from tfkd import models
from tfkd.errors import ConfigError
from tflite import files

FAMILIES = ("resnet", "ds_cnn", "mobilenet_v2")
STAGES = 3  # resnet and mobilenet_v2 stages, as in tfkd's CIFAR models


def _ds_cnn_kwargs(blocks: int, width: int) -> dict:
  # Stride 2 at blocks 2 and 3 (as ds_cnn's default); filters double there.
  strides = [1, 2, 2] + [1] * max(0, blocks - 3)
  filters, f = [], width
  for s in strides[:blocks]:
    f = f * 2 if s == 2 else f
    filters.append(f)
  return {"filters": filters, "strides": strides[:blocks]}


def candidate(family: str, resolution: int, **knobs) -> dict:
  """A candidate from a family's knobs (the same names `suggest` draws).

  Args:
    family: one of `FAMILIES`.
    resolution: square input size.
    **knobs: resnet: `blocks`, `widths` (one per stage); ds_cnn: `blocks`, `width`;
      mobilenet_v2: `width_multiplier`, `expansion`, `blocks` (one per stage).

  Returns:
    {"family", "kwargs" (the builder's arguments), "resolution"}.
  """
  if family == "resnet":
    kwargs = {"blocks": list(knobs["blocks"]), "filters": list(knobs["widths"])}
  elif family == "ds_cnn":
    kwargs = _ds_cnn_kwargs(knobs["blocks"], knobs["width"])
  elif family == "mobilenet_v2":
    kwargs = {"width_multiplier": float(knobs["width_multiplier"]),
              "expansion": int(knobs["expansion"]), "blocks": list(knobs["blocks"])}
  else:
    raise ConfigError(f"Unknown family {family!r} in search.space.families: choose from "
                      f"{list(FAMILIES)}.")
  return {"family": family, "kwargs": kwargs, "resolution": int(resolution)}


def candidate_key(cand: dict) -> str:
  """A short stable name of a candidate's architecture (family + hash), for caches and folders."""
  return f"{cand['family']}_{cand['resolution']}_{files.json_digest(cand)}"


def describe(cand: dict) -> str:
  """One readable line, e.g. 'resnet blocks=[1, 2, 1] filters=[16, 32, 64] @32'."""
  knobs = " ".join(f"{k}={v}" for k, v in sorted(cand["kwargs"].items()))
  return f"{cand['family']} {knobs} @{cand['resolution']}"


def resolutions(space, data_size: int) -> list:
  """The square input sizes to search: `space.resolutions`, or the data's own size."""
  sizes = [int(r) for r in space.resolutions] or [data_size]
  too_big = [r for r in sizes if r > data_size or r < 8]
  if too_big:
    raise ConfigError(f"search.space.resolutions {too_big} are outside 8..{data_size} (the data's "
                      "image size): downscaling only; remove them.")
  return sizes


def check_space(space) -> None:
  """Raises `ConfigError` for an empty space or a family with an empty or inverted range."""
  if not space.families:
    raise ConfigError("search.space.families is empty: the search has nothing to try. Name at "
                      f"least one of {list(FAMILIES)}.")
  for family in space.families:
    if family not in FAMILIES:
      raise ConfigError(f"Unknown family {family!r} in search.space.families: choose from "
                        f"{list(FAMILIES)}.")
    block = space[family]
    for name, values in block.items():
      if not len(values):
        raise ConfigError(f"search.space.{family}.{name} is empty: give at least one value.")
    lo, hi = block.blocks
    if not 1 <= lo <= hi:
      raise ConfigError(f"search.space.{family}.blocks=({lo}, {hi}) must be a range 1 <= lo <= hi.")


def _stages(prefix: str) -> list:
  return [f"{prefix}{s + 1}" for s in range(STAGES)]


# Each family's knobs (`candidate`'s arguments) and the Optuna parameters `suggest` draws for
# them, a list where the knob has one value per stage.
PARAMS = {
    "resnet": {"blocks": _stages("resnet_blocks"), "widths": _stages("resnet_width")},
    "ds_cnn": {"blocks": "ds_cnn_blocks", "width": "ds_cnn_width"},
    "mobilenet_v2": {"width_multiplier": "mobilenet_v2_width",
                     "expansion": "mobilenet_v2_expansion",
                     "blocks": _stages("mobilenet_v2_blocks")},
}


# The space's key of each knob's values (block counts are the `blocks` range).
_VALUES = {"widths": "widths", "width": "widths", "width_multiplier": "width_multipliers",
           "expansion": "expansions"}


def _allowed(block, knob: str):
  """A knob's values in one family's part of the space."""
  if knob == "blocks":
    lo, hi = block.blocks
    return range(lo, hi + 1)
  return tuple(block[_VALUES[knob]])


def _draw(trial, name: str, allowed):
  if isinstance(allowed, range):
    return trial.suggest_int(name, allowed.start, allowed.stop - 1)
  return trial.suggest_categorical(name, list(allowed))


def suggest(trial, space, data_size: int) -> dict:
  """Draws one candidate with an Optuna trial (define-by-run; knobs depend on the family).

  Args:
    trial: an `optuna.Trial`.
    space: `config.search.space`.
    data_size: the data's image size (height = width), the largest resolution.

  Returns:
    A candidate dict (see `candidate`).
  """
  family = trial.suggest_categorical("family", list(space.families))
  sizes = resolutions(space, data_size)
  resolution = trial.suggest_categorical("resolution", sizes) if len(sizes) > 1 else sizes[0]
  knobs = {}
  for knob, names in PARAMS[family].items():
    allowed = _allowed(space[family], knob)
    if isinstance(names, list):
      knobs[knob] = [_draw(trial, name, allowed) for name in names]
    else:
      knobs[knob] = _draw(trial, names, allowed)
  return candidate(family, resolution, **knobs)


def start_params(space, data_size: int, point) -> dict:
  """Optuna's parameters for one `search.start_from` entry, checked against the space.

  Args:
    space: `config.search.space`.
    data_size: the data's image size, the largest resolution.
    point: `candidate`'s arguments as a dict, e.g. `dict(family="resnet", resolution=32,
      blocks=(1, 1, 1), widths=(16, 32, 64))`; `resolution` may be left out when the space
      has only one.

  Returns:
    The parameters `suggest` draws, for `optuna.Study.enqueue_trial`.

  Raises:
    ConfigError: naming what is missing, unknown or outside the space.
  """
  if not isinstance(point, collections.abc.Mapping):
    raise ConfigError(f"search.start_from: {point!r} is not a dict of a candidate's knobs. Fix: "
                      "a tuple of dicts, (dict(family=..., resolution=..., ...),); on the command "
                      "line mind the comma after the last one.")
  point = dict(point)
  family, sizes = point.pop("family", None), resolutions(space, data_size)
  if family not in space.families:
    raise ConfigError(f"search.start_from: family={family!r} is not in search.space.families "
                      f"{list(space.families)}. Fix: name one of them, or add it to the space.")
  resolution = point.pop("resolution", sizes[0] if len(sizes) == 1 else None)
  if resolution is None or set(point) != set(PARAMS[family]):
    raise ConfigError(f"search.start_from: a {family} start point takes family, "
                      f"{', '.join(PARAMS[family])} and resolution (one of {sizes}), not "
                      f"{sorted(point) + (['resolution'] if resolution else [])}.")

  def pick(knob, value, allowed):
    # The space's own value, so that 1 and 1.0 are one value to Optuna's check for repeats.
    match = [a for a in allowed if a == value]
    if not match:
      raise ConfigError(f"search.start_from: {family} {knob}={value!r} is outside search.space "
                        f"({list(allowed)}). Fix: change the start point or widen the space.")
    return match[0]

  params = {"family": family}
  resolution = pick("resolution", resolution, sizes)
  if len(sizes) > 1:
    params["resolution"] = resolution
  for knob, names in PARAMS[family].items():
    allowed, value = _allowed(space[family], knob), point[knob]
    if not isinstance(names, list):
      params[names] = pick(knob, value, allowed)
    elif isinstance(value, (list, tuple)) and len(value) == STAGES:
      params.update({name: pick(knob, v, allowed) for name, v in zip(names, value)})
    else:
      raise ConfigError(f"search.start_from: {family} {knob}={value!r} needs one value per "
                        f"stage ({STAGES}).")
  return params


def smallest_candidates(space, data_size: int) -> list:
  """Each family at its smallest knobs and the smallest resolution: the space's cheapest models."""
  check_space(space)
  resolution = min(resolutions(space, data_size))
  smallest = []
  for family in space.families:
    block = space[family]
    lo = block.blocks[0]
    if family == "resnet":
      smallest.append(candidate(family, resolution, blocks=[lo] * STAGES,
                                widths=[min(block.widths)] * STAGES))
    elif family == "ds_cnn":
      smallest.append(candidate(family, resolution, blocks=lo, width=min(block.widths)))
    else:
      smallest.append(candidate(family, resolution, width_multiplier=min(block.width_multipliers),
                                expansion=min(block.expansions), blocks=[lo] * STAGES))
  return smallest


def build_candidate(cand: dict, num_classes: int, channels: int, normalization=None, name=None):
  """The candidate as an uncompiled tf_keras model taking `resolution`² pixels in [0, 255]."""
  size = cand["resolution"]  # the family names are tfkd.models.MODELS names
  model = models.build_model(cand["family"], num_classes, (size, size, channels),
                             normalization=normalization, **cand["kwargs"])
  model._name = name or "student"  # pylint: disable=protected-access
  return model
