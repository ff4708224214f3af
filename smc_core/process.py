"""Running and supervising the user's processes, and the outcome they produce."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainingResult:
    """What ``invoke_train`` returns: how the user's code ended.

    Attributes:
        exit_code: 0 on success; the user's own exit code otherwise (``128 + signal`` when killed).
        command: the command that ran (for the failure file), or None in function mode.
        failure: the reason to report when ``exit_code`` is not 0 (the stderr tail, a traceback).
        model: in function mode, the object ``train()`` returned, for the adapter to save.
        details: facts a plugin wants to pass on (host, rank of the failing process ...).
    """

    exit_code: int
    command: Sequence[str] | None = None
    failure: str | None = None
    model: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def python_executable() -> str:
    """The interpreter user scripts run with: the one running smc."""
    return sys.executable


def run_process(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None
) -> TrainingResult:
    """Run ``command`` (never through a shell) and return its :class:`TrainingResult`."""
    completed = subprocess.run(list(command), env=dict(env), cwd=cwd, check=False)
    code = completed.returncode
    if code < 0:
        code = 128 - code
    return TrainingResult(exit_code=code, command=list(command))


def current_environ() -> dict[str, str]:
    """A copy of this process's environment."""
    return dict(os.environ)
