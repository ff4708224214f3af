"""What a supervised process leaves behind: finding every descendant, and stopping it at the end.

A descendant can escape its process group and session (``setsid``, ``start_new_session=True``) and
outlive its parent at once, before anyone saw it. So that none is lost, smc makes itself the
*child subreaper* of its own descendants (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``): an orphan is
re-parented to smc rather than to PID 1, and is found among smc's children at the end. Together
with the session of the process (its own session, ``start_new_session``) and the descendants seen
while it ran, that finds everything it started.

Stopping is SIGTERM, a short grace (``SMC_LEFTOVER_GRACE``, default 5 s), then SIGKILL; each
process stopped is named in a warning.

A subreaper (and a container's PID 1, which smc is when the platform runs ``IMAGE train``) must also
*reap* the orphans it adopts once they exit, or each stays a zombie until smc ends, holding a pid:
a job whose code double-forks helpers that come and go runs out of pids. :func:`reap_adopted` does
that while a supervised process runs and at its end, and never reaps a process smc started itself
(its ``subprocess.Popen`` must collect that exit status): a direct child is in smc's own session,
or leads a session of its own that smc registered (:func:`own_session_leader`); anything else among
smc's children was adopted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil

from smc_core.base.log import logger
from smc_core.launch.signals import kill_group

__all__ = [
    "DescendantWatch",
    "become_subreaper",
    "find_leftovers",
    "own_session_leader",
    "reap_adopted",
    "stop_leftovers",
]

_PR_SET_CHILD_SUBREAPER = 36
_WATCH_INTERVAL = 0.5
_subreaper: bool | None = None
# Pids of processes this process started in a session of their own (never forgotten: a pid reused by
# an adopted orphan then merely stays a zombie a while, which is safe; reaping our own child is not).
_OWN_SESSION_LEADERS: set[int] = set()
_REAP_LOCK = threading.Lock()


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


@contextlib.contextmanager
def own_session_leader() -> Iterator[Callable[[int], None]]:
    """Start a process in a session of its own inside this block and pass its pid to the function
    it yields, so that :func:`reap_adopted` leaves its exit status to the ``Popen`` that started it::

        with own_session_leader() as register:
            popen = subprocess.Popen(command, start_new_session=True)
            register(popen.pid)

    No reaping happens meanwhile: a process that exits at once is not taken for an adopted one.
    """
    with _REAP_LOCK:
        yield _OWN_SESSION_LEADERS.add


def _zombie_children() -> list[int]:
    """Pids of this process's children that have exited and not been reaped."""
    try:  # one cheap system call first: is there a zombie child at all?
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError, AttributeError):
        return []
    if info is None:
        return []
    zombies = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.status() == psutil.STATUS_ZOMBIE:
                    zombies.append(child.pid)
    return zombies


def reap_adopted() -> list[int]:
    """Reap the orphans this process adopted (as subreaper or PID 1) that have exited; their pids.

    A zombie child is reaped when smc did not start it: it is in another session than smc's own and
    is either not that session's leader (a process forked by the user's code, whose parent ended), or
    leads a session that smc did not start (a ``setsid`` daemon whose parent ended). smc's own
    children, in its session or registered by :func:`own_session_leader`, are left to their ``Popen``.
    """
    own_session = _session_of(0)
    reaped = []
    with _REAP_LOCK:
        for pid in _zombie_children():
            session = _session_of(pid)
            if session is None or session == own_session or pid in _OWN_SESSION_LEADERS:
                continue
            with contextlib.suppress(ChildProcessError, OSError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped.append(pid)
    if reaped:
        logger.debug("Reaped %d exited process(es) left by the user's code: %s", len(reaped), reaped)
    return reaped


class DescendantWatch(threading.Thread):
    """Records ``(pid, create_time)`` of every descendant of ``pid`` seen while ``done`` is unset, and
    reaps the orphans smc adopts meanwhile (:func:`reap_adopted`)."""

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
        watching = True
        while not self.done.wait(_WATCH_INTERVAL):
            reap_adopted()
            try:
                for child in leader.children(recursive=True) if watching else ():
                    with contextlib.suppress(psutil.Error):
                        self.seen.add((child.pid, child.create_time()))
            except psutil.Error:
                watching = False  # the leader ended: keep reaping until the supervisor is done


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
