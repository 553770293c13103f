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

import hashlib
import json

from tfkd import models
from tfkd.errors import ConfigError

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
  text = json.dumps(cand, sort_keys=True)
  return f"{cand['family']}_{cand['resolution']}_{hashlib.sha1(text.encode()).hexdigest()[:10]}"


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
  block = space[family]
  lo, hi = block.blocks
  if family == "resnet":
    return candidate(family, resolution,
                     blocks=[trial.suggest_int(f"resnet_blocks{s + 1}", lo, hi) for s in range(STAGES)],
                     widths=[trial.suggest_categorical(f"resnet_width{s + 1}", list(block.widths))
                             for s in range(STAGES)])
  if family == "ds_cnn":
    return candidate(family, resolution, blocks=trial.suggest_int("ds_cnn_blocks", lo, hi),
                     width=trial.suggest_categorical("ds_cnn_width", list(block.widths)))
  return candidate(
      family, resolution,
      width_multiplier=trial.suggest_categorical("mobilenet_v2_width", list(block.width_multipliers)),
      expansion=trial.suggest_categorical("mobilenet_v2_expansion", list(block.expansions)),
      blocks=[trial.suggest_int(f"mobilenet_v2_blocks{s + 1}", lo, hi) for s in range(STAGES)])


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
