"""Stopping the job on a stop signal in any phase, with a failure file saying so.

Every signal whose default action ends a process is decided here, for ``train`` and ``smc local``:

* :data:`STOP_SIGNALS` (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGXCPU, SIGPWR) stop the job. While the
  runner runs, they raise :class:`JobStopped` in the main thread, whatever it is doing (reading the
  config, downloading the code, waiting for hosts); ``finally`` blocks on the way out remove partial
  downloads and staging dirs. While a supervised process runs (the user's code, an installer), the
  signal is passed on to it instead (:mod:`smc_core.launch.forwarding`; SIGINT as SIGINT, the others
  as SIGTERM, which is what training scripts handle), with the grace period; a step that ran a helper
  process which was stopped that way raises :class:`JobStopped` itself (:func:`raise_if_stopped`).
  The phase is the hook that was running, which the timing wrappers record.
* :data:`IGNORED_SIGNALS` (SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGSTKFLT and the
  real-time signals) are ignored: smc sets no timers and uses none of them, so one is a stray that
  must not end a job without an outcome. While the user's code runs, SIGUSR1 asks for every rank's
  stacks (:mod:`smc_core.host.watch`); SIGUSR2 stays reserved for smc's own use.
  They are ignored with a handler that does nothing, not ``SIG_IGN``, so that the user's processes
  (which ``exec`` resets to the default) do not inherit the ignoring.
* SIGPIPE and SIGXFSZ are ignored by Python itself (a write fails with an error instead), and the
  user's processes get them back at their default.
* SIGKILL cannot be handled; SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS and SIGTRAP are a
  crash of smc itself, left at their default.

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
    "IGNORED_SIGNALS",
    "STOP_SIGNALS",
    "JobStopped",
    "add_stop_listener",
    "catch_early_stops",
    "current_phase",
    "ignore_stray_signals",
    "notify_stop",
    "raise_caught_stop",
    "raise_if_stopped",
    "remove_stop_listener",
    "set_phase",
    "stop_on_signals",
]


def _signals(*names: str) -> tuple[signal.Signals, ...]:
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


STOP_SIGNALS: tuple[signal.Signals, ...] = _signals(
    "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGXCPU", "SIGPWR"
)
"""Signals that stop the job (an outcome, passing on to the user's processes, the grace period)."""
IGNORED_SIGNALS: tuple[int, ...] = _signals(
    "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGSTKFLT"
) + tuple(range(getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", -1) + 1))
"""Signals that would end smc by default and that it ignores (see the module docstring)."""

PHASES = {
    "starting": "before the job's configuration was read",
    "load_environment": "while reading the job's configuration (load_environment)",
    "fetch_user_code": "while fetching the user's code (fetch_user_code)",
    "prepare_training": "while preparing the job: installing requirements, waiting for hosts "
    "(prepare_training)",
    "invoke_train": "while the user's code ran (invoke_train)",
    "finishing": "after the user's code had ended, while its outputs were uploaded",
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
        self.ended: str | None = None
        """How the user's code had ended when the stop came (``exit code 0``), when it had."""
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
        ended = self.ended
        if ended:
            code = f"had ended ({ended})"
        else:
            code = (
                "had started" if self.phase in ("invoke_train", "finishing", "reporting") else "did not run"
            )
        lines = [
            f"JobStopped: the job was stopped by {name}{where} {PHASES.get(self.phase, self.phase)}; the "
            f"user's code {code}",
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
    if name in {s.name for s in STOP_SIGNALS}:
        raise JobStopped(int(signal.Signals[name]))


_listeners: list[Callable[[int], None]] = []
_listeners_lock = threading.Lock()


def add_stop_listener(listener: Callable[[int], None]) -> None:
    """Call ``listener(signum)`` whenever smc receives a stop signal (:data:`STOP_SIGNALS`), in any
    phase.

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


_caught: list[int] = []


def _catch(signum: int, frame: FrameType | None) -> None:
    notify_stop(signum)  # a stop is a stop (no listener yet this early: for the rule's sake)
    _caught.append(signum)


def catch_early_stops() -> None:
    """Hold the :data:`STOP_SIGNALS` that arrive before the runner can stop the job (main thread only).

    ``train`` calls it first thing, before Python imports the rest of smc (tenths of a second). Until
    then a stop signal has its default action: as a container's PID 1, whose signals without a
    handler the kernel drops, a ``docker stop`` sent then would be lost and the engine's SIGKILL
    would follow; as any other process, ``train`` would die with no outcome. Held, the first one is
    raised as :class:`JobStopped` by :func:`raise_caught_stop` once the runner can report it.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, _catch)


def raise_caught_stop() -> None:
    """Raise :class:`JobStopped` for the first stop signal :func:`catch_early_stops` held, if any."""
    if _caught:
        signum = _caught[0]
        _caught.clear()
        raise JobStopped(signum, "starting")


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A stray signal (see :data:`IGNORED_SIGNALS`): nothing to do."""


@contextlib.contextmanager
def ignore_stray_signals() -> Iterator[None]:
    """While inside (main thread only), :data:`IGNORED_SIGNALS` do nothing; restored afterwards."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in IGNORED_SIGNALS:
            with contextlib.suppress(OSError, ValueError):
                previous[sig] = signal.signal(sig, _ignore)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(sig, handler)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside (main thread only), :data:`STOP_SIGNALS` raise :class:`JobStopped` and
    :data:`IGNORED_SIGNALS` are ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in STOP_SIGNALS}
    set_phase("starting")
    try:
        with ignore_stray_signals():
            yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
