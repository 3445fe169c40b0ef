# trot: `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.trot-installed

.PHONY: venv demo train-demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU torch first: the wheel on this disk; a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[train,test,ros]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/trot deploy --sim

train-demo: venv
	$(BIN)/trot demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: venv lint
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/env_throughput.py
	$(BIN)/python bench/runtime_latency.py policies/go2_flat
	$(BIN)/python bench/ros_timing.py
	$(BIN)/python bench/replay_speed.py

clean:
	rm -rf $(VENV) out runs
