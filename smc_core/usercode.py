"""The user's code: where it is, what its entry point is, and how that entry point is run."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path


class EntryKind(str, enum.Enum):
    """How an entry point is run (the container contract's "entry point kinds")."""

    PYTHON = "python"
    """``*.py``: ``python <file> args...``"""
    MODULE = "module"
    """A package (``setup.py`` / ``pyproject.toml``): installed, then ``python -m <module> args...``"""
    SHELL = "shell"
    """``*.sh``: ``/bin/sh <file> args...``"""
    COMMAND = "command"
    """Anything else: run as an executable command with the arguments."""
    FUNCTION = "function"
    """Function mode: import the module and call ``train(**hyperparameters)`` in-process."""


@dataclass(frozen=True)
class UserCode:
    """The user's code, ready in ``code_dir``, as ``fetch_user_code`` describes it.

    Attributes:
        code_dir: the directory holding the code; the working directory of the user's processes.
        entry_point: the entry point as given (``train.py``, ``run.sh``, a module name), or None
            when the job names none.
        kind: how the entry point is run.
        module_name: the entry point without its suffix (``train`` for ``train.py``): SM_MODULE_NAME.
        source: where the code came from (``s3://...``, a local path), or None for the code dir as is.
    """

    code_dir: Path
    entry_point: str | None
    kind: EntryKind
    module_name: str | None = None
    source: str | None = None


def entry_kind(code_dir: Path, entry_point: str) -> EntryKind:
    """The :class:`EntryKind` of ``entry_point`` inside ``code_dir``, by the contract's rules."""
    if entry_point.endswith(".py"):
        return EntryKind.PYTHON
    if entry_point.endswith(".sh"):
        return EntryKind.SHELL
    if (code_dir / "setup.py").exists() or (code_dir / "pyproject.toml").exists():
        return EntryKind.MODULE
    return EntryKind.COMMAND


def module_name(entry_point: str | None) -> str | None:
    """``train`` for ``train.py`` or ``train.sh``; the entry point itself otherwise."""
    if entry_point is None:
        return None
    for suffix in (".py", ".sh"):
        if entry_point.endswith(suffix):
            return entry_point[: -len(suffix)]
    return entry_point
