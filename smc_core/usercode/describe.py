"""The user's code: where it is, what its entry point is, and how that entry point is run."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from smc_core.base.settings import FUNCTION_MODE
from smc_core.job.environment import TrainingEnv, module_name
from smc_core.job.hyperparameters import is_true


class EntryKind(str, enum.Enum):
    """How an entry point is run (the container contract's "entry point kinds")."""

    PYTHON = "python"
    """``*.py``: ``python <file> args...``"""
    MODULE = "module"
    """A package (``setup.py`` / ``pyproject.toml``): installed, then ``python -m <module> args...``"""
    SHELL = "shell"
    """``*.sh``: run as ``./<file> args...`` (``$0`` is ``./train.sh``, as in the reference toolkit)
    through the interpreter its ``#!`` line names (``#!/bin/bash``), else ``/bin/sh``; it need not be
    executable. torchrun's launch honours the ``#!`` line the same way (``entry_command``)."""
    COMMAND = "command"
    """Anything else: run as an executable command with the arguments."""
    FUNCTION = "function"
    """Function mode: import the module and call ``train(...)`` in-process (see
    :mod:`smc_core.launch.functions`; switched on by ``SMC_FUNCTION_MODE=1`` or the hyperparameter
    ``sagemaker_function_mode``)."""


@dataclass(frozen=True)
class UserCode:
    """The user's code, ready in ``code_dir``, as ``fetch_user_code`` describes it.

    Attributes:
        code_dir: the directory holding the code; the working directory of the user's processes.
        entry_point: the entry point as given (``train.py``, ``run.sh``, a module name), or None
            when the job names none.
        kind: how the entry point is run.
        module_name: the name that imports the entry point, for ``python -m`` (:attr:`EntryKind.MODULE`)
            and function mode: :func:`import_name` (``pkg.train`` for ``pkg/train.py``), or None when
            there is no entry point. Not ``SM_MODULE_NAME``, which keeps the ``/``
            (:func:`~smc_core.job.environment.module_name`).
        source: where the code came from (``s3://...``, a local path), or None for the code dir as is.
    """

    code_dir: Path
    entry_point: str | None
    kind: EntryKind
    module_name: str | None = None
    source: str | None = None


def is_package(code_dir: Path) -> bool:
    """True when ``code_dir`` holds an installable package: a ``setup.py``, or a ``pyproject.toml``
    with a ``[project]`` or ``[build-system]`` table (one holding only tool settings does not count)."""
    if (code_dir / "setup.py").is_file():
        return True
    try:
        text = (code_dir / "pyproject.toml").read_text(errors="replace")
    except OSError:
        return False
    return any(line.strip() in ("[project]", "[build-system]") for line in text.splitlines())


def entry_kind(code_dir: Path, entry_point: str) -> EntryKind:
    """The :class:`EntryKind` of ``entry_point`` inside ``code_dir``, by the contract's rules, in order:
    ``*.sh`` is a shell script; in a package (:func:`is_package`) the entry point is a module run with
    ``python -m``; ``*.py`` is a Python script; anything else is an executable command."""
    if entry_point.endswith(".sh"):
        return EntryKind.SHELL
    if is_package(code_dir):
        return EntryKind.MODULE
    if entry_point.endswith(".py"):
        return EntryKind.PYTHON
    return EntryKind.COMMAND


def import_name(entry_point: str | None) -> str | None:
    """The name that imports ``entry_point`` (``python -m``, function mode):
    :func:`~smc_core.job.environment.module_name` with
    ``/`` as ``.`` (``pkg.train`` for ``pkg/train.py``); None for None."""
    name = module_name(entry_point)
    return None if name is None else name.replace("/", ".")


FUNCTION_MODE_HYPERPARAMETER = "sagemaker_function_mode"


def function_mode(training_env: TrainingEnv) -> bool:
    """True when the job asks for function mode: the setting ``SMC_FUNCTION_MODE`` when it is set
    (``training_env.settings[FUNCTION_MODE]``; ``SMC_FUNCTION_MODE=0`` turns it off), else the
    hyperparameter ``sagemaker_function_mode`` set to true."""
    if training_env.settings.is_set(FUNCTION_MODE):
        return bool(training_env.settings[FUNCTION_MODE])
    return is_true(training_env.additional_framework_parameters.get(FUNCTION_MODE_HYPERPARAMETER, False))


def describe_user_code(training_env: TrainingEnv, *, source: str | None = None) -> UserCode:
    """The :class:`UserCode` for the code in ``training_env.code_dir`` and the job's entry point
    (function mode as :func:`function_mode` says; on a ModelTrainer layout a ``*.py`` entry script runs
    as a script, as the SDK's drivers run it, even where the code dir is a package)."""
    code_dir = training_env.code_dir
    entry = training_env.user_entry_point
    if function_mode(training_env):
        kind = EntryKind.FUNCTION
    elif training_env.model_trainer is not None and (entry or "").endswith(".py"):
        kind = EntryKind.PYTHON  # as the SDK's drivers run it, even in a package's source dir
    else:
        kind = entry_kind(code_dir, entry or "")
    return UserCode(
        code_dir=code_dir, entry_point=entry, kind=kind, module_name=import_name(entry), source=source
    )
