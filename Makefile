# Every target sets itself up: a fresh machine needs only python3 (3.10+), pip and git.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
TORCH  ?= torch==2.13.0
# The reference toolkit, for the conformance suite's differential check (tests/conformance).
REFERENCE_VENV ?= .venv-reference
REFERENCE      ?= sagemaker-training==5.1.4

# The oldest and newest supported Python, besides the one above (3.11), for the core's suite.
CORE_PYTHONS ?= 3.10 3.13

.PHONY: setup reference test test-pythons lint typecheck run-example bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned: a bare `torch` requirement would pull a CUDA build of several GB.
$(VENV)/.installed: $(BIN)/python pyproject.toml plugins/pytorch/pyproject.toml
	$(BIN)/pip install -q "$(TORCH)" numpy
	$(BIN)/pip install -q -e ".[test]" -e plugins/pytorch
	touch $@

setup: $(VENV)/.installed

$(REFERENCE_VENV)/.installed:
	$(PYTHON) -m venv $(REFERENCE_VENV)
	$(REFERENCE_VENV)/bin/pip install -q "$(REFERENCE)"
	touch $@

reference: $(REFERENCE_VENV)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

## The test command: lint, types, the whole suite, then the core's suite on the other Pythons.
test: lint typecheck reference
	SMC_REFERENCE_PYTHON=$(abspath $(REFERENCE_VENV))/bin/python $(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) test-pythons

## The core's suite (tests/) on Python $(CORE_PYTHONS), each in .venv-pyXY (see .ci/test-pythons).
test-pythons: setup
	.ci/test-pythons $(CORE_PYTHONS)

## The run command: a real training job end to end through `smc local` (PyTorch example).
run-example: setup
	$(BIN)/smc local examples/pytorch --entry-point train.py --hyperparameter epochs=3

## Benchmarks against the reference toolkit (see benchmarks/RESULTS.md).
bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(REFERENCE_VENV) .venv-py3* .smc .pytest_cache .mypy_cache .ruff_cache
