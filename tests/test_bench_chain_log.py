"""bench.chain_log reads the chain's log: each step's stages, over attempts, each epoch once."""

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
