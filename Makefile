# Two commands for a fresh machine (see README):
#   make repro   set everything up, then run the default pipeline (dvc repro)
#   make test    set everything up, then run the whole test suite (what CI runs)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, pinned: on CPU machines here 2.13.0 resolves to the local CPU build; an
# unpinned torch pulls gigabytes of CUDA wheels. GPU machines: see README ("GPU set-up").
TORCH  ?= torch==2.13.0
PIP    := $(BIN)/python -m pip
# Stages run `python stages/...`: the venv's python must be the one on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro test test-fast

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e '.[dev]'
	# DeepSpeed is an sdist whose build imports torch, so it cannot build in isolation.
	$(PIP) install --quiet --no-build-isolation 'deepspeed>=0.16'
	touch $@

repro: setup
	dvc repro

test: setup
	pytest

test-fast: setup
	pytest -m "not slow"
