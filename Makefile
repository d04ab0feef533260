# Two commands for a fresh machine (see README):
#   make repro   set everything up, then run the default pipeline (dvc repro)
#   make test    set everything up, then run the whole test suite (what CI runs)
# and one for maintainers:
#   make lock    recompile requirements*.lock from pyproject.toml (UPGRADE=1 to take new releases)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The environment is the lock, exactly: every package pinned with its hashes and installed
# without resolution (--no-deps), so two machines get the same files and dvc.lock reproduces.
# torch is its own lock so that a GPU machine can swap in a CUDA build (README, "GPU set-up"):
#   make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= --require-hashes --no-deps -r requirements-torch-cpu.lock
LOCKS  := requirements-build.lock requirements-torch-cpu.lock requirements.lock
# Stages run `python -m stages...`: the venv's python must be the one on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro test test-fast lock

setup: $(VENV)/.installed

# build.lock first: the sdists in main.lock (deepspeed imports torch in its build) are built
# with --no-build-isolation, so setuptools, wheel and torch must already be there.
$(VENV)/.installed: pyproject.toml $(LOCKS)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps -r requirements-build.lock
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet --require-hashes --no-deps --no-build-isolation -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $@

repro: setup
	dvc repro

test: setup
	pytest

test-fast: setup
	pytest -m "not slow"

# pip-compile keeps the pins already in a lock unless UPGRADE=1. main.lock leaves out torch (its
# own lock, swapped on GPU machines) and is constrained by it and by build.lock, so the three agree.
COMPILE = $(BIN)/pip-compile --quiet --generate-hashes --strip-extras \
	--no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)
lock: setup
	$(COMPILE) --allow-unsafe -o requirements-build.lock requirements-build.in
	$(COMPILE) --allow-unsafe -o requirements-torch-cpu.lock requirements-torch-cpu.in
	$(COMPILE) --extra dev --extra deepspeed --extra spark --unsafe-package torch \
		-c requirements-build.lock -c requirements-torch-cpu.lock -o requirements.lock pyproject.toml
