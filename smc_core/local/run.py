"""The runner of ``smc local``: one host or N hosts on this machine running one job.

A job runs on a host set (:mod:`smc_core.local.hosts`): one plain host, this machine as it is, or
``--hosts N`` hosts each with its own host name and address. Every host gets its own job dir (the job
dir itself for one plain host, ``<job>/algo-i/`` for several; its ``resourceconfig.json`` names it the
current host, all N in ``hosts``) and runs the real ``train``, as the platform starts every instance
of a job at once. With several hosts (or when something reads the lines: ``--metric``) their output
is read line by line and printed whole, with a host prefix when there are several
(:mod:`smc_core.local.output`); one plain host writes to this terminal as ``train`` would.

How a job ends:

* every host exits 0: the job succeeded (exit code 0);
* a host fails: the others get ``--failure-wait`` seconds to notice and stop on their own (the
  adapter's failure handling: e.g. torchrun ends the ranks that lost a peer), then SIGTERM, which
  ``train`` passes on to the user's processes, and after the grace period SIGKILL. The exit code is
  the first failing host's;
* SIGTERM, Ctrl-C, or any other stop signal to ``smc local`` (SIGHUP when its terminal closes,
  SIGQUIT ...: :data:`~smc_core.base.stopping.STOP_SIGNALS`): passed on to every host's ``train`` at
  once, the same grace period, then SIGKILL (a second one kills at once). The signals smc ignores
  (:data:`~smc_core.base.stopping.IGNORED_SIGNALS`) are ignored here too.

Nothing is left behind: the hosts' processes run with a marker in their environment and any still
alive at the end are killed, and the namespaces and hosts files are removed.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from smc_core.base.settings import parse_settings
from smc_core.base.stopping import STOP_SIGNALS, ignore_stray_signals
from smc_core.base.supervision import Supervision
from smc_core.launch.signals import describe_exit_code, exit_code_of
from smc_core.local.checkpoints import download_checkpoints, finish_checkpoint_sync, start_checkpoint_sync
from smc_core.local.hosts import HostSet, LocalHost, PlainHost, processes_with_environ
from smc_core.local.job import LocalJob, build_job_dir, job_environment
from smc_core.local.output import Line, LinePrefixer, start_reader, strip_adapter_prefix, use_colour

TRAIN_COMMAND = (sys.executable, "-m", "smc_core.cli.main", "train")
DEFAULT_FAILURE_WAIT = 15.0
"""Seconds the other hosts get to stop on their own after one host failed."""
KILL_MARGIN = 15.0
"""Seconds beyond ``train``'s own grace period before smc local kills a host that is still running."""
MARKER_VAR = "SMC_LOCAL_RUN"
"""Set in every host's environment so that anything still running at the end can be found and killed."""
POLL_INTERVAL = 0.1
CHECKPOINT_FLUSH_TIMEOUT = 60.0
"""Seconds the final checkpoint upload may take after the job ended."""


@dataclass
class HostOutcome:
    """How one host ended: exit code (shell style: 143 is SIGTERM), seconds it ran, its failure file."""

    name: str
    job_dir: Path
    exit_code: int
    duration: float
    failure: str | None


@dataclass(frozen=True)
class LocalResult:
    """How a local job ended, host by host.

    Attributes:
        exit_code: 0 when every host succeeded, else the first failing host's exit code (or 128 + S
            when smc local was stopped by signal S and every host still exited 0).
        duration: seconds from the first host's start to the last host's end.
        hosts: each host's outcome, in host order.
        first_failure: the host whose failure ended the job, or None.
        stopped_by: the signal that stopped smc local (``"SIGTERM"``), or None.
        network: how the hosts were isolated (``netns``, ``loopback`` or ``plain``).
        tarballs: ``model.tar.gz`` and ``output.tar.gz`` when they were written (``--output-tar``).
    """

    exit_code: int
    duration: float
    hosts: tuple[HostOutcome, ...]
    first_failure: str | None
    stopped_by: str | None
    network: str
    tarballs: tuple[Path, ...] = ()


@dataclass
class _Running:
    host: LocalHost
    process: subprocess.Popen[bytes]
    started: float
    outcome: HostOutcome | None = None


def host_jobs(job: LocalJob, host_set: HostSet) -> list[LocalJob]:
    """Each host's job: its own job dir and, with several hosts, its own checkpoint dir
    (``--checkpoint-local-path P`` becomes ``P/algo-i``: every instance has its own disk)."""
    several = len(host_set.hosts) > 1
    jobs = []
    for host in host_set.hosts:
        local_path = job.checkpoint_local_path
        if several and local_path is not None:
            local_path = local_path / host.name
        jobs.append(dataclasses.replace(job, job_dir=host.job_dir, checkpoint_local_path=local_path))
    return jobs


def prepare_hosts(job: LocalJob, host_set: HostSet) -> list[LocalJob]:
    """Write each host's job dir (``<job>/algo-i/``, or the job dir itself for one plain host)."""
    names = [h.name for h in host_set.hosts]
    jobs = host_jobs(job, host_set)
    for host, host_job in zip(host_set.hosts, jobs, strict=True):
        build_job_dir(host_job, current_host=host.name, hosts=names, interface=host_set.interface)
    return jobs


def start_checkpoint_syncs(jobs: Sequence[LocalJob]) -> list[Any]:
    """What the platform does around each instance: restore its checkpoints, then keep them in sync."""
    syncs = []
    for host_job in jobs:
        if host_job.checkpoint_s3_uri:
            restored = download_checkpoints(host_job.checkpoint_s3_uri, host_job.checkpoint_dir)
            syncs.append(
                start_checkpoint_sync(host_job.checkpoint_s3_uri, host_job.checkpoint_dir, restored=restored)
            )
    return syncs


def run_job(
    job: LocalJob,
    host_set: HostSet | None = None,
    *,
    on_line: Callable[[Line], None] | None = None,
    failure_wait: float = DEFAULT_FAILURE_WAIT,
    environ: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    prefix: bool | None = None,
) -> LocalResult:
    """Start ``train`` on every host of ``host_set`` at once, wait for the end.

    :param host_set: where the job runs: not started yet (it is started here and always closed,
        everything it created removed); default one plain host whose job dir is ``job.job_dir``.
    :param on_line: sees every line a host prints (the adapter's rank prefix removed), e.g. to
        collect metrics.
    :param failure_wait: seconds the other hosts get to stop on their own after one failed.
    :param environ: the environment ``train`` starts from (default this process's).
    :param out: where relayed lines and smc local's notices go (default stdout).
    :param prefix: print each relayed line with its host's name (default: when there are several
        hosts). Without a prefix and without ``on_line`` the hosts' output is not relayed: ``train``
        writes to this process's stdout and stderr, as it does on the platform.
    """
    host_set = PlainHost(job.job_dir) if host_set is None else host_set
    out = sys.stdout if out is None else out
    prefix = len(host_set.hosts) > 1 if prefix is None else prefix
    relay = prefix or on_line is not None
    marker = uuid.uuid4().hex
    lines: queue.Queue[Line | None] = queue.Queue()
    prefixer = LinePrefixer([h.name for h in host_set.hosts], use_colour(out, environ))
    pending_signals: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: pending_signals.append(signum)) for sig in STOP_SIGNALS
    }
    strays = ignore_stray_signals()
    strays.__enter__()
    running: list[_Running] = []
    syncs: list[Any] = []
    started = time.time()

    ended_readers = 0

    def emit(line: Line | None) -> None:
        nonlocal ended_readers
        if line is None:  # a reader reached the end of its host's output
            ended_readers += 1
            return
        print(prefixer.format(line) if prefix else line.text, file=out, flush=True)
        if on_line is not None:
            on_line(line._replace(text=strip_adapter_prefix(line.text)))

    try:
        host_set.start()
        jobs = prepare_hosts(job, host_set)
        syncs = start_checkpoint_syncs(jobs)
        # The hosts' own policy, from the same parse as theirs: smc local waits out the same grace.
        grace = Supervision.from_settings(parse_settings(job_environment(jobs[0], environ))).grace_period
        for host, host_job in zip(host_set.hosts, jobs, strict=True):
            env = job_environment(host_job, environ)
            env[MARKER_VAR] = marker
            if relay:
                env.setdefault("PYTHONUNBUFFERED", "1")  # lines as they are printed, not at exit
            process = subprocess.Popen(
                host_set.command(host, TRAIN_COMMAND),
                env=env,
                cwd=host.job_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if relay else None,
                stderr=subprocess.STDOUT if relay else None,
                start_new_session=True,  # signals reach a host only through smc local
            )
            running.append(_Running(host, process, time.time()))
            if process.stdout is not None:
                start_reader(host.name, process.stdout, lines)

        first_failure, stopped_by = _supervise(
            running, lines, emit, pending_signals, failure_wait=failure_wait, grace=grace, out=out
        )
    finally:
        for item in running:
            _kill(item.process)
        for sync in syncs:
            finish_checkpoint_sync(sync, CHECKPOINT_FLUSH_TIMEOUT)
        host_set.close()
        kill_marked(marker)
        strays.__exit__(None, None, None)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _drain(lines, len(running) - ended_readers, emit)
    ended = time.time()
    outcomes = tuple(item.outcome for item in running if item.outcome is not None)
    return LocalResult(
        exit_code=_job_exit_code(outcomes, first_failure, stopped_by),
        duration=ended - started,
        hosts=outcomes,
        first_failure=first_failure,
        stopped_by=stopped_by,
        network=host_set.kind,
    )


def _supervise(
    running: list[_Running],
    lines: queue.Queue[Line | None],
    emit: Callable[[Line | None], None],
    pending_signals: list[int],
    *,
    failure_wait: float,
    grace: float,
    out: IO[str],
) -> tuple[str | None, str | None]:
    """The run loop: relay lines, note exits, pass signals on, stop the rest after a failure."""
    first_failure: str | None = None
    stopped_by: str | None = None
    stop_at: float | None = None  # when the remaining hosts get SIGTERM (after a failure)
    kill_at: float | None = None  # when the remaining hosts get SIGKILL

    def notice(text: str) -> None:
        print(f"smc local: {text}", file=out, flush=True)

    while any(item.outcome is None for item in running):
        try:
            emit(lines.get(timeout=POLL_INTERVAL))
        except queue.Empty:
            pass
        now = time.time()
        for item in running:
            code = item.process.poll()
            if code is None or item.outcome is not None:
                continue
            item.outcome = _outcome(item, exit_code_of(code), now)
            if item.outcome.exit_code != 0 and first_failure is None and stopped_by is None:
                first_failure = item.host.name
                if any(other.outcome is None for other in running):
                    stop_at = now + failure_wait
                    notice(
                        f"{item.host.name} failed ({describe_exit_code(item.outcome.exit_code)}); "
                        f"the other hosts have {failure_wait:g} s to stop on their own."
                    )
        alive = [item for item in running if item.outcome is None]
        while pending_signals:
            signum = pending_signals.pop(0)
            name = signal.Signals(signum).name
            if stopped_by is None:
                stopped_by = name
                kill_at = now + grace + KILL_MARGIN
                hosts, them = ("every host", "them") if len(running) > 1 else ("the job", "it")
                notice(f"{name}: passed on to {hosts}; waiting up to {grace + KILL_MARGIN:g} s for {them}.")
                _signal_all(alive, signum)
            else:
                notice(f"{name} again: killing {'every host' if len(running) > 1 else 'the job'} now.")
                kill_at = now
        if stop_at is not None and now >= stop_at and kill_at is None and alive:
            names = ", ".join(i.host.name for i in alive)
            notice(f"stopping {names} (SIGTERM; SIGKILL after {grace + KILL_MARGIN:g} s).")
            _signal_all(alive, signal.SIGTERM)
            kill_at = now + grace + KILL_MARGIN
        if kill_at is not None and now >= kill_at:
            for item in alive:
                _kill(item.process)
    return first_failure, stopped_by


def _outcome(item: _Running, exit_code: int, now: float) -> HostOutcome:
    failure_file = item.host.job_dir / "output" / "failure"
    failure = failure_file.read_text(errors="replace") if exit_code and failure_file.exists() else None
    if exit_code and failure is None:
        failure = f"train ended with {describe_exit_code(exit_code)} and wrote no failure file"
    return HostOutcome(item.host.name, item.host.job_dir, exit_code, now - item.started, failure)


def _signal_all(items: Sequence[_Running], signum: int) -> None:
    for item in items:
        try:
            item.process.send_signal(signum)
        except ProcessLookupError:
            pass


def _kill(process: subprocess.Popen[Any]) -> None:
    """SIGKILL ``process``'s whole group (it leads its own session) and reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _drain(lines: queue.Queue[Line | None], readers: int, emit: Callable[[Line | None], None]) -> None:
    """Print what the readers still hold; give up after a few seconds (a pipe held open elsewhere)."""
    deadline = time.time() + 5
    while readers and time.time() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        readers -= line is None
        emit(line)


def kill_marked(marker: str) -> list[int]:
    """SIGKILL every process whose environment has ``SMC_LOCAL_RUN=<marker>``; return their pids."""
    killed = []
    for pid in processes_with_environ(f"{MARKER_VAR}={marker}"):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            continue
    return killed


def _job_exit_code(outcomes: Sequence[HostOutcome], first_failure: str | None, stopped_by: str | None) -> int:
    if first_failure is not None:
        return next(o.exit_code for o in outcomes if o.name == first_failure)
    failed = [o.exit_code for o in outcomes if o.exit_code != 0]
    if failed:
        return failed[0]
    if stopped_by is not None:
        return 128 + int(signal.Signals[stopped_by])
    return 0
