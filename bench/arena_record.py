r"""Is TFLM's allocation record the smallest arena? Random candidates of a search space.

  .venv/bin/python -m bench.arena_record --config=configs/cifar10_search.py --candidates=40

`tflite.micro.find_arena_size` starts from TFLM's allocation record of one run with a generous
arena and confirms it with two probes (that size runs, 16 bytes less does not). Before, it
searched from 1 KiB: doubling until a size ran, then bisecting to 16 bytes. For each of
--candidates architectures drawn at random from the config's search space (int8, calibrated on
random pixels), this runs both, checks they agree, and times them. Writes arena_record.{md,json,png}
to --out.
"""

import os
import time

import numpy as np
import optuna
from absl import flags
from ml_collections import config_flags

from bench import common
from tfkd import cli, from_config, search_space
from tflite import convert, files, micro

_CONFIG = config_flags.DEFINE_config_file("config", "configs/cifar10_search.py", "Search config.")
_OUT = flags.DEFINE_string("out", "runs/bench_arena_record", "Output folder.")
_CANDIDATES = flags.DEFINE_integer("candidates", 40, "Architectures to draw.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampler seed.")


def search_from_1kib(model_bytes: bytes, granularity: int = 16) -> tuple:
  """(size, probes): the search find_arena_size did before it read the record."""
  probes = [0]

  def works(size):
    probes[0] += 1
    return micro.runs_with_arena(model_bytes, size)

  failing, working = 0, 1024
  while not works(working):
    failing, working = working, working * 2
  while working - failing > granularity:
    middle = (failing + working) // 2 // granularity * granularity
    if works(middle):
      working = middle
    else:
      failing = middle
  return working, probes[0]


def plot(rows, path: str) -> str:
  fig, ax = files.new_figure(figsize=(6, 4))
  ax.scatter([r["record"] / 1024 for r in rows], [r["search_s"] for r in rows],
             label="search from 1 KiB (before)")
  ax.scatter([r["record"] / 1024 for r in rows], [r["find_arena_size_s"] for r in rows],
             label="record, confirmed (find_arena_size now)")
  ax.set_xlabel("arena (KiB)")
  ax.set_ylabel("seconds per model")
  ax.legend()
  return files.save_figure(fig, path)


def main(argv):
  del argv
  meta = common.provenance("bench.arena_record")
  config = from_config.with_defaults(_CONFIG.value)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=_SEED.value))
  rng = np.random.default_rng(_SEED.value)
  rows = []
  for i in range(_CANDIDATES.value):
    cand = search_space.suggest(study.ask(), config.search.space,
                                data_size=max(config.search.space.resolutions))
    model = search_space.build_candidate(cand, 10, 3, normalization=([120.0] * 3, [4000.0] * 3))
    size = cand["resolution"]
    model_bytes = convert.convert(
        model, "int8", rng.uniform(0, 255, (16, size, size, 3)).astype(np.float32))
    inputs = micro._zero_inputs(micro.tflite_graph.read(model_bytes))  # pylint: disable=protected-access
    record = micro._allocations(model_bytes, micro._GENEROUS_ARENA, inputs)["total"]  # pylint: disable=protected-access
    start = time.perf_counter()
    searched, probes = search_from_1kib(model_bytes)
    search_s = time.perf_counter() - start
    start = time.perf_counter()
    arena = micro.find_arena_size(model_bytes)
    rows.append({"candidate": search_space.describe(cand), "record": record, "searched": searched,
                 "found": arena.size, "smaller_fails": arena.smaller_fails,
                 "search_probes": probes, "search_s": search_s,
                 "find_arena_size_s": time.perf_counter() - start})
    print(f"[{i + 1}/{_CANDIDATES.value}] {rows[-1]}", flush=True)
  equal = sum(r["record"] == r["searched"] == r["found"] for r in rows)
  lines = [f"{equal} of {len(rows)} candidates: the record, the search from 1 KiB and "
           "find_arena_size give the same arena.", "",
           f"Median seconds per model: search from 1 KiB "
           f"{np.median([r['search_s'] for r in rows]):.2f} "
           f"(median {np.median([r['search_probes'] for r in rows]):.0f} probes), find_arena_size "
           f"{np.median([r['find_arena_size_s'] for r in rows]):.2f}.", "",
           "| candidate | record (B) | search from 1 KiB (B) | find_arena_size (B) | probes before | "
           "s before | s now |", "|---|---:|---:|---:|---:|---:|---:|",
           *[f"| {r['candidate']} | {r['record']} | {r['searched']} | {r['found']} | "
             f"{r['search_probes']} | {r['search_s']:.2f} | {r['find_arena_size_s']:.2f} |"
             for r in rows], "",
           f"Plot: {plot(rows, os.path.join(_OUT.value, 'arena_record.png'))}"]
  common.write_table(_OUT.value, "arena_record", meta, lines, rows)


if __name__ == "__main__":
  cli.run(main)
