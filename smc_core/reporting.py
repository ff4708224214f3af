"""Reporting the outcome: ``output/success``, ``output/failure`` and the log lines around each step."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from smc_core.errors import SmcError

logger = logging.getLogger("smc")

FAILURE_LIMIT = 1024
"""The platform shows the first 1024 characters of the failure file: the key facts go first."""


def configure_logging(level: int = logging.INFO) -> None:
    """Send smc's log lines to stderr as ``smc INFO: message`` (idempotent)."""
    if not any(getattr(h, "_smc", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("smc %(levelname)s: %(message)s"))
        handler._smc = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


def written_since(path: Path, since: float) -> bool:
    """True when ``path`` exists and was written at or after ``since`` (a ``time.time()``)."""
    try:
        return path.stat().st_mtime >= since - 1
    except FileNotFoundError:
        return False


def write_failure(failure_file: Path, text: str, *, started_at: float | None = None) -> bool:
    """Write ``text`` to ``failure_file`` unless the user's code wrote it during this job.

    :param started_at: when the job started; a failure file written since then is the user's own
        and is kept. None writes unconditionally.
    :return: True when written.
    """
    if started_at is not None and written_since(failure_file, started_at):
        logger.info("Keeping %s, written by the user's code.", failure_file)
        return False
    failure_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = failure_file.with_name(f".{failure_file.name}.{os.getpid()}")
    tmp.write_text(text if text.endswith("\n") else text + "\n")
    tmp.replace(failure_file)
    return True


def write_success(success_file: Path) -> None:
    """Create the empty ``output/success`` file."""
    success_file.parent.mkdir(parents=True, exist_ok=True)
    success_file.touch()


def format_error(error: BaseException) -> str:
    """The failure-file text for an error raised by smc or a plugin."""
    if isinstance(error, SmcError):
        return f"{error.kind}: {error.message}\nExitCode {error.exit_code}"
    return f"InternalError: {type(error).__name__}: {error}\nExitCode 1"


def format_user_failure(exit_code: int, reason: str | None, command: Sequence[str] | None) -> str:
    """The failure-file text for user code that exited with ``exit_code``.

    The first 1024 characters hold, in order: the error line with the exit code, the last lines of
    stderr (the traceback tail), then the command.
    """
    from smc_core.signals import describe_exit_code

    head = f"UserCodeError: the training code exited with {describe_exit_code(exit_code)}\nExitCode {exit_code}"
    parts = [head]
    if reason:
        parts.append("ErrorMessage:\n" + reason.rstrip())
    if command:
        parts.append("Command " + " ".join(_quote(c) for c in command))
    return "\n".join(parts)


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg


class Timer:
    """Logs how long a step took: ``with Timer("fetch_user_code"): ...``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        logger.debug("%s took %.3f s", self.name, time.perf_counter() - self.start)
