# trot: `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.trot-installed

.PHONY: venv demo train-demo test lint docs docs-check bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU torch first: the wheel on this disk; a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[train,test,ros,docs,unitree]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/trot deploy --sim

train-demo: venv
	$(BIN)/trot demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The node parameter reference (docs/ros/parameters.md) is generated from the parameter dataclasses;
# tests/test_docs.py fails when the committed page is stale.
docs: venv
	$(BIN)/python -m trot.ros_nodes.param_docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-check: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: venv lint docs-check
	$(BIN)/python -m pytest -q --durations=15

bench: venv
	$(BIN)/python bench/env_throughput.py
	$(BIN)/python bench/runtime_latency.py policies/go2_flat
	$(BIN)/python bench/ros_timing.py
	$(BIN)/python bench/replay_speed.py

clean:
	rm -rf $(VENV) out runs site
