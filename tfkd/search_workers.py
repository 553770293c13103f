"""Several trial workers on one machine, each pinned to its share of the cores.

  python -m tfkd.search --config=configs/cifar10_search.py --workdir=runs/search --workers=2

`tfkd.search` starts them (`--workers`) after the teacher and its cached views exist;
they share the study storage as workers on several machines do (docs/search.md), and
the starting process then runs whatever the studies still lack and the winners, on all
cores.
"""

import multiprocessing
import os
import signal

from absl import logging

from tfkd.errors import ConfigError


def local_workers(search_class, config, workdir: str, workers: int, seeded: bool = True) -> None:
  """Runs every study's trials in `workers` processes, each pinned to its share of the cores.

  TensorFlow does not train a search-sized student twice as fast on two cores as on one:
  one process pinned to each core trained 1.1-1.3 times as many steps a second as one on
  both (`bench/core_split.py`, BENCHMARKS §19), and the trials' conversions and TFLM runs
  are single-threaded. A worker that fails leaves its trials to the others and the caller.

  Args:
    search_class: `tfkd.search.Search` (passed, since that module starts this one).
    config: the search's config (every key).
    workdir: the search's folder, whose teacher and cached views exist already.
    workers: how many processes; at most the cores this process may use.
    seeded: seed the first worker's sampler (`study`); the others never are.
  """
  cores = check_cores(workers)
  context = multiprocessing.get_context("spawn")  # a fresh TensorFlow in each
  procs = []
  try:
    for index in range(workers):
      # A child inherits its parent thread's cores, and its TensorFlow sizes its threads to them.
      os.sched_setaffinity(0, cores[index::workers])
      procs.append(context.Process(target=_trials_worker, name=f"search-worker-{index}",
                                   args=(search_class, config, workdir, seeded and index == 0)))
      procs[-1].start()
  finally:
    os.sched_setaffinity(0, cores)
  for proc in procs:
    proc.join()
    if proc.exitcode:
      logging.warning("[search] %s %s; its studies go on here.%s", proc.name,
                      _how_it_ended(proc.exitcode), _abort_hint(proc.exitcode))


def check_cores(workers: int) -> list:
  """The cores this process may use; raises `ConfigError` unless 1 <= `workers` <= that many."""
  cores = sorted(os.sched_getaffinity(0))
  if not 1 <= workers <= len(cores):
    raise ConfigError(f"--workers={workers}, but this process may use {len(cores)} cores: "
                      f"give 1 to {len(cores)} (one per core).")
  return cores


def _trials_worker(search_class, config, workdir: str, seeded: bool) -> None:
  """One of `local_workers`' processes: every study's trials, nothing more."""
  logging.use_absl_handler()  # absl's lines, with their times, as the starting process writes
  logging.set_verbosity(logging.INFO)
  logging.info("[search] worker %d on cores %s", os.getpid(), sorted(os.sched_getaffinity(0)))
  searcher = search_class(config, workdir)
  if "distill" in config.search.modes:
    searcher.teacher_views()
  for device in config.search.devices:
    for mode in config.search.modes:
      searcher.search_device(device, mode, seeded)


def _how_it_ended(exitcode: int) -> str:
  """'ended with exit code 3', or for a negative code (multiprocessing's signal) its name."""
  if exitcode < 0:
    try:
      return f"was killed by {signal.Signals(-exitcode).name}"
    except ValueError:
      return f"was killed by signal {-exitcode}"
  return f"ended with exit code {exitcode}"


def _abort_hint(exitcode: int) -> str:
  """What a worker's abort is known to come from, if the environment makes it likely."""
  if (-exitcode in (signal.SIGABRT, signal.SIGSEGV)
      and os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"):
    # TensorFlow 2.21's oneDNN kernels corrupt the heap training a stem under 8 filters on
    # one thread, as a pinned worker trains; glibc then aborts, or a later access faults
    # (BENCHMARKS.md §20).
    return (" TF_ENABLE_ONEDNN_OPTS=1 is set, and TensorFlow 2.21 with oneDNN aborts training a "
            "model whose stem has fewer than 8 filters on one thread (BUILD.md): unset it, or keep "
            "every family's narrowest width in search.space at 8 filters or more.")
  return ""
