"""Passing stop signals received by smc on to one supervised process group, with a grace period.

A :class:`SignalRelay` is armed before the process starts (a signal that arrives in between is kept
and passed on as soon as the group exists) and disarmed once the process has ended. SIGINT is passed
on as SIGINT, every other stop signal (SIGHUP, SIGQUIT ...) as SIGTERM
(:func:`~smc_core.launch.signals.signal_to_pass_on`). After passing one on it starts the grace
period; when that runs out the group gets SIGKILL. A stop is passed on once: a second one (another
signal, or a peer host's report of its own stop) leaves the first one's grace period running.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from smc_core.base.log import logger
from smc_core.launch.signals import (
    FORWARDED_SIGNALS,
    add_signal_target,
    forward_signals,
    kill_group,
    remove_signal_target,
    signal_to_pass_on,
)

__all__ = ["SignalRelay"]


class SignalRelay:
    """Passes smc's SIGTERM/SIGINT on to a process group (see the module docstring).

    :param grace_period: seconds from passing SIGTERM/SIGINT on to SIGKILL.
    :param still_running: tells whether the process is still running (its ``poll() is None``).
    :param kill: sends SIGKILL to everything the process started (default: its group only).
    """

    def __init__(
        self,
        grace_period: float,
        still_running: Callable[[], bool],
        *,
        kill: Callable[[], None] | None = None,
    ) -> None:
        self.grace_period = grace_period
        self.still_running = still_running
        self._kill = kill
        self.pid = 0
        self.forwarded: list[str] = []
        self._stop_sent: str | None = None  # the stop signal passed on, once one was
        self.killed_after_grace = False
        self.done = threading.Event()  # set once the process has exited: signals are no longer passed on
        # Reentrant: a second signal can interrupt the main thread inside send's critical section.
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._pending: list[int] = []
        self._armed = False
        self._forwarding = forward_signals()

    def arm(self) -> None:
        """Install the handlers (before the process starts): signals from now on are kept."""
        self._forwarding.__enter__()
        add_signal_target(id(self), self._on_signal)
        self._armed = True

    def attach(self, pid: int) -> None:
        """The process group ``pid`` exists: pass on what was kept, and what comes later."""
        self.pid = pid
        self._pass_on_pending()

    def disarm(self) -> None:
        """Stop passing signals on (the process ended) and restore the previous handlers."""
        self.done.set()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        if self._armed:
            self._armed = False
            remove_signal_target(id(self))
            self._forwarding.__exit__(None, None, None)

    def _on_signal(self, signum: int) -> bool:
        # Runs in the main thread, between any two bytecodes of whatever it was doing (the teardown
        # included): it must neither block nor start anything once the process has ended.
        if self.done.is_set():
            return False
        self._pending.append(signum)
        if self.pid:
            self._pass_on_pending()
        return True

    def _pass_on_pending(self) -> None:
        """Pass on the signals received so far (each exactly once: ``list.pop`` is atomic)."""
        while True:
            try:
                signum = self._pending.pop(0)
            except IndexError:
                return
            if self._stop_passed_on(signum):
                continue
            sent = signal_to_pass_on(signum)
            logger.warning(
                "Received %s: passing it on%s to pid %d and its group (grace period %.0f s).",
                signal.Signals(signum).name,
                "" if sent == signum else f" as {signal.Signals(sent).name}",
                self.pid,
                self.grace_period,
            )
            self.send(signum)

    def send(self, signum: int) -> None:
        """Send ``signum`` to the group (a stop signal as :func:`signal_to_pass_on` says); a stop
        signal also starts the grace period. ``forwarded`` records the signal received."""
        if self.done.is_set() or not self.pid or self._stop_passed_on(signum):
            return
        self.forwarded.append(signal.Signals(signum).name)
        stop = signum in FORWARDED_SIGNALS
        if stop:
            self._stop_sent = signal.Signals(signum).name
        kill_group(self.pid, signal_to_pass_on(signum) if stop else signum)
        if stop:
            with self._lock:
                if self._timer is None and not self.done.is_set() and self.still_running():
                    self._timer = threading.Timer(self.grace_period, self._kill_after_grace)
                    self._timer.daemon = True
                    self._timer.start()

    def _stop_passed_on(self, signum: int) -> bool:
        """Whether ``signum`` is a stop and one was passed on already: then it is not sent again.

        One stop is one stop, however many reach smc (the platform's signal and a peer host's report
        of its own, say): its grace period is already running, and a second SIGTERM or SIGINT makes
        some launchers quit at once without stopping what they started (``mpirun`` aborts on the
        second, leaving its ranks behind).
        """
        if signum not in FORWARDED_SIGNALS or self._stop_sent is None:
            return False
        logger.info(
            "Received %s again: the stop passed on to pid %d (%s) stands; SIGKILL follows when its grace "
            "period (%.0f s) runs out.",
            signal.Signals(signum).name,
            self.pid,
            self._stop_sent,
            self.grace_period,
        )
        return True

    def _kill_after_grace(self) -> None:
        if self.still_running():
            logger.warning(
                "pid %d did not exit %.0f s after %s: sending SIGKILL to its group and what it started.",
                self.pid,
                self.grace_period,
                "/".join(self.forwarded) or "SIGTERM",
            )
            self.killed_after_grace = True
            if self._kill is not None:
                self._kill()
            else:
                kill_group(self.pid, signal.SIGKILL)
