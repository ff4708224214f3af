"""The system's limits on a command line, checked before launching so that a too-large value is named.

Linux refuses ``execve`` with E2BIG ("Argument list too long") when one argument or environment
string exceeds ``MAX_ARG_STRLEN`` (32 pages, 128 KiB) or all of them together exceed ``ARG_MAX``.
A hyperparameter reaches the user's process three times (as ``--name value``, in ``SM_HP_NAME`` and
in ``SM_HPS``/``SM_TRAINING_ENV``), so a large one hits these limits first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from smc_core.errors import ConfigError

__all__ = ["MAX_ARG_STRLEN", "check_exec_limits"]

MAX_ARG_STRLEN = 32 * 4096
"""Linux's limit on one argument or environment string, its terminating NUL included."""


def _arg_max() -> int:
    try:
        return int(os.sysconf("SC_ARG_MAX"))
    except (ValueError, OSError):
        return 2 * 1024 * 1024


def check_exec_limits(
    command: Sequence[str], env: Mapping[str, str], hyperparameters: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`ConfigError` (exit 2) when ``command`` with ``env`` would exceed the system's limits.

    :param hyperparameters: the job's hyperparameters, to name the one that is too large.
    """
    strings = [*command, *(f"{k}={v}" for k, v in env.items())]
    too_long = [s for s in strings if len(s.encode("utf-8", "surrogateescape")) + 1 > MAX_ARG_STRLEN]
    total = sum(len(s.encode("utf-8", "surrogateescape")) + 1 + 8 for s in strings)  # +8: the pointer
    if not too_long and total <= _arg_max():
        return
    large = sorted(
        (
            (len(json.dumps(v)) if not isinstance(v, str) else len(v), k)
            for k, v in (hyperparameters or {}).items()
        ),
        reverse=True,
    )
    named = [k for size, k in large if size * 3 + 1 > MAX_ARG_STRLEN // 4 or size > MAX_ARG_STRLEN // 2][:3]
    what = (
        f"the hyperparameter{'s' if len(named) > 1 else ''} {', '.join(repr(n) for n in named)} "
        f"({', '.join(f'{size} characters' for size, k in large if k in named)})"
        if named
        else "the command line and environment"
    )
    limit = (
        f"one argument or variable may hold {MAX_ARG_STRLEN - 1} bytes"
        if too_long
        else f"all arguments and variables together {_arg_max()} bytes"
    )
    raise ConfigError(
        f"{what[0].upper()}{what[1:]} too large to pass to the training process: the system refuses to start "
        f"a program whose {limit} (the value reaches it as --argument, SM_HP_* and SM_HPS). Put the data "
        "in a file in an input channel (or in the code dir) and pass its name as the hyperparameter instead."
    )
