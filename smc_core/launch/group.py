"""Processes launched together (one per rank on this host): which one failed first.

When coupled workers fail, one fails first and the others follow it (a lost peer, a broken socket) or
wait for it forever until they are stopped; only the first is the cause. :func:`first_failure` waits
on the processes' pidfds (Linux), so it learns of each exit as it happens rather than at the next
poll, and the order it reports is the order in which they ended.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Sequence

from smc_core.launch.process import SupervisedProcess

__all__ = ["first_failure"]


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None  # already reaped, or no pidfd here: polled instead
    return fd


def first_failure(processes: Sequence[SupervisedProcess], interval: float = 0.1) -> int | None:
    """Wait until every process has ended or one has failed; the index of the first to fail, or None.

    A process that exits 0 is waited past; the first one to end with another exit code ends the wait
    at once, before anything is stopped: stop the others then (:meth:`SupervisedProcess.stop`) and
    report this one as the cause, not those that stopped after it (143 after SIGTERM).

    :param processes: the processes, e.g. one per rank, as :func:`start_process` returned them.
    :param interval: seconds between checks where the system gives no pidfd (not Linux).
    :return: the index in ``processes`` of the first to fail, or None when all of them exited 0.

    Example::

        started = [start_process(cmd, env={**process_env, "RANK": str(r)}, prefix=rank_prefix(host, r))
                   for r in ranks]
        failed = first_failure(started)
        results = [p.wait() if p.poll() is not None else p.stop() for p in started]
    """
    fds = {index: _pidfd(process.pid) for index, process in enumerate(processes)}
    poller = select.poll()
    by_fd = {}
    for index, fd in fds.items():
        if fd is not None:
            poller.register(fd, select.POLLIN)
            by_fd[fd] = index
    try:
        ended: set[int] = set()
        while len(ended) < len(processes):
            ready = [by_fd[fd] for fd, _ in poller.poll(0)] if by_fd else []
            # Those whose pidfd says they ended first, in that order; then any other that ended.
            for index in [*ready, *(i for i in range(len(processes)) if i not in ready)]:
                if index in ended:
                    continue
                code = processes[index].poll()
                if code is None:
                    continue
                if code != 0:
                    return index
                ended.add(index)
                fd = fds[index]
                if fd is not None:
                    poller.unregister(fd)
                    del by_fd[fd]
            if len(ended) < len(processes):
                if by_fd and len(by_fd) == len(processes) - len(ended):
                    poller.poll()  # every running process has a pidfd: sleep until one ends
                else:
                    time.sleep(interval)
        return None
    finally:
        for fd in fds.values():
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
