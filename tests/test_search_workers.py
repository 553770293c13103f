"""Trial workers on one machine: a worker that dies is reported by how it died."""

import logging
import os
import resource
import signal

from configs import defaults
from tfkd import search_workers


class _AbortingSearch:
  """Stands for `tfkd.search.Search` in a worker: aborts as TensorFlow's heap check does."""

  def __init__(self, config, workdir):
    del config, workdir
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
    os.abort()


class _FailingSearch:
  """Stands for `tfkd.search.Search` in a worker: raises."""

  def __init__(self, config, workdir):
    raise RuntimeError(f"no study in {workdir}")


def test_an_aborted_worker_is_named_by_its_signal_and_onednns_known_abort(
    tmp_path, monkeypatch, caplog):
  monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
  with caplog.at_level(logging.WARNING):
    search_workers.local_workers(_AbortingSearch, defaults.get_config(), str(tmp_path), 1)
  assert "search-worker-0 was killed by SIGABRT; its studies go on here." in caplog.text
  assert "TF_ENABLE_ONEDNN_OPTS=1 is set, and TensorFlow 2.21 with oneDNN aborts" in caplog.text


def test_a_worker_that_raises_is_named_by_its_exit_code(tmp_path, monkeypatch, caplog):
  monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
  with caplog.at_level(logging.WARNING):
    search_workers.local_workers(_FailingSearch, defaults.get_config(), str(tmp_path), 1)
  assert "search-worker-0 ended with exit code 1; its studies go on here." in caplog.text
  assert "TF_ENABLE_ONEDNN_OPTS" not in caplog.text  # no abort, no hint


def test_the_onednn_hint_is_for_an_abort_or_segfault_with_onednn_on(monkeypatch):
  abort_hint = search_workers._abort_hint  # pylint: disable=protected-access
  monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
  assert abort_hint(-signal.SIGABRT) == ""
  monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
  assert "fewer than 8 filters" in abort_hint(-signal.SIGSEGV)
  assert abort_hint(-signal.SIGKILL) == ""
