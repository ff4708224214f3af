"""Processes launched together (one per rank on this host): which one failed first.

When coupled workers fail, one fails first and the others follow it (a lost peer, a broken socket) or
wait for it forever until they are stopped; only the first is the cause. :func:`first_failure` waits
on the processes' pidfds (Linux), so it learns of each exit as it happens rather than at the next
poll, and the order it reports is the order in which they ended. :func:`run_ranks` is the whole
launch an adapter needs for N processes on a host: start them, wait, stop the rest when one fails
(with the job's ``SMC_PEER_STOP_GRACE``: they stop because another failed), and report the first with
the core's failing-rank report (:class:`~smc_core.cluster.report.RankFailure`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from smc_core.base.supervision import Supervision, applied_supervision
from smc_core.cluster.report import RankFailure
from smc_core.launch.output import rank_prefix
from smc_core.launch.process import SupervisedProcess, start_process
from smc_core.launch.result import TrainingResult

__all__ = ["first_failure", "run_ranks"]


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
        results = [p.wait() if p.poll() is not None else p.stop(policy.peer_stop_grace) for p in started]
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


def run_ranks(
    command: Sequence[str],
    ranks: Sequence[int],
    *,
    env: Mapping[str, str],
    host: str,
    rank_env: Callable[[int], Mapping[str, str]] | None = None,
    cwd: Path | str | None = None,
    supervision: Supervision | None = None,
) -> TrainingResult:
    """Run one copy of ``command`` per rank on this host, supervised, and return how they ended.

    Each rank's output lines start with :func:`~smc_core.launch.output.rank_prefix`. When one fails,
    every other still running gets SIGTERM at once (then SIGKILL after the job's
    ``SMC_PEER_STOP_GRACE``), and the result is the first failing rank's: its exit code, and the
    failing-rank report that names it, its host and its exit code above the end of its traceback
    (``details`` holds ``rank`` and ``host``). When all exit 0, the result is the first rank's.

    :param command: the command every rank runs (:func:`~smc_core.usercode.entry.entry_command`).
    :param ranks: the ranks this host runs, e.g. ``range(4, 8)``.
    :param env: the environment every rank gets (``process_env``).
    :param host: this host's name (``training_env.current_host``), for prefixes and the report.
    :param rank_env: the variables of one rank, added to ``env`` (``{"MYFW_RANK": "5"}``).
    :param cwd: the working directory (``user_code.code_dir``).
    :param supervision: the policy the ranks obey, as for :func:`~smc_core.launch.process.run_process`
        (default: the job's).

    Example::

        return run_ranks(command, range(first, first + per_host), env=process_env,
                         host=training_env.current_host, cwd=user_code.code_dir,
                         rank_env=lambda rank: {"MYFW_RANK": str(rank)})
    """
    ranks = list(ranks)
    policy = applied_supervision() if supervision is None else supervision
    started: list[SupervisedProcess] = []
    try:
        for rank in ranks:
            started.append(
                start_process(
                    command,
                    env={**env, **(rank_env(rank) if rank_env else {})},
                    cwd=cwd,
                    prefix=rank_prefix(host, rank),
                    supervision=policy,
                )
            )
        failed = first_failure(started)
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)  # all at once: one grace period, not one after another
        grace = policy.peer_stop_grace  # the others stop because one failed
        results = [p.wait() if p.poll() is not None else p.stop(grace) for p in started]
    if failed is None:
        return dataclasses.replace(results[0], command=list(command))
    rank, result = ranks[failed], results[failed]
    context = "the first to fail; the other ranks still running on this host were stopped"
    report = RankFailure(host, result.exit_code, result.failure or "", rank=rank)
    return dataclasses.replace(
        result,
        command=list(command),
        failure=report.describe(host, context=context if len(ranks) > 1 else None),
        details={**result.details, "rank": rank, "host": host},
    )
