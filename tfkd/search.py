r"""The most accurate student that fits a device: a budget search over students, on Optuna.

  python -m tfkd.search --config=configs/cifar10_search.py --workdir=runs/search \
      [--config.search.devices='("small_mcu",)'] [--config.search.modes='("distill",)'] \
      [--workers=2]

For each device profile (`search.profiles`: flash, TFLM arena, optional latency
and MACs) and each mode (distilled from the teacher's cached views, or from
scratch) one Optuna study draws candidates from `search.space`
(`tfkd.search_space`). Each candidate is converted to int8 and measured on the
real tools before training (`tfkd.candidate_cost`); one that does not fit is
rejected untrained, with the reason. The others train `search.epochs` epochs
(`tfkd.search_trial`), reporting validation accuracy each epoch to a Hyperband
pruner that stops weak trials. The best trial of each study is then retrained
for the full schedule, exported int8 and as a C array, and verified on LiteRT
and TFLite Micro; the report (`tfkd.search_report`) holds every architecture tried and the
Pareto plots.

The teacher is trained (or reused) in `workdir/teacher/` and labels
`distill.cache_epochs` epochs of training views once (`workdir/teacher_views/`):
a distilled candidate's epoch costs about a plain student epoch.

Resuming and several machines: the studies live in Optuna storage, an SQLite
file `workdir/search/studies.db` by default, so rerunning the command continues
where it stopped (a trial killed mid-training is retried, resuming its epochs).
For several machines give every worker the same `--workdir` on a shared
filesystem and one database server:

  # every machine (the first one also retrains the winners and writes the report):
  python -m tfkd.search --config=configs/cifar10_search.py --workdir=/shared/search \
      --config.search.storage=postgresql://user:pass@dbhost/tfkd [--trials_only]
"""

import collections
import os
import time
import warnings

import optuna
import sqlalchemy
from absl import flags, logging
from ml_collections import config_flags

from tfkd import candidate_cost, cli, config_checks, from_config, pipeline, search_report
from tfkd import search_space, search_trial, search_workers
from tfkd.errors import ConfigError, TrainingError
from tfkd.run_context import Run, make_workdir
from tflite import files

MODES = ("distill", "scratch")
# A worker that stops sending heartbeats this long has its running trial retried.
HEARTBEAT_SECONDS, GRACE_SECONDS = 60, 300


def storage(search_config, workdir: str):
  """The Optuna storage of a search: `search.storage`, or SQLite in `workdir/search/`."""
  url = search_config.storage
  if not url:
    os.makedirs(os.path.join(workdir, "search"), exist_ok=True)
    url = "sqlite:///" + os.path.abspath(os.path.join(workdir, "search", "studies.db"))
  # SQLite: wait for another worker's write instead of failing at once ("database is locked").
  engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
  with warnings.catch_warnings():  # the retry callback is marked experimental since Optuna 2.8
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    # The retried trial replays its epochs' reports from its folder's history as it resumes
    # there (`search_trial`), so it does not inherit them.
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
  for attempt in range(5):
    try:
      return optuna.storages.RDBStorage(
          url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
          grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=retry)
    except sqlalchemy.exc.SQLAlchemyError:
      # Workers starting together race to create the schema; the loser finds it made.
      if attempt == 4:
        raise
      time.sleep(1 + attempt)


def study(search_config, workdir: str, device: str, mode: str, seeded: bool = True) -> optuna.Study:
  """The study of one device and mode, created or continued.

  Args:
    search_config: `config.search`.
    workdir: the search's folder (the default SQLite storage lives there).
    device, mode: the study's device profile and mode; its name is f"{device}_{mode}".
    seeded: seed the sampler with `search.seed` plus the study's trials so far. Extra
      workers of a shared study are not seeded: with one seed they would all propose the
      same candidates.
  """
  st = optuna.create_study(
      storage=storage(search_config, workdir), study_name=f"{device}_{mode}", direction="maximize",
      load_if_exists=True,
      pruner=optuna.pruners.HyperbandPruner(min_resource=search_config.min_epochs,
                                            max_resource=search_config.epochs,
                                            reduction_factor=search_config.reduction_factor))
  # Seeded by how far the study got: a resumed search draws new candidates instead of
  # replaying the first session's draws (each a repeat).
  st.sampler = optuna.samplers.TPESampler(
      seed=search_config.seed + len(st.get_trials(deepcopy=False)) if seeded else None,
      multivariate=True, group=True)
  return st


class Search:
  """One search run: the data, the teacher's cached views, and the config's budgets.

  Args:
    config: a config with every key (`from_config.with_defaults`).
    workdir: the search's folder (teacher, cached views, trials, studies, report).
  """

  def __init__(self, config, workdir: str):
    if config.distribute == "multiworker":
      # Each worker would draw its own trials from the shared study and wait for the others'.
      raise ConfigError("tfkd.search does not train one candidate across several workers "
                        "(config.distribute='multiworker'): leave config.distribute empty and "
                        "start one search per machine on a shared --workdir and study storage "
                        "(docs/search.md, 'Several machines'), each training its own "
                        "candidates.")
    self.config, self.workdir = config, workdir
    self.run = Run(config, workdir)
    if len(self.run.splits.input_shape) != 3:
      raise ConfigError("tfkd.search searches image students: data.source must give images.")
    self.data_size = self.run.splits.input_shape[0]
    self.cost_dir = cost_dir(workdir, config.export, self.run.splits)
    # Before the teacher trains (hours), so that a typo costs seconds.
    modes = list(config.search.modes)
    if not modes or set(modes) - set(MODES):
      raise ConfigError(f"search.modes={modes}: choose one or both of {list(MODES)}.")
    if not config.search.devices:
      raise ConfigError("search.devices is empty: name at least one of search.profiles "
                        f"{sorted(config.search.profiles)}.")
    for device in config.search.devices:
      self.budget(device)
    search_space.check_space(config.search.space)
    search_space.resolutions(config.search.space, self.data_size)
    self.start_params = [search_space.start_params(config.search.space, self.data_size, point)
                         for point in config.search.start_from]
    self.train_config = config.train.copy_and_resolve_references()
    self.train_config.epochs = config.search.epochs
    self.teacher_logits = None

  def budget(self, device: str):
    if device not in self.config.search.profiles:
      raise ConfigError(f"Unknown device {device!r} in search.devices: the profiles are "
                        f"{sorted(self.config.search.profiles)}. Fix: name one of them, or add a "
                        "profile (flash_bytes, arena_bytes, latency_ms, macs) to search.profiles.")
    return self.config.search.profiles[device]

  def teacher_views(self):
    """The teacher's logits for its cached views ([E, N, classes]), loaded once, for 'distill'."""
    if self.teacher_logits is None:
      self.teacher_logits = self.run.teacher_view_logits()
      if self.teacher_logits is None:
        raise ConfigError("The distill mode of tfkd.search trains from the teacher's cached "
                          "views: set distill.cached_teacher=True (or distill.teacher_logits_path).")
    return self.teacher_logits

  def cost(self, cand: dict, device: str) -> dict:
    return candidate_cost.measure(
        cand, lambda c: search_trial.build(self.run, c),
        search_trial.representative_inputs(self.run, cand["resolution"]),
        self.cost_dir, self.budget(device),
        self.config.search.latency_runs,
        for_export=lambda model: from_config.for_export(self.config.export, model))

  def check_device(self, device: str) -> None:
    """Raises `ConfigError` when not even the space's smallest candidates fit the device."""
    smallest = [(self.cost(c, device), c)
                for c in search_space.smallest_candidates(self.config.search.space, self.data_size)]
    if all(cost["rejected"] for cost, _ in smallest):
      needs = "; ".join(f"{search_space.describe(c)}: {cost['rejected']}" for cost, c in smallest)
      if all(_reason_kind(cost["rejected"]) in ("int8 conversion", "TFLM ops")
             for cost, _ in smallest):
        fix = ("they do not build, convert to int8 or run on TFLite Micro, so the budget is not "
               "the problem: drop those families, or raise search.space.resolutions")
      else:
        fix = ("allow smaller models (fewer blocks, narrower widths, lower "
               "search.space.resolutions) or a larger budget")
      raise ConfigError(f"No candidate of search.space fits device {device!r}: even the smallest "
                        f"ones do not ({needs}). Fix: {fix}.")

  def objective(self, trial, device: str, mode: str) -> float:
    cand = search_space.suggest(trial, self.config.search.space, self.data_size)
    trial.set_user_attr("candidate", cand)
    trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
    cost = self.cost(cand, device)
    trial.set_user_attr("cost", {k: v for k, v in cost.items() if k != "rejected"})
    if cost["rejected"]:
      trial.set_user_attr("status", "rejected")
      trial.set_user_attr("reason", cost["rejected"])
      raise optuna.TrialPruned(cost["rejected"])
    earlier = _earlier_trial(trial, cand)
    if earlier is not None:  # this study has its outcome: a new candidate is worth more
      trial.set_user_attr("status", "repeated")
      trial.set_user_attr("reason", f"repeats trial {earlier.number}")
      if "result" in earlier.user_attrs:
        trial.set_user_attr("result", earlier.user_attrs["result"])
      # Ended as pruned, a repeat ranks with the bad draws, so TPE moves on to other
      # architectures. Told the earlier value (Optuna's FAQ), it fills TPE's "good" group with
      # copies of the best, drawn again and again (optuna#2021); told nothing (FAIL), TPE does
      # not change and draws it again too (BENCHMARKS §19).
      raise optuna.TrialPruned(f"repeats trial {earlier.number}")
    try:
      # Trained by another study of this mode (another device), it is read, not trained again.
      result = search_trial.train_candidate(self.run, cand, mode, self.train_config, trial,
                                            self.teacher_logits if mode == "distill" else None)
    except TrainingError as e:  # a diverged candidate ends its trial, not the search
      trial.set_user_attr("status", "diverged")
      trial.set_user_attr("reason", str(e).split(":")[0])
      raise optuna.TrialPruned(str(e)) from e
    trial.set_user_attr("result", result)
    trial.set_user_attr("status", result["status"])
    if result["status"] == "stopped":
      raise optuna.TrialPruned(f"stopped after {result['epochs']} epochs")
    return result["val_accuracy"]

  def search_device(self, device: str, mode: str, seeded: bool = True) -> optuna.Study:
    """Runs one study until it has `search.trials` trained (or stopped) trials."""
    self.check_device(device)
    st = study(self.config.search, self.workdir, device, mode, seeded)
    wanted = self.config.search.trials
    tally = search_report.counts(st)
    done_at_start = tally["trained"] + tally["stopped"] + tally["diverged"]
    will_run = done_at_start < wanted and not _limit_reached(st, self.config.search)
    untried = queue_start_points(st, self.start_params, will_run) if seeded else []
    if untried and not will_run:  # extra workers leave the queue to the first (seeded) one
      logging.warning("[search %s/%s] start points %s not tried: the study has ended. Raise "
                      "search.trials to try them.", device, mode, untried)

    def progress(st, frozen):
      tally = search_report.counts(st)
      done = tally["trained"] + tally["stopped"] + tally["diverged"]
      best = _best(st)
      rejected, drawn_again = _draws(st)
      logging.info("[search %s/%s] trial %d of %d (%d architectures rejected, %d stopped "
                   "early, %d drawn again); best val %s; ETA %s", device, mode, done, wanted,
                   rejected, tally["stopped"], drawn_again,
                   f"{best.value:.2%} ({search_space.describe(best.user_attrs['candidate'])})"
                   if best else "-", eta(st, wanted))
      if done >= wanted:
        st.stop()
      elif reason := _limit_reached(st, self.config.search):
        logging.warning("[search %s/%s] %s: stopping with %d trained.", device, mode, reason,
                        done)
        st.stop()

    if will_run:
      st.optimize(lambda trial: self.objective(trial, device, mode), callbacks=[progress],
                  gc_after_trial=True)
    if not _best(st):
      logging.warning(_nothing_trained(st, device, mode))
    return st

  def run_all(self, trials_only: bool = False, workers: int = 1):
    """Teacher and cached views, every study, then (unless `trials_only`) winners and report.

    Args:
      trials_only: only run trials (an extra worker of a shared study).
      workers: processes here running the trials, one per share of the cores (`search_workers`).

    Returns:
      ({(device, mode): optuna.Study}, {(device, mode): winner dict (`verify_winner`)}).
    """
    modes = list(self.config.search.modes)
    search_workers.check_cores(workers)  # before the teacher trains
    if "distill" in modes:
      if trials_only:  # extra workers use the first worker's teacher; they never train one
        self.run.require([self.run.teacher_file()], "search (--trials_only)")
      pipeline.stage_teacher(self.run)
      self.teacher_views()
    if workers > 1:
      search_workers.local_workers(Search, self.config, self.workdir, workers, not trials_only)
    studies = {(device, mode): self.search_device(device, mode, seeded=not trials_only)
               for device in self.config.search.devices for mode in modes}
    # A study without a trained trial gets a line in the report; only if all are empty is
    # there nothing to report.
    if not any(_best(st) for st in studies.values()):
      raise ConfigError(" ".join(_nothing_trained(st, *key) for key, st in studies.items()))
    if trials_only:
      return studies, {}
    latencies = search_report.time_candidates(self, studies)
    winners = {key: search_report.verify_winner(self, st, *key, latencies)
               for key, st in studies.items()}
    search_report.write_report(self, studies, winners, latencies)
    return studies, winners


def cost_dir(workdir: str, export_config, splits) -> str:
  """The cost cache of a search: `workdir/search/costs/<what shapes the int8 file>/`.

  A candidate's flash, arena and latency depend on the export settings (e.g. folding the
  input normalisation) and on the data's classes and channels as well as its architecture,
  so a search rerun in the same workdir after changing them measures afresh.
  """
  shaping = {"export": export_config.to_dict(), "classes": splits.num_classes,
             "input_shape": list(splits.input_shape)}
  return os.path.join(workdir, "search", "costs", files.json_digest(shaping))


def queue_start_points(st: optuna.Study, start_params, will_run: bool = True) -> list:
  """Queues the start points (`search_space.start_params`) a study has not tried yet.

  Args:
    st: the study.
    start_params: Optuna parameters, one dict per start point.
    will_run: False for a study that has ended: nothing is queued (it would wait unseen).

  Returns:
    The start points the study has not tried (queued now, if `will_run`).
  """
  tried = [t.system_attrs.get("fixed_params", t.params) for t in st.get_trials(deepcopy=False)]
  untried = [params for params in start_params if params not in tried]
  for params in untried if will_run else ():
    st.enqueue_trial(params, user_attrs={"start_point": True})
  return untried


def eta(st: optuna.Study, wanted: int) -> str:
  """A study's time to go: its trials' time per trial it trained, times the trials left.

  The trials' time is every session's (`search_report.study_summary`), so a restart, or a
  trial resumed for its last epochs, does not skew it. A trial read from another study's
  folder took seconds and does not count as trained; other workers' running trials share
  what is left.

  Args:
    st: the study.
    wanted: the trials it is to have (`search.trials`).
  """
  summary = search_report.study_summary(st)
  done = summary["trained"] + summary["stopped"] + summary["diverged"]
  reads = sum(1 for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                                optuna.trial.TrialState.PRUNED))
              if t.user_attrs.get("status") in ("trained", "stopped")
              and t.user_attrs.get("result", {}).get("read"))
  if done <= reads:
    return "after the first trained trial"
  workers = 1 + len(st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
  minutes = summary["trial_minutes"] / (done - reads) * max(0, wanted - done) / workers
  return f"{minutes:.0f} min"


def _limit_reached(st: optuna.Study, search_config) -> str:
  """Why a study ends before `search.trials`, or ''.

  `search.max_rejected` counts the architectures that do not fit the device (each measured
  once, in seconds). `search.max_repeated` counts draws of an architecture the study had
  tried, a fitting one (a repeat, answered from its trial) or a rejected one drawn again
  (its cached cost): each takes under a second, and many mean that TPE has settled.
  """
  rejected, drawn_again = _draws(st)
  if rejected >= search_config.max_rejected:
    return f"{rejected} architectures rejected, not fitting the device (search.max_rejected)"
  if drawn_again >= search_config.max_repeated:
    return (f"{drawn_again} draws of architectures the study had tried (search.max_repeated): "
            "the sampler has settled")
  return ""


def _draws(st: optuna.Study) -> tuple:
  """(architectures rejected, draws of architectures tried before): what the limits count."""
  rejected, again = set(), 0
  for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                 optuna.trial.TrialState.PRUNED)):
    status = t.user_attrs.get("status")
    if status == "rejected":
      key = search_space.candidate_key(t.user_attrs["candidate"])
      again += key in rejected
      rejected.add(key)
    again += status == "repeated"
  return len(rejected), again


def _nothing_trained(st: optuna.Study, device: str, mode: str) -> str:
  """Why a study has no trained trial, and the fix."""
  over = collections.Counter(_reason_kind(t.user_attrs["reason"]) for t in st.get_trials(
      deepcopy=False) if t.user_attrs.get("reason"))
  return (f"The {device}/{mode} study ended without one trained trial (its trials' "
          f"reasons: {', '.join(f'{k} {n}' for k, n in over.most_common()) or 'none'}). Fix: "
          "narrow search.space to models that fit, or raise the limit that ended it "
          "(search.max_rejected or search.max_repeated, in the log).")


def _reason_kind(reason: str) -> str:
  """What a rejection or stop was about, from the first word of its reason
  (`candidate_cost.rejection`, `TrainingError`)."""
  first = reason.split()[0]
  if first.startswith("["):  # a TrainingError names its stage first
    return "diverged"
  return {"does": "int8 conversion", "TFLite": "TFLM ops", "TFLM": "TFLM arena",
          "activations": "activations"}.get(first, first)


def _earlier_trial(trial, cand: dict):
  """The study's trial of the same architecture, finished and not rejected or running, or None.

  A trial that another worker is running counts: the two would train into one folder.
  """
  key = search_space.candidate_key(cand)
  states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.RUNNING)
  for t in trial.study.get_trials(deepcopy=False, states=states):
    running = t.state == optuna.trial.TrialState.RUNNING
    # Of two workers that drew it at once, the one with the earlier trial trains it.
    if ((t.number < trial.number if running else
         t.user_attrs.get("status") not in (None, "rejected")) and "candidate" in t.user_attrs and
        search_space.candidate_key(t.user_attrs["candidate"]) == key):
      return t
  return None


def _best(st: optuna.Study):
  complete = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
  return max(complete, key=lambda t: t.value) if complete else None


FLAGS = flags.FLAGS


def define_flags():
  """The command's flags, defined only when it runs (importing tfkd.search defines none)."""
  config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.")
  flags.DEFINE_string("workdir", None, "Folder for the teacher, trials, studies, report.")
  flags.DEFINE_bool("trials_only", False, "Only run trials (extra workers of a shared study); "
                    "no winner retraining, no report.")
  flags.DEFINE_integer("workers", 1, "Processes on this machine that run the trials, each "
                       "pinned to its share of the cores (at most one per core).")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  config = from_config.with_defaults(FLAGS.config)
  config_checks.validate(config)  # every value and input file, before data is read
  make_workdir(FLAGS.workdir)
  logging.info("Config:\n%s", config)
  Search(config, FLAGS.workdir).run_all(FLAGS.trials_only, FLAGS.workers)


def run():
  """The `tfkd-search` command."""
  define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
