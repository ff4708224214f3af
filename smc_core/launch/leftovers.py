"""What a supervised process leaves behind: finding every descendant, and stopping it at the end.

A descendant can escape its process group and session (``setsid``, ``start_new_session=True``) and
outlive its parent at once, before anyone saw it. So that none is lost, smc makes itself the
*child subreaper* of its own descendants (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``): an orphan is
re-parented to smc rather than to PID 1, and is found among smc's children at the end. Together
with the session of the process (its own session, ``start_new_session``) and the descendants seen
while it ran, that finds everything it started.

Stopping is SIGTERM, a short grace (``SMC_LEFTOVER_GRACE``, default 5 s), then SIGKILL; each
process stopped is named in a warning.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from smc_core.base.log import logger
from smc_core.launch.signals import kill_group

__all__ = ["DescendantWatch", "become_subreaper", "find_leftovers", "stop_leftovers"]

_PR_SET_CHILD_SUBREAPER = 36
_WATCH_INTERVAL = 0.5
_subreaper: bool | None = None


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (once; Linux only). True when it is."""
    global _subreaper
    if _subreaper is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _subreaper = False
    return _subreaper


class DescendantWatch(threading.Thread):
    """Records ``(pid, create_time)`` of every descendant of ``pid`` seen while ``done`` is unset."""

    def __init__(self, pid: int, done: threading.Event) -> None:
        super().__init__(daemon=True, name="smc-monitor")
        self.pid, self.done = pid, done
        self.seen: set[tuple[int, float]] = set()

    def run(self) -> None:
        # First wait, then import psutil (10-20 ms): not while the user's interpreter starts up.
        if self.done.wait(_WATCH_INTERVAL):
            return

        try:
            leader = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.done.wait(_WATCH_INTERVAL):
            try:
                for child in leader.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self.seen.add((child.pid, child.create_time()))
            except psutil.Error:
                return


def _alive(proc: Any) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def find_leftovers(
    leader: int, seen: Iterable[tuple[int, float]], started: float, other_leaders: Iterable[int] = ()
) -> list[Any]:
    """Live processes left by the process ``leader`` (a session and group leader) after it ended.

    :param leader: its pid, which also names its session and process group.
    :param seen: ``(pid, create_time)`` of its descendants seen while it ran.
    :param started: when it started (``time.time()``); orphans re-parented to smc that were created
        before are not its.
    :param other_leaders: pids of other supervised processes still running (never leftovers).
    :return: ``psutil.Process`` objects, alive (not zombies).
    """
    found: dict[int, psutil.Process] = {}
    for pid, created in list(seen):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.create_time() == created:
                found[pid] = proc
    exclude = {os.getpid(), leader, *other_leaders}
    own_session = _session_of(0)
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid in exclude:
                continue
            if _session_of(proc.pid) == leader or os.getpgid(proc.pid) == leader:
                found[proc.pid] = proc
    # Orphans re-parented to smc (its subreaper): those in a session of their own, started after
    # the leader. smc's own helpers share smc's session and are left alone.
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.pid in exclude or child.create_time() < started - 1:
                    continue
                if _session_of(child.pid) not in (own_session, None):
                    found[child.pid] = child
                    for grandchild in child.children(recursive=True):
                        found[grandchild.pid] = grandchild
    return [p for p in found.values() if p.pid not in exclude and _alive(p)]


def _describe(proc: Any) -> str:
    with contextlib.suppress(Exception):
        return f"pid {proc.pid} ({' '.join(proc.cmdline())[:200] or proc.name()})"
    return f"pid {proc.pid}"


def stop_leftovers(
    left: list[Any],
    leader: int,
    grace: float,
    owner: str,
    rescan: Callable[[], list[Any]] | None = None,
) -> int:
    """SIGTERM ``left`` (and the group ``leader``), wait ``grace`` seconds, then SIGKILL what remains.

    Each process is named in a warning (``owner`` says whose it was). Processes that were smc's
    children (orphans it adopted) are reaped. With ``rescan`` (what finds the leftovers again),
    whatever they started while being stopped (a process that re-spawns itself when signalled) is
    found and killed too: frozen with SIGSTOP, so that it cannot start another, then SIGKILL, until
    nothing is left. Returns how many processes there were.
    """
    if not left:
        return 0
    count = _stop(left, leader, grace, owner)
    killed = {p.pid for p in left}
    for _ in range(_RESCANS if rescan is not None else 0):
        assert rescan is not None
        more = [p for p in rescan() if p.pid not in killed]
        killed.update(p.pid for p in more)
        if not more:
            break
        for proc in more:
            logger.warning(
                "Killing %s, started by what %s left while it was being stopped.", _describe(proc), owner
            )
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGSTOP)
        for proc in more:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_alive(p) for p in more):
            time.sleep(0.05)
        _reap(more)
        count += len(more)
    return count


_RESCANS = 20


def _stop(left: list[Any], leader: int, grace: float, owner: str) -> int:
    """SIGTERM, ``grace``, SIGKILL: the first pass of :func:`stop_leftovers`."""
    for proc in left:
        logger.warning(
            "Stopping %s, left running by %s (SIGTERM, then SIGKILL after %.0f s).",
            _describe(proc),
            owner,
            grace,
        )
    for sig, timeout in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        kill_group(leader, sig)
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in left):
            time.sleep(0.05)
        _reap(left)
        if not any(_alive(p) for p in left):
            break
    for proc in left:
        if _alive(proc):
            logger.warning("%s is still running after SIGKILL (another user's process?).", _describe(proc))
    return len(left)


def _reap(procs: list[Any]) -> None:
    """Collect the exit status of those that were smc's children (smc may be PID 1 in a container)."""
    for proc in procs:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(proc.pid, os.WNOHANG)
