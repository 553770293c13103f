"""Trial workers on one machine: a worker that dies is reported by how it died."""

import logging
import os
import resource

import pytest

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


@pytest.mark.parametrize("onednn", ["1", None])
def test_an_aborted_worker_is_named_by_its_signal_with_onednns_known_abort(
    tmp_path, monkeypatch, caplog, onednn):
  if onednn:
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
  else:
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
  with caplog.at_level(logging.WARNING):
    search_workers.local_workers(_AbortingSearch, defaults.get_config(), str(tmp_path), 1)
  assert "search-worker-0 was killed by SIGABRT; its studies go on here." in caplog.text
  hint = "TF_ENABLE_ONEDNN_OPTS=1 is set, and TensorFlow 2.21 with oneDNN aborts"
  assert (hint in caplog.text) == bool(onednn)


def test_a_worker_that_raises_is_named_by_its_exit_code(tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    search_workers.local_workers(_FailingSearch, defaults.get_config(), str(tmp_path), 1)
  assert "search-worker-0 ended with exit code 1; its studies go on here." in caplog.text
  assert "TF_ENABLE_ONEDNN_OPTS" not in caplog.text
