"""Signals: passing stop signals on to the user's processes, and describing a death by signal.

Exit codes follow the shell's rule: a process killed by signal S exits ``128 + S``.

====  ==========================================================================================
code  meaning
====  ==========================================================================================
130   SIGINT: interrupted (Ctrl-C, passed on by smc)
134   SIGABRT: aborted, usually a failed assertion in native code
137   SIGKILL: killed; the report says by whom where that is known (smc after the grace period,
      the kernel's out-of-memory killer as the cgroup's ``memory.events`` counts it)
139   SIGSEGV: a segmentation fault, usually in a native extension
143   SIGTERM: terminated: the job was stopped or the instance is being reclaimed
====  ==========================================================================================
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from smc_core.base.stopping import STOP_SIGNALS, notify_stop

SIGNAL_HINTS = {
    signal.SIGKILL: "killed by SIGKILL (not by smc; the kernel's out-of-memory killer is a common cause: "
    "check the instance's memory)",
    signal.SIGTERM: "terminated (SIGTERM): the job was stopped, or the instance is being reclaimed",
    signal.SIGSEGV: "a segmentation fault (SIGSEGV), usually in a native extension",
    signal.SIGABRT: "aborted (SIGABRT), usually by a failed assertion in native code",
    signal.SIGINT: "interrupted (SIGINT)",
}

FORWARDED_SIGNALS = STOP_SIGNALS
"""The signals smc passes on to the user's process groups (:data:`~smc_core.base.stopping.STOP_SIGNALS`;
see :func:`signal_to_pass_on`)."""


def signal_to_pass_on(signum: int) -> int:
    """What smc sends the user's processes when it receives the stop signal ``signum``: SIGINT as
    SIGINT (a ``KeyboardInterrupt`` in Python), every other stop signal as SIGTERM, the signal that
    training scripts handle (a checkpoint on a spot interruption); SIGHUP from a closed terminal,
    say, must give them the same chance."""
    return signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM


def exit_code_of(returncode: int) -> int:
    """A ``subprocess`` return code as a shell reports it: death by signal S becomes ``128 + S``."""
    return 128 - returncode if returncode < 0 else returncode


def signal_of(exit_code: int) -> signal.Signals | None:
    """The signal behind ``exit_code`` (``137`` -> ``SIGKILL``), or None for an ordinary exit."""
    if 128 < exit_code < 128 + 65:
        try:
            return signal.Signals(exit_code - 128)
        except ValueError:
            return None
    return None


KILL_CAUSES = {
    "grace-period": "killed by SIGKILL, sent by smc when the grace period after passing on the stop "
    "signal ran out: the code did not exit in time (set SMC_GRACE_PERIOD to allow longer)",
    "smc-stop": "killed by SIGKILL, sent by smc: it had stopped the process because the job could not go "
    "on (another host was lost or failed) and the process did not exit within the grace it was given",
    "out-of-memory": "killed by the kernel's out-of-memory killer (the cgroup's memory.events counted an "
    "oom_kill): use a larger instance or a smaller batch size",
}
"""How a SIGKILL is described when its cause is known (``TrainingResult.details["kill_cause"]``)."""


def describe_exit_code(exit_code: int, kill_cause: str | None = None) -> str:
    """``exit code 137: killed by SIGKILL ...``; ``kill_cause`` (``grace-period``, ``out-of-memory``)
    says who sent a SIGKILL when that is known."""
    sig = signal_of(exit_code)
    if sig is None:
        return f"exit code {exit_code}"
    hint = KILL_CAUSES.get(kill_cause or "") if sig == signal.SIGKILL else None
    hint = hint or SIGNAL_HINTS.get(sig, f"killed by {sig.name}")
    return f"exit code {exit_code}: {hint}"


# ------------------------------------------------------------------------------------------------
# Forwarding: while a supervised process runs, SIGTERM/SIGINT to smc go to every live process group.


class _Forwarder:
    """Process-wide registry of supervised process groups and the handlers that signal them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.targets: dict[int, Callable[[int], bool]] = {}  # id -> on_signal(signum): passed on?
        self.depth = 0
        self.previous: dict[int, Any] = {}

    def handle(self, signum: int, frame: FrameType | None) -> None:
        with self.lock:
            targets = list(self.targets.values())
        passed_on = [on_signal(signum) for on_signal in targets]
        if any(passed_on):  # a stop is the job's, whatever the processes then do with it
            notify_stop(signum)

    def install(self) -> None:
        with self.lock:
            self.depth += 1
            if self.depth > 1 or threading.current_thread() is not threading.main_thread():
                return
            for sig in FORWARDED_SIGNALS:
                try:
                    self.previous[sig] = signal.signal(sig, self.handle)
                except (ValueError, OSError):  # not the main thread of the main interpreter
                    pass

    def uninstall(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth > 0:
                return
            for sig, handler in self.previous.items():
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(sig, handler)
            self.previous.clear()


_FORWARDER = _Forwarder()


def add_signal_target(key: int, on_signal: Callable[[int], bool]) -> None:
    """Call ``on_signal(signum)`` when smc receives a stop signal (see :func:`forward_signals`); it
    returns whether it passes the signal on (its process still runs). A signal passed on is the job's
    stop (:func:`~smc_core.base.stopping.notify_stop`); one that comes once every process has ended
    (smc is tidying up) is not."""
    with _FORWARDER.lock:
        _FORWARDER.targets[key] = on_signal


def remove_signal_target(key: int) -> None:
    """Stop passing signals to the target registered under ``key``."""
    with _FORWARDER.lock:
        _FORWARDER.targets.pop(key, None)


@contextlib.contextmanager
def forward_signals() -> Iterator[None]:
    """While inside, stop signals sent to smc are passed on to every supervised process.

    Nestable and thread-safe; handlers are installed only from the main thread (elsewhere Python
    forbids it, and the enclosing main-thread ``forward_signals`` does the work). The previous
    handlers are restored on exit.
    """
    _FORWARDER.install()
    try:
        yield
    finally:
        _FORWARDER.uninstall()


def kill_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a zombie leader with no live members on some kernels
        return False
