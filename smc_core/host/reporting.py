"""Reporting the outcome: ``output/success``, ``output/failure`` and the log lines around each step."""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smc_core.base.files import open_own_file, write_own_file
from smc_core.base.log import logger
from smc_core.base.messages import summary_line
from smc_core.base.redact import redact
from smc_core.errors import SmcError
from smc_core.launch.signals import describe_exit_code, signal_of

FAILURE_LIMIT = 1024
"""The platform shows the first 1024 characters of the failure file: the key facts go first."""


def file_state(path: Path) -> tuple[int, int, int] | None:
    """``(inode, mtime_ns, size)`` of ``path``, or None when it does not exist: a change detector."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


RESERVE_SIZE = 64 * 1024
"""Bytes set aside for the failure file before the user's code runs (a full disk must not lose it)."""


class FailureFile:
    """``output/failure``, remembering how it looked when the job started.

    A failure file the user's code writes during the job is the user's own and is kept; one left by
    an earlier job in the same directory is replaced. :meth:`reserve` sets disk space aside
    (``output/.smc-failure-reserve``) so that the failure file can be written even when the user's
    code filled the disk; :meth:`release` gives it back.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_at_start = file_state(path)
        self.reserve_path = path.with_name(".smc-failure-reserve")

    def reserve(self) -> None:
        """Allocate the reserve file (best effort: a disk already full is reported when writing)."""
        try:
            fd = open_own_file(self.reserve_path, os.O_WRONLY)
            try:
                os.posix_fallocate(fd, 0, RESERVE_SIZE)
            finally:
                os.close(fd)
        except OSError as exc:
            logger.debug("Could not reserve space for the failure file: %s", exc)

    def release(self) -> None:
        """Remove the reserve file."""
        with contextlib.suppress(OSError):
            self.reserve_path.unlink()

    def written_by_user(self) -> bool:
        """True when the file exists and changed since the job started."""
        now = file_state(self.path)
        return now is not None and now != self.state_at_start

    def remove_stale(self) -> None:
        """Remove a failure file left by an earlier job (one this job's code did not write)."""
        if self.state_at_start is not None and not self.written_by_user():
            self.path.unlink(missing_ok=True)

    def write(self, text: str) -> bool:
        """Write ``text``, secrets redacted (:func:`~smc_core.base.redact.redact`), unless the user's
        code wrote the file during this job; True when written."""
        if self.written_by_user():
            logger.info("Keeping %s, written by the user's code.", self.path)
            return False
        write_failure(self.path, redact(text), reserve=self.reserve_path)
        return True


def write_failure(failure_file: Path, text: str, *, reserve: Path | None = None) -> None:
    """Write ``text`` to ``failure_file`` atomically (use :class:`FailureFile` to keep the user's).

    :param reserve: a preallocated file to write into (its blocks are already the file's, so a full
        disk cannot refuse them); used when it exists, else a new temporary file is written.
    """
    data = (text if text.endswith("\n") else text + "\n").encode("utf-8", "replace")
    failure_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = failure_file.with_name(f".{failure_file.name}.{os.getpid()}")
    if reserve is not None and reserve.is_file():
        reserve.replace(tmp)
        fd = open_own_file(tmp, os.O_WRONLY)  # the user's code may have put a link in its place
        try:
            written = os.pwrite(fd, data[:RESERVE_SIZE], 0)
            with contextlib.suppress(OSError):  # beyond the reserve: only if the disk has room
                written += os.pwrite(fd, data[RESERVE_SIZE:], written) if len(data) > RESERVE_SIZE else 0
            os.ftruncate(fd, written)
        finally:
            os.close(fd)
    else:
        try:
            write_own_file(tmp, data)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
    tmp.replace(failure_file)


def write_success(success_file: Path) -> None:
    """Create the empty ``output/success`` file (a link or anything else there is replaced, not
    followed)."""
    success_file.parent.mkdir(parents=True, exist_ok=True)
    write_own_file(success_file, b"")


def format_error(error: BaseException) -> str:
    """The failure-file text for an error raised by smc or a plugin.

    First line: the error's kind and the first line of its message; second: ``ExitCode N``; then the
    rest of the message (an installer's error tail, say), so the key facts fit in 1024 characters.
    """
    if isinstance(error, SmcError):
        first, _, rest = error.message.partition("\n")
        text = f"{error.kind}: {first}\nExitCode {error.exit_code}"
        return text + ("\n" + rest.rstrip() if rest.strip() else "")
    return (
        f"InternalError: internal error in smc or a plugin: {type(error).__name__}: {error}\nExitCode 1\n"
        "This is a bug, not a problem with the job: please report it with the log."
    )


def format_user_failure(
    exit_code: int,
    reason: str | None,
    command: Sequence[str] | None,
    *,
    details: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> str:
    """The failure-file text for user code that exited with ``exit_code``.

    ``details`` are the result's (``kill_cause`` names who sent a SIGKILL; ``failing_process``, set by a
    launch style that reports another process's failure as the root cause, makes the first line that
    report's: ``reason``'s first line); ``note`` is added to the first line (a full disk, say).

    The platform shows the first 1024 characters, so they hold, in order: the error kind with the
    exception line (``UserCodeError: ValueError: loss is NaN``), ``ExitCode N`` with what a death by
    signal means, the command (shortened), then as many of the last lines of stderr as fit. When
    anything was shortened, the full command and stderr tail follow after that first part. Secrets
    are redacted (:mod:`smc_core.base.redact`) before anything is shortened, so that no part of one
    is left at a cut.
    """
    reason = redact(reason) if reason else reason
    summary = summary_line(reason)
    failing = (details or {}).get("failing_process")
    if signal_of(exit_code) is not None and failing and reason:
        # Another process's failure, relayed (a rank, a parameter server on another host): its report's
        # first line says who died of which signal; "the training code ended: killed by SIGKILL" would
        # put the signal on this host's code, which smc stopped.
        head = f"UserCodeError: {reason.splitlines()[0].rstrip(':')}"
    elif signal_of(exit_code) is not None:
        cause = (details or {}).get("kill_cause")
        ended = describe_exit_code(exit_code, cause).split(": ", 1)[-1]
        head = f"UserCodeError: the training code ended: {ended}"
        if summary:
            head += f"; last error output: {summary}"
    elif summary:
        head = f"UserCodeError: {summary}"
    else:
        head = f"UserCodeError: the training code exited with {describe_exit_code(exit_code)}"
    if note:
        head += f" ({note})"
    lines = [_shorten(head, 400), f"ExitCode {exit_code}"]
    full_command = redact(" ".join(_quote(c) for c in command)) if command else ""
    if full_command:
        lines.append("Command " + _shorten(full_command, 200))
    attempts = (details or {}).get("attempts")
    if attempts:  # restarts (SMC_MAX_RESTARTS): every attempt, the last one included
        lines.append(_shorten(f"Attempts ({len(attempts)}): " + "; ".join(map(str, attempts)), 500))
    text = "\n".join(lines)
    tail = [line for line in (reason or "").rstrip().splitlines()]
    budget = FAILURE_LIMIT - len(text) - len("\nErrorMessage:\n")
    kept: list[str] = []
    for line in reversed(tail):
        if budget - len(line) - 1 < 0:
            break
        kept.insert(0, line)
        budget -= len(line) + 1
    if kept:
        text += "\nErrorMessage:\n" + "\n".join(kept)
    cut_tail = len(kept) < len(tail)
    if cut_tail or len(full_command) > 200:
        text += "\n\n--- full report ---"
        if len(full_command) > 200:
            text += "\nCommand " + full_command
        if cut_tail:
            text += "\nErrorMessage:\n" + "\n".join(tail)
    return text


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quote(arg: str) -> str:
    """An argument as a reader can copy it into a shell."""
    return shlex.quote(arg)
