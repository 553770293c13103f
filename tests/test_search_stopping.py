"""What the search's early stopping cost: the cheap check and the closest calls trained on."""

import os

import optuna

from tests.conftest import write_image_folder
from tests.test_search import _search_config
from tfkd import from_config, pipeline, search, search_space, search_stopping, search_trial
from tfkd.errors import TrainingError

_TRAINED, _STOPPED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def _trial(state, status, curve, cand=None, value=None):
  return optuna.trial.create_trial(
      state=state, value=value, intermediate_values=dict(enumerate(curve)),
      user_attrs={"status": status, **({"candidate": cand} if cand else {})})


def _resnet(width):
  return search_space.candidate("resnet", 16, blocks=(1, 1, 1), widths=(width, width, width))


def test_early_stopping_table_ranks_each_stop_epoch_against_the_last():
  st = optuna.create_study(direction="maximize")
  finals = (0.6, 0.7, 0.8, 0.9)
  # At epoch 2 the trained trials rank the other way round; at epoch 3 alike, with a tie.
  for second, third, last in zip((0.4, 0.3, 0.2, 0.1), (0.5, 0.5, 0.6, 0.7), finals):
    st.add_trial(_trial(_TRAINED, "trained", (0.1, second, third, 0.5, last), value=last))
  # Read from another study's folder: its epochs were replayed only up to this study's stop,
  # and its value is its 5th epoch's.
  read = _trial(_TRAINED, "trained", (0.1, 0.05), value=0.95)
  read.set_user_attr("result", {"epochs": 5, "read": True})
  st.add_trial(read)
  for stop_step in (1, 1, 2):
    st.add_trial(_trial(_STOPPED, "stopped", [0.1] * (stop_step + 1)))
  lines = search_stopping.stopping_lines({("tiny", "distill"): st})
  # Tied ranks share their mean: (0.5, 0.5, 2, 3) against (0, 1, 2, 3) gives 0.95, not 1.
  assert lines[2:] == ["| tiny | distill | 2 | 2 | -1.00 | 5 |",
                       "| tiny | distill | 3 | 1 | 0.95 | 4 |"]


def test_closest_calls_are_the_best_reading_stopped_trials_per_epoch_once_each():
  st = optuna.create_study(direction="maximize")
  st.add_trial(_trial(_TRAINED, "trained", (0.2, 0.9, 0.95), _resnet(4), value=0.95))
  st.add_trial(_trial(_STOPPED, "stopped", (0.3, 0.4), _resnet(8)))         # 1
  st.add_trial(_trial(_STOPPED, "stopped", (0.3, 0.6), _resnet(12)))        # 2: best at epoch 2
  st.add_trial(_trial(_STOPPED, "stopped", (0.5,), _resnet(16)))            # 3: best at epoch 1
  st.add_trial(_trial(_STOPPED, "stopped", (0.2,), _resnet(20)))            # 4
  st.add_trial(_trial(_STOPPED, "stopped", (0.3, 0.6), _resnet(12)))        # 5: read again
  st.add_trial(_trial(_TRAINED, "repeated", (0.2, 0.9, 0.95), _resnet(4), value=0.95))
  assert [t.number for t in search_stopping.closest_calls(st)] == [3, 2]
  assert [t.number for t in search_stopping.closest_calls(st, per_epoch=2)] == [3, 4, 2, 1]


def test_the_closest_calls_train_on_in_their_own_folder_and_are_ranked(tmp_path, monkeypatch):
  data = write_image_folder(tmp_path / "images", per_class=(20, 4))
  workdir, out = str(tmp_path / "run"), str(tmp_path / "stopped")
  config = from_config.with_defaults(_search_config(data, modes=("scratch", "distill"), epochs=2))
  config.teacher.model, config.teacher.epochs = "resnet8", 1
  config.distill.cached_teacher, config.distill.cache_epochs = True, 2
  config.distill.check_teacher = False  # a 1-epoch teacher's BatchNorm has not settled
  searcher = search.Search(config, workdir)
  pipeline.stage_teacher(searcher.run)  # as the search did before its trials
  studies = {}
  for mode in ("scratch", "distill"):
    st = studies["mlperf_tiny", mode] = search.study(config.search, workdir, "mlperf_tiny", mode)
    # Trained values outside [0, 1] pin the rank: below the first, above the second.
    for value in (1.01, -0.01):
      st.add_trial(_trial(_TRAINED, "trained", (0.5, value), _resnet(4), value=value))
    st.add_trial(_trial(_STOPPED, "stopped", (0.25,), _resnet(8)))
  # Another device's study stopped the same architecture and trained none.
  other = studies["other", "scratch"] = search.study(config.search, workdir, "other", "scratch")
  other.add_trial(_trial(_STOPPED, "stopped", (0.3,), _resnet(8)))
  before = {key: [(t.number, t.state) for t in st.trials] for key, st in studies.items()}
  rows = search_stopping.continue_stopped(searcher, studies, 1, out)
  assert {key: [(t.number, t.state) for t in st.trials] for key, st in studies.items()} == before
  assert [(r["mode"], r["trial"], r["stop_epoch"], r["rank"]) for r in rows] == [
      ("scratch", 2, 1, 2), ("distill", 2, 1, 2), ("scratch", 0, 1, None)]
  assert rows[2]["history"] == rows[0]["history"]  # trained once, read by the other study
  assert search_stopping.continued_lines(rows)[-1].endswith("| – | none trained |")
  (setup,) = os.listdir(os.path.join(out, "trials"))  # one training setup, one folder
  name = f"{search_space.candidate_key(_resnet(8))}_e2"
  folders = {mode: os.path.join(out, "trials", setup, f"{mode}_{name}")
             for mode in ("scratch", "distill")}
  for r in rows:
    assert r["history"] == search_trial.history_accuracies(folders[r["mode"]])
    assert len(r["history"]) == 2 and r["diverged"] is None
    assert r["val_accuracy"] == r["history"][-1] and 0.0 <= r["test_accuracy"] <= 1.0
    # The search's own folder for that architecture stays as the search left it.
    assert not os.path.exists(search_trial.trial_dir(workdir, _resnet(8), r["mode"], 2))
  # Only the distilled one learned from the teacher's cached views.
  losses = {}
  for mode, folder in folders.items():
    with open(os.path.join(folder, "history.csv")) as f:
      losses[mode] = f.readline().strip().split(",")
  assert "distillation_loss" in losses["distill"] and "distillation_loss" not in losses["scratch"]
  # Run again, they are read, not trained.
  monkeypatch.setattr(search_trial.training, "fit_resumable", None)  # would raise if called
  assert search_stopping.continue_stopped(searcher, studies, 1, out) == rows
  assert search_stopping.continued_lines(rows)[2].endswith("| 101.00% | 2 of 3 |")
  plot = search_stopping.continued_plot(studies, rows, os.path.join(out, "stopped.png"))
  assert os.path.getsize(plot) > 10_000
  # A run that diverges leaves a row saying so, and the others stand.
  def diverge(run, cand, mode, *args):
    if mode == "distill":
      raise TrainingError("[distill] the loss became nan at epoch 2: lower the learning rate")
    return real_train(run, cand, mode, *args)
  real_train = search_trial.train_candidate
  monkeypatch.setattr(search_trial, "train_candidate", diverge)
  rows = search_stopping.continue_stopped(searcher, studies, 1, out)
  assert [(r["rank"], r["diverged"]) for r in rows] == [
      (2, None), (None, "[distill] the loss became nan at epoch 2"), (None, None)]
  assert search_stopping.continued_lines(rows)[3].endswith(
      "| – | – | 101.00% | diverged: [distill] the loss became nan at epoch 2 |")
