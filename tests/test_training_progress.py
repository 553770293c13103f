"""training.EpochProgress: one line per epoch, its ETA from the run's median epoch."""

from tfkd import training


def test_eta_is_the_median_epoch_times_the_epochs_left(monkeypatch):
  progress, logged, now = training.EpochProgress("teacher", 80), [], [0.0]
  monkeypatch.setattr(training.time, "time", lambda: now[0])
  monkeypatch.setattr(training.logging, "info", lambda message, *args: logged.append(message % args))
  # 160 s epochs, the second one paused for 15 minutes: from the third epoch on, the pause no
  # longer counts.
  for epoch, seconds in enumerate([170, 900, 160, 150]):
    progress.on_epoch_begin(epoch)
    now[0] += seconds
    progress.on_epoch_end(epoch, {"val_accuracy": 0.5})
  assert logged[0].startswith("[teacher] epoch 1/80 170s (ETA 3h44m) val_accuracy=0.5000")
  assert "epoch 2/80 900s (ETA 11h36m)" in logged[1]  # median of 170 and 900: 535 s x 78
  assert "epoch 4/80 150s (ETA 3h29m)" in logged[3]  # the median, 165 s, x 76: the pause is gone


def test_eta_rounds_up_to_whole_minutes(monkeypatch):
  progress, logged, now = training.EpochProgress("student", 2), [], [0.0]
  monkeypatch.setattr(training.time, "time", lambda: now[0])
  monkeypatch.setattr(training.logging, "info", lambda message, *args: logged.append(message % args))
  for epoch in range(2):
    progress.on_epoch_begin(epoch)
    now[0] += 5
    progress.on_epoch_end(epoch)
  assert "(ETA 1m)" in logged[0] and "(ETA 0m)" in logged[1]
