"""Watching one attempt of the user's code: stalls, and every rank's stacks on demand.

:class:`AttemptWatch` runs beside each attempt of the user's code on every host (the runner starts it:
:mod:`smc_core.host.attempts`).

**Stacks on demand.** SIGUSR1 to ``train`` (``smc stacks`` in local mode) writes the Python stacks of
every process of the job into the log, and the job goes on: on the master host of a multi-host job,
every host's (gathered over the job's channel; each other host also logs its own), elsewhere this
host's. The stacks are read as :mod:`smc_core.launch.stacks` says (py-spy, else faulthandler).

**Stalls** (``SMC_STALL_TIMEOUT`` or the hyperparameter ``sagemaker_stall_timeout``; off by default).
Progress is any whole output line of any rank, or only the lines ``SMC_STALL_PROGRESS`` matches, and a
file written (closed) under the model, checkpoint or output directories. Every host's
:class:`~smc_core.launch.progress.ProgressClock` counts its own; the other hosts tell the master when
theirs moved (a ``progress`` message, at most once a second), MPI's ranks' lines reach the master
itself. When the master has seen no progress on any host for the stall timeout, it reads the stacks
of every process on every host (``stacks.request``, a gather bounded by :data:`GATHER_TIMEOUT`),
writes them in full to its log, tells every host (``stall``), and stops the job's processes here;
each host stops its own (``SMC_PEER_STOP_GRACE``) and ends with :class:`~smc_core.errors.StallError`
(exit 7): the failure file's first lines say that the job stalled, for how long, and where each rank
was (its innermost frame in the user's code, and the calls below it).

The watch's messages on the job's channel:

==================  =============  ==================================================================
``type``            direction      meaning
==================  =============  ==================================================================
``progress``        worker→master  this host's code made progress (``attempt``)
``stacks.request``  master→worker  a request: read this host's stacks (``reason``); the reply is
                                   ``stacks.reply`` with ``processes`` (each a
                                   :class:`~smc_core.launch.stacks.ProcessStacks`)
``stall``           master→all     the job stalled: stop this host's processes (``message``: why)
==================  =============  ==================================================================
"""

from __future__ import annotations

import contextlib
import functools
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smc_core.base.log import logger
from smc_core.cluster.channel import ChannelLink, ChannelMaster, Peer
from smc_core.cluster.job import JobChannel
from smc_core.cluster.messages import Message, message_kind
from smc_core.errors import ClusterError
from smc_core.job.environment import TrainingEnv
from smc_core.launch.process import running_processes
from smc_core.launch.progress import ProgressClock
from smc_core.launch.stacks import (
    ProcessStacks,
    dump_stacks,
    faulthandler_environment,
    pyspy_unusable,
    render_stacks,
    where_it_is,
)
from smc_core.outputs.watch import ClosedFileWatcher

__all__ = ["GATHER_TIMEOUT", "STACKS_ON_DEMAND", "AttemptWatch", "describe_stall"]

STACKS_ON_DEMAND = signal.SIGUSR1
"""The signal that asks ``train`` for every rank's stacks (the job goes on)."""
GATHER_TIMEOUT = 20.0
"""Seconds the master waits for the other hosts' stacks."""
_REPORT_EVERY = 1.0  # seconds between two progress messages of one host


@message_kind("progress")
@dataclass(frozen=True)
class Progress(Message):
    """This host's code made progress (worker to master)."""

    attempt: int = 1


@message_kind("stacks.request")
@dataclass(frozen=True)
class StacksRequest(Message):
    """Read this host's stacks and reply with them (master to worker)."""

    reason: str = ""
    attempt: int = 1


@message_kind("stacks.reply")
@dataclass(frozen=True)
class StacksReply(Message):
    """A host's stacks (the reply to ``stacks.request``): one object per process."""

    processes: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


@message_kind("stall")
@dataclass(frozen=True)
class Stall(Message):
    """The job stalled: stop this host's processes (master to every host)."""

    attempt: int = 1
    message: str = ""


class AttemptWatch:
    """Stacks on demand and the stall watch for one attempt of the user's code on this host.

    Use as a context manager around the attempt; :meth:`environment` first gives the variables the
    attempt's processes need (faulthandler armed where py-spy cannot read them). After the attempt,
    :attr:`stalled` is the stall's explanation when the job stalled.

    :param training_env: the job (its policy, hosts, directories).
    :param channel: the job's channel.
    :param attempt: the attempt's number (1 for the first).
    :param code_dir: the user's code, to tell its frames from the libraries'.
    """

    def __init__(self, training_env: TrainingEnv, channel: JobChannel, attempt: int, code_dir: Path) -> None:
        self.training_env = training_env
        self.channel = channel
        self.attempt = attempt
        self.code_dir = str(code_dir)
        self.host = training_env.current_host
        self.policy = training_env.long_jobs
        self.timeout = self.policy.stall_timeout
        self.stalled: str | None = None
        """Why the job stalled, once it did (the StallError's message)."""
        self._stop = threading.Event()
        self._asked = threading.Event()
        self._clock: ProgressClock | None = None
        self._watchers: list[ClosedFileWatcher] = []
        self._peer_progress: dict[str, float] = {}
        self._threads: list[threading.Thread] = []
        self._undo: list[Callable[[], None]] = []
        self._stacks_dir: tempfile.TemporaryDirectory[str] | None = None
        self._tool = self.policy.stacks

    # --- the environment of the attempt's processes ------------------------------------------------
    def environment(self, process_env: Mapping[str, str]) -> dict[str, str]:
        """The variables to add for the attempt's processes: faulthandler's arming when the stacks are
        read that way (``SMC_STACKS=faulthandler``, or ``auto`` where py-spy cannot read them)."""
        if self._tool == "py-spy":
            return {}
        if self._tool == "auto":
            reason = pyspy_unusable()
            if reason is None:
                return {}
            logger.info(
                "Stacks: %s. The job's Python processes get faulthandler armed instead (smc's "
                "sitecustomize on PYTHONPATH, signal SIGRTMIN+6): stacks are still read on a stall and "
                "on SIGUSR1.",
                reason,
            )
        self._stacks_dir = tempfile.TemporaryDirectory(prefix="smc-stacks-")
        return faulthandler_environment(Path(self._stacks_dir.name), process_env)

    # --- life -------------------------------------------------------------------------------------
    def __enter__(self) -> AttemptWatch:
        self._on_signal()
        if self.timeout:
            self._clock = ProgressClock(self.policy.stall_progress).start()
            self._watch_files()
            if self.channel.is_master:
                self._start(self._check_stalls, "smc-stall-check")
        if self.channel.multi_host:
            self._start(self._join_channel, "smc-watch-channel")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._clock is not None:
            self._clock.stop()
        for watcher in self._watchers:
            watcher.stop()
        for undo in reversed(self._undo):
            with contextlib.suppress(Exception):
                undo()
        if self._stacks_dir is not None:
            self._stacks_dir.cleanup()

    def _start(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, daemon=True, name=name)
        self._threads.append(thread)
        thread.start()

    def _on_signal(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            previous = signal.signal(STACKS_ON_DEMAND, lambda signum, frame: self._asked.set())
        except (ValueError, OSError):
            return
        self._undo.append(lambda: _restore(previous))
        self._start(self._serve_requests, "smc-stacks-on-demand")

    def _serve_requests(self) -> None:
        while not self._stop.is_set():
            if not self._asked.wait(0.5):
                continue
            self._asked.clear()
            logger.info("SIGUSR1: reading the stacks of the job's processes (the job goes on).")
            try:
                stacks = self.gather("stacks on demand (SIGUSR1)")
            except Exception:
                logger.exception("Could not read the job's stacks")
                continue
            logger.info("The stacks of the job's processes (SIGUSR1):\n%s", render_stacks(stacks) or "(none)")

    # --- files as progress ----------------------------------------------------------------------------
    def _watch_files(self) -> None:
        env = self.training_env
        for directory in dict.fromkeys([env.paths.model_dir, env.paths.checkpoint_dir, env.paths.output_dir]):
            if directory.is_dir():
                self._watchers.append(ClosedFileWatcher(directory, self._file_written).start())
            else:
                self._start(functools.partial(self._watch_when_made, directory), "smc-watch-dir")

    def _watch_when_made(self, directory: Path) -> None:
        while not self._stop.wait(1.0):
            if directory.is_dir():
                self._watchers.append(ClosedFileWatcher(directory, self._file_written).start())
                return

    def _file_written(self, path: Path) -> None:
        if self._clock is not None and not path.name.startswith(".smc-"):
            self._clock.tick(f"a file written: {path}")

    # --- the job's channel -------------------------------------------------------------------------
    def _join_channel(self) -> None:
        try:
            if self.channel.is_master:
                master = self.channel.master()
            else:
                link = self.channel.link()
        except ClusterError as error:
            logger.debug("The watch has no channel: %s", error.message)
            return
        if self._stop.is_set():
            return
        if self.channel.is_master:
            self._serve_master(master)
        else:
            self._serve_link(link)

    def _serve_master(self, master: ChannelMaster) -> None:
        def progress(peer: Peer | None, message: Progress) -> None:
            if peer is not None and message.attempt == self.attempt:
                self._peer_progress[peer.host] = time.monotonic()

        master.on(Progress, progress)
        self._undo.append(lambda: master.off(Progress, progress))

    def _serve_link(self, link: ChannelLink) -> None:
        def stacks(_link: ChannelLink, request: StacksRequest) -> Message:
            found = self.local_stacks()
            logger.info(
                "The stacks of this host's processes, for the master's %s:\n%s",
                request.reason or "request",
                render_stacks(found) or "(none)",
            )
            return StacksReply(tuple(s.to_message() for s in found))

        def stall(_link: ChannelLink, message: Stall) -> None:
            if message.attempt == self.attempt and self.stalled is None:
                self.stalled = message.message
                logger.error(
                    "The master %s says the job stalled: stopping this host's processes.", link.master
                )
                threading.Thread(target=self._stop_processes, daemon=True, name="smc-stall-stop").start()

        link.on(StacksRequest, stacks)
        link.on(Stall, stall)
        self._undo += [lambda: link.off(StacksRequest, stacks), lambda: link.off(Stall, stall)]
        if self._clock is not None:
            self._start(lambda: self._report_progress(link), "smc-progress-report")

    def _report_progress(self, link: ChannelLink) -> None:
        assert self._clock is not None
        reported = 0.0
        while not self._stop.wait(_REPORT_EVERY):
            if self._clock.last > reported and link.closed is None:
                reported = self._clock.last
                link.send(Progress(self.attempt))

    # --- stacks ------------------------------------------------------------------------------------
    def local_stacks(self) -> list[ProcessStacks]:
        """This host's processes' stacks."""
        return dump_stacks(self.host, tool=self._tool)

    def gather(self, reason: str) -> list[ProcessStacks]:
        """This host's stacks, and on the master of a multi-host job every other host's too."""
        found = self.local_stacks()
        if self.channel.multi_host and self.channel.is_master:
            try:
                master = self.channel.master(timeout=1.0)
            except ClusterError:
                return found
            gathered = master.gather(StacksRequest(reason, self.attempt), timeout=GATHER_TIMEOUT)
            for host in sorted(gathered.replies):
                reply = gathered.replies[host]
                if isinstance(reply, StacksReply):
                    found += [
                        ProcessStacks.from_message(p) for p in reply.processes if isinstance(p, Mapping)
                    ]
            if gathered.missing:
                logger.warning(
                    "No stacks from %s within %g s (gone, or busy).",
                    ", ".join(gathered.missing),
                    GATHER_TIMEOUT,
                )
        found.sort(key=lambda s: (s.role != "user", s.rank is None, s.rank or 0, s.host, s.pid))
        return found

    # --- stalls ------------------------------------------------------------------------------------
    def _idle(self) -> tuple[float, str]:
        assert self._clock is not None
        latest, where = self._clock.last, self.host
        for host, at in self._peer_progress.items():
            if at > latest:
                latest, where = at, host
        return time.monotonic() - latest, where

    def _check_stalls(self) -> None:
        assert self.timeout is not None and self._clock is not None
        interval = min(1.0, self.timeout / 10)
        while not self._stop.wait(interval):
            idle, _ = self._idle()
            if idle < self.timeout:
                continue
            self._stall(idle)
            return

    def _stall(self, idle: float) -> None:
        assert self.timeout is not None and self._clock is not None
        logger.error(
            "No progress on any host for %.0f s (stall timeout %g s, %s; the last progress: %s): reading "
            "the stacks of every process of the job.",
            idle,
            self.timeout,
            self.policy.stall_timeout_from,
            self._clock.what,
        )
        stacks = self.gather("stall")
        logger.error(
            "The stacks of every process of the job, at the stall:\n%s", render_stacks(stacks) or "(none)"
        )
        self.stalled = describe_stall(
            stacks, self.timeout, self.policy.stall_timeout_from, self.code_dir, self.host
        )
        if self.channel.multi_host:
            with contextlib.suppress(ClusterError):
                self.channel.master(timeout=1.0).broadcast(Stall(self.attempt, self.stalled))
        self._stop_processes()

    def _stop_processes(self) -> None:
        grace = self.training_env.supervision.peer_stop_grace
        processes = running_processes()
        logger.error(
            "The job stalled: stopping %d process(es) on %s (SIGTERM, SIGKILL after %g s: "
            "SMC_PEER_STOP_GRACE).",
            len(processes),
            self.host,
            grace,
        )
        for process in processes:  # without waiting: each attempt's own wait sees it end
            process.terminate(grace, f"the job stalled (no progress on any host for {self.timeout:g} s)")


def _restore(handler: Any) -> None:
    signal.signal(STACKS_ON_DEMAND, handler)


def _ranks(group: Sequence[ProcessStacks]) -> str:
    return ", ".join(s.label for s in group)


def describe_stall(
    stacks: Sequence[ProcessStacks], timeout: float, setting: str, code_dir: str | None, master: str
) -> str:
    """The StallError's message: how long nothing happened, then where each rank was, grouped by
    place, the ranks elsewhere than the most first (the likely culprits)."""
    users = [s for s in stacks if s.role == "user"] or list(stacks)
    places: dict[str, list[ProcessStacks]] = {}
    for process in users:
        if process.rank is not None and process.parent in {s.pid for s in users if s.rank == process.rank}:
            continue  # a rank's own child (a data loader worker): the rank is named once
        places.setdefault(where_it_is(process, code_dir), []).append(process)
    groups = sorted(places.items(), key=lambda item: (len(item[1]), item[0]))
    head = f"no progress on any host for {timeout:g} s ({setting}): the job was ended on every host"
    if len(groups) > 1 and len(groups[-1][1]) > 1:
        odd = [s for _, group in groups[:-1] for s in group]
        head += f"; {_ranks(odd)} not where the {len(groups[-1][1])} others are: {groups[0][0]}"
    elif groups:
        head += "; " + "; ".join(f"{_ranks(group)}: {place}" for place, group in groups)
    if len(head) > 700:
        head = head[:697] + "..."
    lines = [head, "Where each process was (innermost frame of the user's code, then the calls below it):"]
    for place, group in groups:
        lines.append(f"  {_ranks(group)}: {place}")
    if not users:
        lines.append("  no Python process of the job was found")
    lines.append(f"Every process's full stacks are in the log of {master}.")
    return "\n".join(lines)
