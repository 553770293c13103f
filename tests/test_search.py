"""The budget search: its space, cost-before-training, Pareto front, and a shared study."""

import datetime
import os
import re
import shutil
import subprocess
import sys
import time

import ml_collections
import numpy as np
import optuna
import pytest
import tf_keras

from configs import defaults
from tests.conftest import CLASSES, write_image_folder
from tfkd import (batch_norm, candidate_cost, from_config, search, search_report, search_space,
                  search_trial)
from tfkd.errors import ConfigError, TrainingError
from tflite import convert, files, interpreter, micro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_space():
  space = defaults.get_config().search.space
  space.resnet.blocks, space.resnet.widths = (1, 2), (4, 8, 12)
  space.ds_cnn.blocks, space.ds_cnn.widths = (2, 3), (8, 16)
  space.mobilenet_v2.blocks = (1, 1)
  space.mobilenet_v2.width_multipliers, space.mobilenet_v2.expansions = (0.25, 0.5), (2,)
  return space


def _budget(flash=100_000, arena=64 * 1024, latency=0.0, macs=0):
  return ml_collections.ConfigDict(dict(flash_bytes=flash, arena_bytes=arena,
                                        latency_ms=latency, macs=macs))


def _search_config(data_path, **search):
  config = defaults.get_config()
  config.data.path, config.data.image_size, config.data.val_size = data_path, (16, 16), 24
  config.train.batch_size, config.train.learning_rate = 16, 0.05
  config.export.representative_size = 16
  config.report.latency_runs, config.report.parity_samples = 5, 8
  config.report.latency_spread_s = 0.0
  config.search.space = _tiny_space()
  config.search.space.families = ("resnet",)
  config.search.modes, config.search.epochs, config.search.min_epochs = ("scratch",), 1, 1
  config.search.final_epochs, config.search.latency_runs = 1, 5
  config.search.latency_spread_s = 0.0  # the default spreads the final timing over 60 s
  config.search.update(search)
  return config


def test_suggest_draws_every_family_and_each_candidate_runs_int8_on_tflm():
  space = _tiny_space()
  space.resolutions = (16, 12)
  study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
  seen = {}
  for _ in range(30):
    cand = search_space.suggest(study.ask(), space, data_size=16)
    seen.setdefault(cand["family"], cand)
  assert sorted(seen) == sorted(search_space.FAMILIES)
  for cand in seen.values():
    model = search_space.build_candidate(cand, 3, 3, normalization=([100.0] * 3, [900.0] * 3))
    size = cand["resolution"]
    assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, 3)
    x = np.random.default_rng(0).integers(0, 256, (8, size, size, 3)).astype(np.float32)
    model_bytes = convert.convert(model, "int8", x)
    assert micro.check_ops(model_bytes).runs, search_space.describe(cand)
    assert micro.parity(model_bytes, x[:4])["argmax_agreement"] == 1.0


def test_ds_cnn_filters_double_at_stride_two_and_keys_are_stable():
  cand = search_space.candidate("ds_cnn", 32, blocks=5, width=16)
  assert cand["kwargs"] == {"filters": [16, 32, 64, 64, 64], "strides": [1, 2, 2, 1, 1]}
  same = search_space.candidate("ds_cnn", 32, blocks=5, width=16)
  assert search_space.candidate_key(cand) == search_space.candidate_key(same)
  assert search_space.candidate_key(cand) != search_space.candidate_key(
      search_space.candidate("ds_cnn", 24, blocks=5, width=16))


def test_empty_or_inverted_space_is_refused():
  space = _tiny_space()
  space.families = ()
  with pytest.raises(ConfigError, match="families is empty"):
    search_space.smallest_candidates(space, 32)
  space = _tiny_space()
  space.resnet.blocks = (3, 1)
  with pytest.raises(ConfigError, match=r"resnet.blocks=\(3, 1\)"):
    search_space.check_space(space)
  with pytest.raises(ConfigError, match="outside 8..16"):
    search_space.resolutions(ml_collections.ConfigDict(dict(resolutions=(32,))), 16)


def test_a_start_point_is_drawn_first_exactly_and_queued_once(tmp_path):
  config = defaults.get_config().search
  config.space.resolutions = (32, 24)
  points = [dict(family="resnet", resolution=32, blocks=(1, 1, 1), widths=(16, 32, 64)),
            dict(family="mobilenet_v2", resolution=24, width_multiplier=1, expansion=4,
                 blocks=[2, 1, 3]),
            dict(family="ds_cnn", resolution=24, blocks=4, width=24)]
  params = [search_space.start_params(config.space, 32, p) for p in points]
  st = search.study(config, str(tmp_path), "mlperf_tiny", "scratch")
  assert search.queue_start_points(st, params) == params
  for point in points:
    trial = st.ask()
    assert trial.user_attrs["start_point"]
    expected = search_space.candidate(**point)
    assert search_space.suggest(trial, config.space, 32) == expected
    trial.set_user_attr("candidate", expected)
    st.tell(trial, 0.5)
  rows = search_report.trial_rows({("mlperf_tiny", "scratch"): st})
  assert [r["reason"] for r in rows] == ["start point"] * 3
  # A restart queues nothing it has tried; the sampler draws again.
  st = search.study(config, str(tmp_path), "mlperf_tiny", "scratch")
  assert search.queue_start_points(st, params) == []
  assert "start_point" not in st.ask().user_attrs
  # A study that has ended does not queue a new start point; it names it.
  late = search_space.start_params(config.space, 32, dict(points[0], blocks=(2, 1, 1)))
  assert search.queue_start_points(st, [late], will_run=False) == [late]
  assert not st.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_a_start_point_outside_the_space_is_refused_naming_the_knob(tmp_path):
  space = defaults.get_config().search.space
  space.resolutions = (32, 24)
  for point, message in [
      (dict(family="resnet", resolution=32, blocks=(1, 1, 1), widths=(16, 32, 128)),
       r"resnet widths=128 is outside search.space \(\[8, 16, 24, 32, 48, 64\]\)"),
      (dict(family="resnet", resolution=32, blocks=(1, 1), widths=(16, 32, 64)),
       r"resnet blocks=\(1, 1\) needs one value per stage \(3\)"),
      (dict(family="ds_cnn", blocks=4, width=24), r"takes family, blocks, width and resolution"),
      (dict(family="ds_cnn", resolution=20, blocks=4, width=24), r"resolution=20 is outside"),
      (dict(family="ds_cnn", resolution=32, blocks=4, widht=24), r"not \['blocks', 'widht'"),
      (dict(family="vgg", resolution=32), r"family='vgg' is not in search.space.families"),
      # --config.search.start_from="{...}" without the tuple's comma: the dict's keys.
      ("family", r"'family' is not a dict.*\(dict\(family=")]:
    with pytest.raises(ConfigError, match=message):
      search_space.start_params(space, 32, point)
  # Refused by Search before the data's teacher trains.
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  config = from_config.with_defaults(_search_config(
      data, start_from=(dict(family="resnet", blocks=(1, 1, 1), widths=(4, 8, 16)),)))
  with pytest.raises(ConfigError, match=r"resnet widths=16 is outside"):
    search.Search(config, str(tmp_path / "run"))


def test_cost_rejects_before_tflm_and_a_looser_budget_completes_the_cached_measurement(tmp_path):
  cand = search_space.candidate("resnet", 16, blocks=[1, 1, 1], widths=[8, 8, 8])
  built = []

  def build(c):
    built.append(c)
    return search_space.build_candidate(c, 3, 3)

  x = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype(np.float32)
  tight = candidate_cost.measure(cand, build, x, str(tmp_path), _budget(flash=1000), 5)
  assert tight["rejected"].startswith(f"flash {tight['flash_bytes']:,} B > 1,000 B")
  assert tight["arena_bytes"] is None and tight["latency_ms"] is None  # TFLM never ran
  kept = candidate_cost.tflite_path(str(tmp_path), tight["key"])
  assert not os.path.exists(kept)  # only candidates that reached TFLM keep their file
  again = candidate_cost.measure(cand, build, x, str(tmp_path), _budget(flash=2000), 5)
  assert len(built) == 1 and again["flash_bytes"] == tight["flash_bytes"]  # read from the cache
  loose = candidate_cost.measure(cand, build, x, str(tmp_path), _budget(), 5)
  assert len(built) == 2 and loose["rejected"] == ""
  assert loose["arena_bytes"] == micro.find_arena_size(convert.convert(
      candidate_cost.like_trained(build(cand)), "int8", x)).size
  assert loose["arena_bytes"] >= loose["peak_activation_bytes"] and loose["latency_ms"] > 0
  assert os.path.getsize(kept) == loose["flash_bytes"]
  timed = candidate_cost.time_together(str(tmp_path), {loose["key"]: x[0], "never_measured": x[0]},
                                       runs=6, rounds=3, spread_s=0.1)
  assert list(timed) == [loose["key"]] and timed[loose["key"]]["runs"] == 6
  assert 0 < timed[loose["key"]]["p50_quietest_round"]
  small_ram = candidate_cost.measure(cand, build, x, str(tmp_path),
                                     _budget(arena=loose["arena_bytes"] - 16), 5)
  assert small_ram["rejected"] == (f"TFLM arena {loose['arena_bytes']:,} B > "
                                   f"{loose['arena_bytes'] - 16:,} B")


def test_cost_cache_is_not_shared_by_searches_that_export_differently(tmp_path):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  workdir = str(tmp_path / "run")
  cand = search_space.smallest_candidates(_tiny_space(), 16)[0]
  folded = search.Search(from_config.with_defaults(_search_config(data)), workdir)
  config = from_config.with_defaults(_search_config(data))
  config.export.fold_normalization = False
  unfolded = search.Search(config, workdir)
  assert folded.cost_dir != unfolded.cost_dir
  assert folded.cost_dir == search.Search(from_config.with_defaults(_search_config(data)),
                                          workdir).cost_dir
  # The unfolded file keeps its normalisation ops: measured again, not read from the other's.
  assert (unfolded.cost(cand, "mlperf_tiny")["flash_bytes"]
          > folded.cost(cand, "mlperf_tiny")["flash_bytes"])
  fewer_classes = write_image_folder(tmp_path / "fewer", per_class=(20, 4))
  for split in ("train", "test"):
    shutil.rmtree(os.path.join(fewer_classes, split, CLASSES[-1]))
  assert search.Search(from_config.with_defaults(_search_config(fewer_classes)),
                       workdir).cost_dir != folded.cost_dir


def test_pareto_front_matches_brute_force():
  rng = np.random.default_rng(0)
  points = [tuple(p) for p in rng.integers(0, 20, (40, 2))]
  front = set(search_report.pareto_front(points))
  dominated = {p for p in points
               if any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)}
  assert front == set(points) - dominated


def test_device_that_nothing_fits_names_the_smallest_candidates_needs(tmp_path):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  config = from_config.with_defaults(_search_config(data))
  config.search.profiles.tiny = _budget(flash=2000, arena=1024)
  config.search.devices = ("tiny",)
  with pytest.raises(ConfigError, match=r"No candidate of search.space fits device 'tiny'.*"
                                        r"resnet blocks=\[1, 1, 1\] filters=\[4, 4, 4\] @16: flash"):
    search.Search(config, str(tmp_path / "run")).check_device("tiny")


def test_a_bad_device_or_space_is_refused_before_the_teacher_trains(tmp_path):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  workdir = str(tmp_path / "run")
  for search_keys, message in [
      (dict(devices=("mlperf_tinyy",)), r"Unknown device 'mlperf_tinyy' in search.devices"),
      (dict(devices=()), r"search.devices is empty")]:
    config = from_config.with_defaults(_search_config(data, modes=("distill",), **search_keys))
    with pytest.raises(ConfigError, match=message):
      search.Search(config, workdir)
  config = from_config.with_defaults(_search_config(data, modes=("distill",)))
  config.search.space.resnet.blocks = (2, 1)
  with pytest.raises(ConfigError, match=r"resnet.blocks=\(2, 1\)"):
    search.Search(config, workdir)
  # More trial workers than cores, or none: refused before the teacher trains.
  config = from_config.with_defaults(_search_config(data, modes=("distill",)))
  cores = len(os.sched_getaffinity(0))
  for workers in (cores + 1, 0):
    with pytest.raises(ConfigError, match=rf"--workers={workers}, but this process may use "
                                          rf"{cores} cores: give 1 to {cores}"):
      search.Search(config, workdir).run_all(workers=workers)
  assert not os.path.exists(os.path.join(workdir, "teacher"))


def test_candidates_that_do_not_build_are_told_apart_from_a_small_budget(tmp_path, monkeypatch):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  config = from_config.with_defaults(_search_config(data))

  def unbuildable(run, cand):
    raise ValueError("Negative dimension size caused by subtracting 3 from 2")
  monkeypatch.setattr(search_trial, "build", unbuildable)
  with pytest.raises(ConfigError, match=r"@16: does not convert to int8: Negative dimension.*"
                                        r"do not build, convert to int8 or run on TFLite Micro"):
    search.Search(config, str(tmp_path / "run")).check_device("mlperf_tiny")


@pytest.mark.slow
def test_distill_mode_trains_candidates_from_the_teachers_cached_views(tmp_path, monkeypatch):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  reestimated, reestimate = [], batch_norm.reestimate
  monkeypatch.setattr(batch_norm, "reestimate", lambda model, inputs, batches: (
      reestimated.append(batches), reestimate(model, inputs, batches))[1])
  workdir = str(tmp_path / "run")
  config = from_config.with_defaults(_search_config(data, modes=("distill",), trials=1))
  config.teacher.model, config.teacher.epochs = "resnet8", 1
  config.distill.cached_teacher, config.distill.cache_epochs = True, 1
  config.distill.check_teacher = False  # a 1-epoch teacher's BatchNorm has not settled
  studies, winners = search.Search(config, workdir).run_all()
  trained = [t for t in studies["mlperf_tiny", "distill"].get_trials()
             if t.user_attrs.get("status") == "trained"]
  assert trained
  # A candidate's Distiller holds no teacher model (search_trial passes none): a distillation
  # loss is there only if the batches carried the cached views' logits.
  for t in trained:
    folder = search_trial.trial_dir(workdir, t.user_attrs["candidate"], "distill", 1)
    with open(os.path.join(folder, "history.csv")) as f:
      header, *rows = [line.split(",") for line in f.read().split()]
    assert [float(r[header.index("distillation_loss")]) > 0 for r in rows] == [True]
  winner = winners["mlperf_tiny", "distill"]
  assert winner["fits"] == "yes" and 0.0 <= winner["int8_test_accuracy"] <= 1.0
  # Each trial's validation (one epoch each) read re-estimated BatchNorm statistics.
  assert len(reestimated) == len(trained) and set(reestimated) == {20}


def test_a_killed_workers_trial_is_retried_with_its_candidate(tmp_path, monkeypatch):
  # A worker killed mid-trial sends no more heartbeats; past the grace period the next
  # worker marks its trial failed and queues the same candidate again (which then resumes
  # the trial folder's epochs, `search_trial`).
  monkeypatch.setattr(search, "HEARTBEAT_SECONDS", 1)
  monkeypatch.setattr(search, "GRACE_SECONDS", 1)
  config = defaults.get_config().search
  killed = search.study(config, str(tmp_path), "mlperf_tiny", "distill").ask()
  killed.suggest_int("resnet_blocks", 1, 2)
  killed.storage.record_heartbeat(killed._trial_id)  # pylint: disable=protected-access
  time.sleep(2.0)
  st = search.study(config, str(tmp_path), "mlperf_tiny", "distill")
  optuna.storages.fail_stale_trials(st)
  failed, retried = st.get_trials(deepcopy=False)
  assert failed.state == optuna.trial.TrialState.FAIL
  assert retried.state == optuna.trial.TrialState.WAITING
  assert retried.params == failed.params and retried.system_attrs["failed_trial"] == failed.number


class _Killed(Exception):
  pass


class _RecordingTrial:
  """Stands in for an Optuna trial: records the steps and attributes; `kill_at` raises there."""

  def __init__(self, kill_at=None, prune=False):
    self.steps, self.kill_at, self.prune, self.user_attrs = [], kill_at, prune, {}
    self.datetime_start = datetime.datetime.now()

  def report(self, value, step):
    self.steps.append(step)

  def set_user_attr(self, key, value):
    self.user_attrs[key] = value

  def should_prune(self):
    if self.steps[-1] == self.kill_at:
      raise _Killed()
    return self.prune


def test_a_killed_trial_resumes_reporting_its_own_epochs_and_a_saved_one_is_only_scored(
    tmp_path, monkeypatch):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  config = from_config.with_defaults(_search_config(data))
  run = search.Search(config, str(tmp_path / "run")).run
  cand = search_space.smallest_candidates(config.search.space, 16)[0]
  train_config = config.train.copy_and_resolve_references()
  train_config.epochs = 3
  folder = str(tmp_path / "trial")
  # Killed at the end of the second epoch, after its backup was written (the reporter runs last).
  killed = _RecordingTrial(1)
  with pytest.raises(_Killed):
    search_trial.train_candidate(run, cand, "scratch", train_config, killed, folder=folder)
  # Its time up to that epoch is kept: the study's summary counts it (below).
  trained_for = (datetime.datetime.now() - killed.datetime_start).total_seconds()
  assert 0 < killed.user_attrs["seconds_to_last_epoch"] <= trained_for
  retried = _RecordingTrial()
  result = search_trial.train_candidate(run, cand, "scratch", train_config, retried,
                                        folder=folder)
  # Epochs 0 and 1 replayed from the history, then epoch 2 trained and reported at step 2.
  assert retried.steps == [0, 1, 2] and result["epochs"] == 3
  # Killed after saving the model but before its result: scored again, not trained again.
  os.remove(os.path.join(folder, "result.json"))
  monkeypatch.setattr(search_trial.training, "fit_resumable", None)  # would raise if called
  again = _RecordingTrial()
  rescored = search_trial.train_candidate(run, cand, "scratch", train_config, again,
                                          folder=folder)
  assert again.steps == [0, 1, 2] and rescored["status"] == "trained"
  assert rescored["test_accuracy"] == pytest.approx(result["test_accuracy"])
  # Read by a study whose pruner would stop it at once: the result stands, and that study's
  # records get the whole curve, not the epochs up to where its pruner would have stopped.
  strict = _RecordingTrial(prune=True)
  read = search_trial.train_candidate(run, cand, "scratch", train_config, strict, folder=folder)
  assert strict.steps == [0, 1, 2] and read["status"] == "trained" and read["read"]


def _ended_trial(number, state, minutes, attrs, value=None, start=datetime.datetime(2026, 11, 30)):
  return optuna.trial.FrozenTrial(
      number=number, trial_id=number, state=state, value=value, datetime_start=start,
      datetime_complete=start + datetime.timedelta(minutes=minutes), params={}, distributions={},
      user_attrs=attrs, system_attrs={}, intermediate_values={})


def test_study_summary_counts_a_killed_trials_epochs_not_the_hours_until_it_was_found():
  st = optuna.create_study(direction="maximize")
  complete, pruned, fail = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                            optuna.trial.TrialState.FAIL)
  for trial in (_ended_trial(0, complete, 10, {"status": "trained"}, value=0.5),
                _ended_trial(1, pruned, 3, {"status": "stopped"}),
                _ended_trial(2, complete, 0.5, {"status": "rejected"}, value=0.0),
                # Killed after 4 min of epochs; the next session found it stale 18 h later.
                _ended_trial(3, fail, 18 * 60, {"seconds_to_last_epoch": 240.0}),
                _ended_trial(4, fail, 18 * 60, {})):  # killed before its first epoch ended
    st.add_trial(trial)
  summary = search_report.study_summary(st)
  assert summary["trial_minutes"] == pytest.approx(10 + 3 + 0.5 + 4)
  assert [summary[k] for k in ("total", "trained", "stopped", "rejected")] == [3, 1, 1, 1]
  assert summary["rejected_share"] == pytest.approx(1 / 3)
  assert summary["stopped_share"] == pytest.approx(1 / 2)
  table = search_report.study_lines({("tiny", "distill"): st})
  assert table[-1] == "| tiny | distill | 3 | 1 (33%) | 1 | 1 (50%) | 0 | 0 | 17.5 |"


def test_eta_is_the_studys_time_per_trained_trial_times_the_trials_left_shared_by_workers():
  st = optuna.create_study(direction="maximize")
  complete, pruned = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
  read = {"status": "trained", "result": {"read": True}}  # trained by another device's study
  st.add_trial(_ended_trial(0, complete, 0.05, read, value=0.5))
  st.add_trial(_ended_trial(1, pruned, 0.5, {"status": "rejected"}))
  assert search.eta(st, 6) == "after the first trained trial"
  st.add_trial(_ended_trial(2, complete, 10, {"status": "trained", "result": {}}, value=0.5))
  st.add_trial(_ended_trial(3, pruned, 3, {"status": "stopped"}))
  # 13.55 min over the 2 trials trained here; 3 of 6 left.
  assert search.eta(st, 6) == f"{13.55 / 2 * 3:.0f} min"
  st.enqueue_trial({})
  st.ask()  # another worker's running trial: two share what is left
  assert search.eta(st, 6) == f"{13.55 / 2 * 3 / 2:.0f} min"
  assert search.eta(st, 2) == "0 min"


def test_a_resumed_study_draws_new_candidates(tmp_path):
  config = defaults.get_config().search
  first = search.study(config, str(tmp_path), "mlperf_tiny", "scratch").ask()
  x = first.suggest_float("x", 0, 1)
  first.study.tell(first, 0.5)
  # Reopened by a restart: seeded as before, the sampler's first draw would come again.
  again = search.study(config, str(tmp_path), "mlperf_tiny", "scratch").ask()
  assert again.suggest_float("x", 0, 1) != x


def test_repeats_have_their_own_limit_and_other_devices_reuse_trained_trials(
    tmp_path, monkeypatch):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  workdir = str(tmp_path / "run")
  # Repeats do not count as rejections: the study does not end at the first.
  config = from_config.with_defaults(_search_config(data, trials=2, max_rejected=1,
                                                    max_repeated=3))
  config.search.space.resnet.blocks, config.search.space.resnet.widths = (1, 1), (4,)
  config.search.profiles.other = _budget()
  config.search.start_from = (dict(family="resnet", blocks=(1, 1, 1), widths=(4, 4, 4)),)
  searcher = search.Search(config, workdir)
  # The space holds one architecture: the study trains it, then gets it back 3 times.
  st = searcher.search_device("mlperf_tiny", "scratch")
  assert search_report.counts(st) == dict(trained=1, stopped=0, rejected=0, repeated=3, diverged=0)
  assert [bool(t.user_attrs.get("start_point")) for t in st.trials] == [True, False, False, False]
  repeat = st.trials[-1]
  assert repeat.user_attrs["result"] == st.trials[0].user_attrs["result"]
  assert repeat.user_attrs["reason"] == "repeats trial 0"
  # The repeats end pruned: TPE ranks them with the bad draws, not as copies of the trained one.
  assert [t.state.name for t in st.trials] == ["COMPLETE", "PRUNED", "PRUNED", "PRUNED"]
  # A restart does not run the study on: it ended at search.max_repeated.
  assert len(searcher.search_device("mlperf_tiny", "scratch").trials) == 4
  # Another device's study reads the trained architecture instead of training it again.
  monkeypatch.setattr(search_trial.training, "fit_resumable", None)  # would raise if called
  other = searcher.search_device("other", "scratch")
  assert other.trials[0].user_attrs["status"] == "trained"
  assert other.trials[0].value == st.trials[0].value
  row = search_report.trial_rows({("other", "scratch"): other})[0]
  assert row["reason"] == "start point; read, not retrained"
  assert search.eta(other, 2) == "after the first trained trial"  # a read took seconds


def test_an_architecture_another_worker_is_training_is_a_repeat_until_that_trial_fails():
  st = optuna.create_study(direction="maximize")
  cand = {"family": "resnet", "resolution": 16, "kwargs": {"widths": [4] * 3}}
  other = dict(cand, resolution=24)
  training = st.ask()  # another worker's trial, running: it has no status yet
  training.set_user_attr("candidate", cand)
  drawn = st.ask()
  drawn.set_user_attr("candidate", cand)  # as the objective sets it before the check
  earlier = search._earlier_trial(drawn, cand)  # pylint: disable=protected-access
  assert earlier is not None and earlier.number == training.number
  assert search._earlier_trial(drawn, other) is None  # pylint: disable=protected-access
  st.tell(training, state=optuna.trial.TrialState.FAIL)  # its worker died: it is no repeat
  assert search._earlier_trial(drawn, cand) is None  # pylint: disable=protected-access


def test_rejected_architectures_and_draws_of_tried_ones_each_end_a_study_at_their_limit():
  config = defaults.get_config().search
  config.max_rejected, config.max_repeated = 3, 4
  st = optuna.create_study(direction="maximize")
  small, big, huge = ({"family": "resnet", "resolution": 16, "kwargs": {"widths": [w] * 3}}
                      for w in (4, 64, 128))
  def add(status, cand):
    st.add_trial(_ended_trial(len(st.trials), optuna.trial.TrialState.PRUNED, 0.01,
                              {"status": status, "candidate": cand}))
  add("stopped", small)
  for cand in (big, huge, big, huge, big):  # 2 architectures rejected, 3 draws of them again
    add("rejected", cand)
  assert search._limit_reached(st, config) == ""  # pylint: disable=protected-access
  add("repeated", small)  # the 4th draw of a tried architecture
  assert "4 draws of architectures the study had tried (search.max_repeated)" in (
      search._limit_reached(st, config))  # pylint: disable=protected-access
  config.max_repeated = 5
  add("rejected", dict(huge, resolution=24))  # a 3rd architecture that does not fit
  assert "3 architectures rejected" in search._limit_reached(  # pylint: disable=protected-access
      st, config)
  # The report lists each architecture once, with its draws.
  rows = search_report.distinct_rows(search_report.trial_rows({("tiny", "distill"): st}))
  assert [(r["trial"], r["status"], r["drawn"]) for r in rows] == [
      (0, "stopped", 2), (1, "rejected", 3), (2, "rejected", 2), (7, "rejected", 1)]
  # Another worker's repeat can end before the trial it repeats; a budget changed between
  # sessions can reject an architecture, then train it. The row kept is the trained one.
  rows = [dict(device="d", mode="m", architecture=a, status=status, trial=n)
          for n, (a, status) in enumerate((("x", "repeated"), ("y", "rejected"), ("x", "trained"),
                                            ("y", "trained"), ("y", "repeated")))]
  assert [(r["architecture"], r["trial"], r["drawn"]) for r in search_report.distinct_rows(rows)
          ] == [("x", 2, 2), ("y", 3, 3)]


def _worker(data, workdir, *flags):
  overrides = [f"--config.data.path={data}", "--config.data.image_size=(16,16)",
               "--config.data.val_size=24", "--config.train.batch_size=16",
               "--config.export.representative_size=16", "--config.report.latency_runs=5",
               "--config.report.parity_samples=8", "--config.search.space.families=('resnet',)",
               "--config.search.space.resnet.widths=(4,8,12)", "--config.search.modes=('scratch',)",
               "--config.search.trials=3", "--config.search.epochs=1",
               "--config.search.min_epochs=1", "--config.search.final_epochs=1",
               "--config.search.latency_runs=5", "--config.search.latency_spread_s=0.5",
               "--config.train.precision=mixed_bfloat16"]  # trials train in bfloat16
  return subprocess.Popen(
      [sys.executable, "-m", "tfkd.search", "--config=configs/defaults.py", f"--workdir={workdir}",
       *overrides, *flags],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_study_without_a_trained_trial_or_a_diverged_winner_leaves_the_report_standing(
    tmp_path, monkeypatch):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  config = from_config.with_defaults(_search_config(data, trials=1, final_epochs=2))
  config.search.space.resnet.blocks, config.search.space.resnet.widths = (1, 1), (4,)
  config.search.profiles.other = _budget()
  config.search.devices = ("mlperf_tiny", "other")
  searcher = search.Search(config, str(tmp_path / "run"))
  real_train, epochs_trained = search_trial.train_candidate, []

  def train_candidate(run, cand, mode, train_config, *args, **kwargs):
    epochs_trained.append(train_config.epochs)
    # 'other' study's only trial diverges, then mlperf_tiny's winner's 2-epoch retraining.
    if epochs_trained.count(1) == 2 or train_config.epochs == 2:
      e = train_config.epochs
      raise TrainingError(f"[scratch_x_e{e}] the training loss became nan in epoch {e}/{e}: ...")
    return real_train(run, cand, mode, train_config, *args, **kwargs)

  monkeypatch.setattr(search_trial, "train_candidate", train_candidate)
  studies, winners = searcher.run_all()
  assert epochs_trained == [1, 1, 2]
  other_row = search_report.study_lines(studies)[-1]
  assert other_row.startswith("| other | scratch | 1 | 0 (0%) | 0 | 0 (0%) | 0 | 1 |")
  assert winners["other", "scratch"] == {"status": "no trained trial"}
  assert winners["mlperf_tiny", "scratch"] == {
      "status": "retraining diverged: [scratch_x_e2] the training loss became nan in epoch 2/2"}
  with open(os.path.join(searcher.workdir, "search", "report.md")) as f:
    report = f.read()
  assert "| other | scratch | no trained trial |" in report
  assert f"Latency: LiteRT, 1 thread on {interpreter.cpu_name()}, " in report
  assert "| mlperf_tiny | scratch | retraining diverged: [scratch_x_e2]" in report
  assert "| mlperf_tiny | scratch | 1 | 0 (0%) | 1 | 0 (0%) |" in report  # its study's line


def test_a_search_whose_studies_all_diverge_names_why(tmp_path):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  config = from_config.with_defaults(_search_config(data, trials=1))
  config.train.learning_rate = 1e30
  with pytest.raises(ConfigError, match=r"The mlperf_tiny/scratch study ended without one trained "
                                        r"trial \(its trials' reasons: diverged 1\)"):
    search.Search(config, str(tmp_path / "run")).run_all()


@pytest.mark.slow
def test_workers_here_and_on_another_machine_share_one_study_and_the_winner_is_verified(
    tmp_path):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  workdir = str(tmp_path / "run")
  cores = sorted(os.sched_getaffinity(0))
  # The first command runs its trials in one pinned process per core (at most 2); the second
  # stands for another machine's worker.
  workers = [_worker(data, workdir, f"--workers={min(2, len(cores))}"),
             _worker(data, workdir, "--trials_only")]
  logs = [w.communicate(timeout=600)[0] for w in workers]
  for worker, log in zip(workers, logs):
    assert worker.returncode == 0, log[-3000:]
  pinned = dict(re.findall(r"\[search\] worker (\d+) on cores \[([\d, ]+)\]", logs[0]))
  if len(cores) > 1:
    assert sorted(pinned.values()) == [str(cores[0]), str(cores[1])], logs[0][-3000:]
  study = optuna.load_study(study_name="mlperf_tiny_scratch",
                            storage=f"sqlite:///{workdir}/search/studies.db")
  trials = study.get_trials()
  assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
  trained = [t for t in trials if t.user_attrs.get("status") in ("trained", "stopped")]
  assert 3 <= len(trained) <= 5  # the other workers may each finish one trial in flight
  # None run twice: each architecture's epochs were trained once, in one folder.
  folders = [search_trial.trial_dir(workdir, t.user_attrs["candidate"], "scratch", 1)
             for t in trained]
  assert len(set(folders)) == len(folders)
  for folder in folders:
    with open(os.path.join(folder, "history.csv")) as f:
      assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0"]
  winners = files.read_json(os.path.join(workdir, "search", "winners.json"))
  winner = winners["mlperf_tiny/scratch"]
  assert winner["fits"] == "yes" and winner["edge"]["micro"]["arena_bytes"] <= 64 * 1024
  assert winner["edge"]["micro"]["parity_reference_kernels"]["argmax_agreement"] >= 0.875
  assert 0.0 <= winner["int8_test_accuracy"] <= 1.0
  assert all(os.path.exists(p) for p in winner["c_files"])
  # The reported latency is the final timing of all candidates together, in rounds.
  assert winner["edge"]["latency_ms"]["p50_quietest_round"] > 0
  saved = tf_keras.models.load_model(next(
      os.path.join(f, "model.keras") for f in folders if os.path.exists(f"{f}/model.keras")))
  assert {layer.compute_dtype for layer in saved.layers} == {"float32"}  # saved as float32
  with open(os.path.join(workdir, "search", "report.md")) as f:
    report = f.read()
  assert report.count("| mlperf_tiny | scratch |") >= len(trained) + 1
  # Every architecture tried once, with how often it was drawn: all the finished trials.
  table = report.split("## Every architecture tried")[1]
  listed = [line.split(" | ") for line in table.splitlines() if line.startswith("| mlperf_tiny")]
  assert len({row[5] for row in listed}) == len(listed)
  assert sum(int(row[3]) for row in listed) == len(study.get_trials(states=(
      optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
  assert os.path.getsize(os.path.join(workdir, "search", "pareto.png")) > 0
  # Each trial names the worker process that ran it: the first command's pinned ones (or
  # itself, on one core) or the other machine's.
  assert {t.user_attrs["worker"].split(":")[1] for t in trained} <= {
      *pinned, str(workers[0].pid), str(workers[1].pid)}
  progress = re.findall(r"\[search mlperf_tiny/scratch\] trial (\d) of 3 .*; best val "
                        r"[\d.]+% \(resnet .*\); ETA \d+ min", "".join(logs))
  assert max(map(int, progress)) >= 3
