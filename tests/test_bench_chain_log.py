"""bench.chain_log reads the chain's log: each step's stages, over attempts, each epoch once."""

import time

from bench import chain_log
from tfkd import training


def epoch_line(stage: str, epoch: int, seconds: float, monkeypatch) -> str:
  """The line `training.EpochProgress` logs at the end of `epoch` (0-based) of `stage`."""
  progress, logged = training.EpochProgress(stage, 3), []
  monkeypatch.setattr(training.time, "time", lambda: 1000.0)
  progress.on_epoch_begin(epoch)
  monkeypatch.setattr(training.time, "time", lambda: 1000.0 + seconds)
  monkeypatch.setattr(training.logging, "info", lambda message, *args: logged.append(message % args))
  progress.on_epoch_end(epoch, {"loss": 1.0})
  monkeypatch.undo()
  return "I1130 05:00:00.0 1 training.py:134] " + logged[-1]


def test_a_resumed_step_counts_each_epoch_once_and_only_its_own(tmp_path, monkeypatch):
  lines = [
      "[chain] e80: starting 2026-11-30T03:16:00Z",
      epoch_line("distill", 0, 22, monkeypatch),
      "I1130 ... pipeline.py:218] === stage distill finished in 23s ===",
      "[chain] e80_live: starting 2026-11-30T05:33:00Z",
      epoch_line("distill", 0, 50, monkeypatch),
      epoch_line("distill", 1, 451, monkeypatch),  # paused, then the process stopped
      "[chain] e80_live: starting 2026-11-30T05:55:00Z",  # resumed: epoch 2 runs again
      epoch_line("distill", 1, 45, monkeypatch),
      epoch_line("distill", 2, 47, monkeypatch),
      "I1130 ... pipeline.py:218] === stage distill finished in 95s ===",
      "I1130 ... pipeline.py:218] === stage export finished in 8s ===",
  ]
  log = tmp_path / "chain.log"
  log.write_text("\n".join(lines) + "\n")

  live = chain_log.step_times(str(log), "e80_live")
  assert live["distill"]["seconds"] == 50 + 45 + 47  # not the 451 s of the stopped attempt
  assert sorted(live["distill"]["epoch_seconds"]) == [45, 47, 50]
  assert live["export"] == {"seconds": 8, "epoch_seconds": []}
  assert chain_log.step_times(str(log), "e80")["distill"]["seconds"] == 22
  assert chain_log.step_times(str(log), "e80_cycle20") == {}


def test_attempt_seconds_leave_out_the_hours_between_sessions(tmp_path):
  lines = [
      "[chain] robust: starting 2026-11-30T12:00:00Z",
      "I1130 12:30:00.000000 1 training.py:134] [ard] epoch 1/20 60s",
      "[chain] search: starting 2026-11-30T13:00:00Z",
      "I1130 13:10:00.000000 1 search.py:194] [search mlperf_tiny/distill] trial 1 of 30",
      "I0000 00:00:1796042331.779732   21347 cuda_platform.cc:52] failed call to cuInit",
      "I1130 14:55:30.500000 1 training.py:134] [distill_resnet_32_ab_e15] epoch 3/15 20s",
      "[chain] search: starting 2026-12-01T09:00:00Z",  # the next session, 18 h later
      "I1201 09:00:05.000000 1 search.py:194] [search mlperf_tiny/distill] trial 1 of 30",
      "[I 2026-12-01 09:40:00,000] Trial 7 finished",  # Optuna's own lines are not read
      "I1201 10:15:00.000000 1 search.py:194] [search small_mcu/scratch] trial 30 of 30",
      "[chain] search: finished 2026-12-01T10:15:01Z after 75 min (this attempt)",
  ]
  log = tmp_path / "chain.log"
  log.write_text("\n".join(lines) + "\n")
  assert chain_log.attempt_seconds(str(log), "search") == [115 * 60 + 30, 75 * 60]
  assert chain_log.attempt_seconds(str(log), "robust") == [30 * 60]
  assert chain_log.attempt_seconds(str(log), "e80") == []


def test_attempt_seconds_read_the_utc_start_against_absl_local_times(tmp_path, monkeypatch):
  # The chain stamps its starts in UTC; absl writes local time. At UTC+9, 12:30 local is
  # 03:30 UTC, half an hour after the start.
  monkeypatch.setenv("TZ", "Etc/GMT-9")  # POSIX sign: 9 hours east of Greenwich
  time.tzset()
  try:
    log = tmp_path / "chain.log"
    log.write_text("[chain] search: starting 2026-11-30T03:00:00Z\n"
                   "I1130 12:30:00.000000 1 search.py:194] [search a/distill] trial 1 of 3\n")
    assert chain_log.attempt_seconds(str(log), "search") == [30 * 60]
  finally:
    monkeypatch.undo()
    time.tzset()
