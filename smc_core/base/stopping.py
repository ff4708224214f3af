"""Stopping the job on SIGTERM/SIGINT in any phase, with a failure file saying so.

While the runner runs, SIGTERM and SIGINT raise :class:`JobStopped` in the main thread, whatever it
is doing (reading the config, downloading the code, waiting for hosts); ``finally`` blocks on the
way out remove partial downloads and staging dirs. While a supervised process runs (the user's
code, an installer), the signal is passed on to it instead (:mod:`smc_core.launch.forwarding`),
and a step that ran a helper process which was stopped that way raises :class:`JobStopped` itself
(:func:`raise_if_stopped`). The phase is the hook that was running, which the timing wrappers record.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import Any

__all__ = ["JobStopped", "current_phase", "raise_if_stopped", "set_phase", "stop_on_signals"]

PHASES = {
    "starting": "before the job's configuration was read",
    "load_environment": "while reading the job's configuration (load_environment)",
    "fetch_user_code": "while fetching the user's code (fetch_user_code)",
    "prepare_training": "while preparing the job: installing requirements, waiting for hosts "
    "(prepare_training)",
    "invoke_train": "while the user's code ran (invoke_train)",
    "reporting": "while reporting the outcome",
}

_phase = "starting"


class JobStopped(BaseException):
    """The job was stopped by a signal (a BaseException, as KeyboardInterrupt: no ``except Exception``
    on the way out may swallow it)."""

    def __init__(self, signum: int, phase: str | None = None) -> None:
        self.signum = signum
        self.phase = phase or _phase
        super().__init__(f"stopped by {signal.Signals(signum).name} {PHASES.get(self.phase, self.phase)}")

    @property
    def exit_code(self) -> int:
        """``128 + signal``, as a shell reports a death by that signal."""
        return 128 + self.signum

    def failure_text(self) -> str:
        """The failure file's text."""
        name = signal.Signals(self.signum).name
        return (
            f"JobStopped: the job was stopped by {name} {PHASES.get(self.phase, self.phase)}; the user's "
            f"code {'had started' if self.phase in ('invoke_train', 'reporting') else 'did not run'}\n"
            f"ExitCode {self.exit_code}"
        )


def set_phase(phase: str) -> None:
    """Record the phase the job is in (the hook now running)."""
    global _phase
    _phase = phase


def current_phase() -> str:
    """The phase the job is in."""
    return _phase


def raise_if_stopped(details: Mapping[str, Any]) -> None:
    """Raise :class:`JobStopped` when a helper process's result ``details`` say smc passed a signal on."""
    name = details.get("signal")
    if name in ("SIGTERM", "SIGINT"):
        raise JobStopped(int(signal.Signals[name]))


def _raise(signum: int, frame: FrameType | None) -> None:
    raise JobStopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside (main thread only), SIGTERM/SIGINT raise :class:`JobStopped`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGTERM, signal.SIGINT)}
    set_phase("starting")
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
