"""Stopping the job on SIGTERM/SIGINT in any phase, with a failure file saying so.

While the runner runs, SIGTERM and SIGINT raise :class:`JobStopped` in the main thread, whatever it
is doing (reading the config, downloading the code, waiting for hosts); ``finally`` blocks on the
way out remove partial downloads and staging dirs. While a supervised process runs (the user's
code, an installer), the signal is passed on to it instead (:mod:`smc_core.launch.forwarding`),
and a step that ran a helper process which was stopped that way raises :class:`JobStopped` itself
(:func:`raise_if_stopped`). The phase is the hook that was running, which the timing wrappers record.

**A stop is a stop.** Once smc has received a stop signal in any phase, the job's outcome is "stopped"
(:class:`JobStopped`, exit ``128 + signal``), whatever the user's code does with the signal afterwards
(a handler that saves a checkpoint and exits 0, a framework's preemption handler that finishes the
loop): every handler of a stop signal smc installs calls :func:`notify_stop`, and the job's channel
(:mod:`smc_core.cluster.job`), listening with :func:`add_stop_listener`, records the stop and tells the
other hosts, which stop too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

from smc_core.base.log import logger

__all__ = [
    "JobStopped",
    "add_stop_listener",
    "current_phase",
    "notify_stop",
    "raise_if_stopped",
    "remove_stop_listener",
    "set_phase",
    "stop_on_signals",
]

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
    on the way out may swallow it).

    :param signum: the stop signal.
    :param phase: the phase it came in (default: the current one).
    :param origin: the host whose smc received it, when another host's did and told this one over the
        job's channel (None: this host's smc received it).
    :param after: what happened after the stop, for the failure file's later lines (how the user's
        code ended, what smc did).
    """

    def __init__(
        self, signum: int, phase: str | None = None, *, origin: str | None = None, after: str | None = None
    ) -> None:
        self.signum = signum
        self.phase = phase or _phase
        self.origin = origin
        self.after = after
        where = f" on {origin}" if origin else ""
        super().__init__(
            f"stopped by {signal.Signals(signum).name}{where} {PHASES.get(self.phase, self.phase)}"
        )

    @property
    def exit_code(self) -> int:
        """``128 + signal``, as a shell reports a death by that signal."""
        return 128 + self.signum

    def failure_text(self) -> str:
        """The failure file's text: the stop and its phase first, then ``ExitCode``, then what came after."""
        name = signal.Signals(self.signum).name
        where = f" on {self.origin}" if self.origin else ""
        lines = [
            f"JobStopped: the job was stopped by {name}{where} {PHASES.get(self.phase, self.phase)}; the "
            f"user's code {'had started' if self.phase in ('invoke_train', 'reporting') else 'did not run'}",
            f"ExitCode {self.exit_code}",
        ]
        if self.origin:
            lines.append(
                f"{self.origin}'s smc received {name} and told every host over the job's channel; smc passed "
                "it on to this host's processes too: a stop is a stop on every host."
            )
        if self.after:
            lines.append(self.after.rstrip())
        return "\n".join(lines)


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


_listeners: list[Callable[[int], None]] = []
_listeners_lock = threading.Lock()


def add_stop_listener(listener: Callable[[int], None]) -> None:
    """Call ``listener(signum)`` whenever smc receives a stop signal (SIGTERM, SIGINT), in any phase.

    It is called from the signal handler, in the main thread, between two bytecodes of whatever ran:
    it must not block (start a thread for anything slow)."""
    with _listeners_lock:
        _listeners.append(listener)


def remove_stop_listener(listener: Callable[[int], None]) -> None:
    """Stop calling ``listener`` (see :func:`add_stop_listener`)."""
    with _listeners_lock:
        if listener in _listeners:
            _listeners.remove(listener)


def notify_stop(signum: int) -> None:
    """smc received the stop signal ``signum``: tell every listener (:func:`add_stop_listener`). Each
    handler of a stop signal that smc installs calls it, whatever it then does with the signal."""
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(signum)
        except Exception:  # a listener's bug must not turn a stop into a crash
            logger.exception("A stop listener raised")


def _raise(signum: int, frame: FrameType | None) -> None:
    notify_stop(signum)
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
