"""Running and supervising the user's processes, and the outcome they produce.

:func:`run_process` is what the default ``invoke_train`` uses, and what adapters use to run
``torchrun``, ``mpirun`` or any other launcher; :func:`start_process` starts the same supervision in
the background (a parameter server beside the worker) and returns a :class:`SupervisedProcess` to
``stop()`` later.

Supervision, for every process started here:

* the command runs without a shell (each argument reaches the program exactly), in a new session and
  process group, with stdin from ``/dev/null``;
* SIGTERM and SIGINT received by smc from just before the start until the process ends are passed on
  to the whole group; after the grace period the group, and every descendant that left it, gets
  SIGKILL;
* stdout and stderr are streamed to smc's own stdout and stderr a line at a time, unchanged (a
  ``prefix`` such as ``"[algo-1 rank 0]: "`` (:func:`~smc_core.launch.output.rank_prefix`) is put in
  front of each line when asked); ``\\r\\n`` ends a
  line as ``\\n`` does, and a line ending in a lone ``\\r`` (a progress bar) is passed on at once;
* the last ``tail_lines`` lines of stderr are kept for the failure file;
* when the process ends, whatever it left behind (in its session or group, descendants seen while it
  ran, orphans that left its session: see :mod:`smc_core.launch.leftovers`) is stopped, SIGTERM then
  SIGKILL after the leftover grace, each named in a warning: no orphan outlives the job;
* orphans that exit while it runs are reaped within half a second (smc is their subreaper, or the
  container's PID 1): no zombie piles up, however many helpers the code double-forks;
* the exit code is the process's own; death by signal S is ``128 + S`` (see :mod:`smc_core.launch.signals`);
* when the job cannot go on on this host (the job's channel lost a host), :func:`halt_processes` stops
  every supervised process at once, from any thread (SIGTERM, SIGKILL after the grace it is given), and
  refuses to start others until :func:`resume_processes`: a SIGKILL smc sends that way is reported as
  smc's, never as the out-of-memory killer's.

The grace periods come from the job's supervision policy (:class:`~smc_core.base.supervision.Supervision`:
``SMC_GRACE_PERIOD``, ``SMC_LEFTOVER_GRACE``), which the runner applies for the whole job: a launch
style that starts a process passes nothing, and obeys them. ``supervision=`` hands a process another
policy (a test, a script using these functions alone).

The concerns live in siblings: :mod:`~smc_core.launch.forwarding` (passing signals on),
:mod:`~smc_core.launch.output` (the pumps), :mod:`~smc_core.launch.leftovers` (what is left behind)
and :mod:`~smc_core.launch.result` (the outcome and its words); this module composes them.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

from smc_core.base.log import logger
from smc_core.base.supervision import Supervision, applied_supervision
from smc_core.launch.forwarding import SignalRelay
from smc_core.launch.leftovers import (
    DescendantWatch,
    become_subreaper,
    find_leftovers,
    own_session_leader,
    reap_adopted,
    stop_leftovers,
)
from smc_core.launch.output import LinePump, Sink
from smc_core.launch.result import TrainingResult, oom_kill_count, supervised_result
from smc_core.launch.signals import exit_code_of, kill_group

__all__ = [
    "DEFAULT_TAIL_LINES",
    "SupervisedProcess",
    "current_environ",
    "halt_processes",
    "python_executable",
    "resume_processes",
    "run_process",
    "running_processes",
    "start_process",
]

DEFAULT_TAIL_LINES = 60
"""Lines of stderr kept for the failure file."""
_PUMP_JOIN = 3.0  # seconds to wait for the output once every process is stopped

_RUNNING: set[int] = set()  # pids of the supervised processes now running in this smc
_LIVE: dict[int, SupervisedProcess] = {}  # the same, by pid: what halt_processes stops
_LIVE_LOCK = threading.Lock()
_HALTED: list[BaseException] = []  # why no process may start now (halt_processes)


def halt_processes(error: BaseException, grace: float) -> int:
    """The job cannot go on on this host: stop every supervised process now running in this smc
    (SIGTERM to its group now, SIGKILL to everything it started after ``grace`` seconds) and refuse to
    start any other (:func:`start_process` raises a copy of ``error``) until :func:`resume_processes`.

    Safe from any thread, and returns at once (the processes' own :meth:`~SupervisedProcess.wait`
    sees them end). Each stopped process's result says why (``details["stopped_by_smc"]``: the
    error's message). How many processes it stopped.
    """
    with _LIVE_LOCK:
        if not _HALTED:
            _HALTED.append(error)
        live = list(_LIVE.values())
    reason = str(error.args[0]) if error.args else str(error)
    # A process that already ended (its wait() not called yet) is not stopped, nor counted.
    return sum(process.terminate(grace, reason) for process in live)


def resume_processes() -> None:
    """Allow processes to start again (the job that :func:`halt_processes` halted has ended)."""
    with _LIVE_LOCK:
        _HALTED.clear()


def running_processes() -> list[SupervisedProcess]:
    """The supervised processes running in this smc now (the user's code, a launcher, an installer):
    what the stall watch and a restart stop (each with :meth:`SupervisedProcess.terminate`)."""
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    return [p for p in live if p.poll() is None]


def _children(pid: int) -> list[tuple[int, float]]:
    """``(pid, create_time)`` of every live descendant of ``pid`` now."""
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                found.append((child.pid, child.create_time()))
    return found


def python_executable() -> str:
    """The interpreter user scripts run with: the one running smc."""
    return sys.executable


def current_environ() -> dict[str, str]:
    """A copy of this process's environment."""
    return dict(os.environ)


class SupervisedProcess:
    """A command running under smc's supervision (see the module docstring).

    Start one with :func:`start_process`; end it with :meth:`wait` (until it exits) or :meth:`stop`
    (SIGTERM, the grace period, then SIGKILL). Both return a :class:`TrainingResult`. Usable as a
    context manager, which stops the process on exit if it still runs::

        with start_process(["python", "-m", "my_ps"], env=process_env, prefix="[ps] ") as ps:
            result = run_process(worker_command, env=process_env)
        # the parameter server is stopped here

    Attributes:
        grace_period: seconds from passing on a stop signal to SIGKILL (the policy's).
        leftover_grace: seconds from SIGTERM to SIGKILL for what it leaves behind (the policy's).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | str | None = None,
        prefix: str | None = None,
        tail_lines: int = DEFAULT_TAIL_LINES,
        supervision: Supervision | None = None,
        stdout: IO[Any] | None = None,
        stderr: IO[Any] | None = None,
    ) -> None:
        self.command = [os.fspath(c) for c in command]
        with _LIVE_LOCK:
            if _HALTED:
                raise copy.copy(_HALTED[0])
        policy = applied_supervision() if supervision is None else supervision
        self.grace_period = policy.grace_period
        self.leftover_grace = policy.leftover_grace
        self.tail: collections.deque[str] = collections.deque(maxlen=max(1, tail_lines))
        self._result: TrainingResult | None = None
        self._finish_lock = threading.Lock()
        self.stopped_by_smc: str | None = None
        """Why smc stopped the process on its own account (:meth:`terminate`), or None."""
        become_subreaper()  # orphans that leave the session come back to smc, to be stopped at the end
        self._oom_before = oom_kill_count()
        self._started_at = time.time()
        # The handlers go in before the process starts: a SIGTERM/SIGINT from here on is kept and passed on
        # as soon as the group exists. Installed after Popen, a signal in between killed smc by the default
        # action and left the process (in its own session) running as an orphan. (Blocking the signals
        # around Popen instead would not do: the child inherits the blocked mask through fork and exec.)
        self.relay = SignalRelay(
            self.grace_period, lambda: self._popen.poll() is None, kill=self._kill_everything
        )
        self.relay.arm()
        try:
            with own_session_leader() as register:  # smc's own child: never reaped as an adopted orphan
                self._popen = subprocess.Popen(
                    self.command,
                    env=dict(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    close_fds=True,
                )
                register(self._popen.pid)
        except BaseException:
            self.relay.disarm()
            raise
        self.pid = self._popen.pid
        self.pgid = self.pid  # start_new_session: the leader's pid names the session and the group
        _RUNNING.add(self.pid)
        with _LIVE_LOCK:
            _LIVE[self.pid] = self
            halted = list(_HALTED)
        if halted:  # halted while it started: it is stopped with the others
            self.terminate(0.0, str(halted[0]))
        self.relay.attach(self.pid)
        raw_prefix = prefix.encode() if prefix else b""
        assert self._popen.stdout is not None and self._popen.stderr is not None
        self._pumps = [
            LinePump(self._popen.stdout, Sink(stdout, sys.stdout), raw_prefix, None),
            LinePump(self._popen.stderr, Sink(stderr, sys.stderr), raw_prefix, self.tail),
        ]
        for pump in self._pumps:
            pump.start()
        self._watch = DescendantWatch(self.pid, self.relay.done)
        self._watch.start()
        logger.debug("Started pid %d: %s", self.pid, self.command)

    def _kill_everything(self) -> None:
        """SIGKILL the group and every descendant seen, those that left it included (torchrun's
        workers, MPI's ranks run in sessions of their own): the grace period bounds them all."""
        kill_group(self.pgid, signal.SIGKILL)
        watch = getattr(self, "_watch", None)  # None while the process is being started
        seen = list(watch.seen) if watch is not None else []
        for pid, created in seen + _children(self.pid):
            with contextlib.suppress(OSError, psutil.Error):
                proc = psutil.Process(pid)
                if proc.create_time() == created:
                    proc.kill()

    @property
    def forwarded(self) -> list[str]:
        """Names of the signals passed on to the process so far."""
        return self.relay.forwarded

    @property
    def killed_after_grace(self) -> bool:
        """True when smc sent SIGKILL because the grace period ran out."""
        return self.relay.killed_after_grace

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the process group; SIGTERM/SIGINT also start the grace period.

        Does nothing once the process has exited (what it left behind is stopped by :meth:`wait`).
        """
        self.relay.send(signum)

    def poll(self) -> int | None:
        """The exit code if the process has ended (``128 + S`` for signal S), else None."""
        code = self._popen.poll()
        return None if code is None else exit_code_of(code)

    def wait(self, timeout: float | None = None) -> TrainingResult:
        """Wait until the process exits, stop what it left behind, and return its result.

        :raises subprocess.TimeoutExpired: when ``timeout`` passes first (the process keeps running).
        """
        if self._result is not None:
            return self._result
        returncode = self._popen.wait(timeout)
        # Set before anything else: a signal handled during the seconds the teardown below may take
        # (stopping leftovers, draining the pipes) then returns at once.
        self.relay.done.set()
        with self._finish_lock:
            if self._result is None:
                self._result = self._finish(exit_code_of(returncode))
        return self._result

    def _finish(self, exit_code: int) -> TrainingResult:
        # The relay stays armed (ignoring signals: done is set) until the teardown is over, so that a
        # stop signal cannot break it off half-way and leave what it was stopping running.
        _RUNNING.discard(self.pid)
        with _LIVE_LOCK:
            _LIVE.pop(self.pid, None)

        def scan() -> list[Any]:
            return find_leftovers(self.pid, self._watch.seen, self._started_at, other_leaders=_RUNNING)

        left = scan()
        owner = f"pid {self.pid} ({self.command[0]})"
        if stop_leftovers(left, self.pgid, self.leftover_grace, owner, rescan=scan):
            logger.warning(
                "Stopped %d process(es) left running by pid %d (%s).", len(left), self.pid, self.command[0]
            )
        reap_adopted()  # what the code forked and left to exit on its own: no zombie outlives it
        for pump in self._pumps:
            pump.join(_PUMP_JOIN)
            if pump.is_alive():
                logger.warning(
                    "The output of pid %d is still held open by a process smc could not stop; "
                    "no longer waiting for it.",
                    self.pid,
                )
                break
        for pipe in (self._popen.stdout, self._popen.stderr):
            with contextlib.suppress(OSError):
                pipe.close() if pipe else None
        self.relay.disarm()
        return supervised_result(
            exit_code,
            command=self.command,
            pid=self.pid,
            tail="\n".join(self.tail),
            forwarded=self.relay.forwarded,
            grace_period=self.relay.grace_period,
            killed_after_grace=self.relay.killed_after_grace,
            oom_before=self._oom_before,
            stopped_by_smc=self.stopped_by_smc,
        )

    def terminate(self, grace: float, reason: str) -> bool:
        """Stop the process on smc's own account (``reason``), from any thread, without waiting:
        SIGTERM to its group now, SIGKILL to its group and everything it started after ``grace``
        seconds if it still runs. :meth:`wait` returns its result, which names ``reason``.

        :returns: whether it stopped the process (False: it had already ended).
        """
        if self.relay.done.is_set() or self._popen.poll() is not None:
            return False
        if self.stopped_by_smc is None:
            self.stopped_by_smc = reason
        kill_group(self.pgid, signal.SIGTERM)

        def kill_after_grace() -> None:
            if not self.relay.done.is_set() and self._popen.returncode is None:
                logger.warning(
                    "pid %d did not exit %g s after smc stopped it: sending SIGKILL to its group and what "
                    "it started.",
                    self.pid,
                    grace,
                )
                self.relay.killed_after_grace = True
                self.relay.grace_period = grace
                self._kill_everything()

        timer = threading.Timer(grace, kill_after_grace)
        timer.daemon = True
        timer.start()
        return True

    def stop(self, grace_period: float | None = None, reason: str | None = None) -> TrainingResult:
        """SIGTERM the process group, wait up to ``grace_period`` seconds, then SIGKILL; the result.

        :param grace_period: the grace to give it; default :attr:`grace_period`, the policy's for a
            stop signal. Pass the policy's ``peer_stop_grace`` when stopping it because the job failed
            elsewhere, its ``leftover_grace`` for a helper at the end of the job.
        :param reason: why smc stops it, when on its own account (another host failed): the result
            names it, and a SIGKILL after the grace is then reported as smc's stop.
        """
        grace = self.grace_period if grace_period is None else grace_period
        if reason is not None and self.stopped_by_smc is None and self._popen.poll() is None:
            self.stopped_by_smc = reason
        if self._popen.poll() is None:
            kill_group(self.pgid, signal.SIGTERM)
            try:
                return self.wait(grace)
            except subprocess.TimeoutExpired:
                self.relay.killed_after_grace = True
                self.relay.grace_period = grace  # the grace it was given, for the failure file
                self._kill_everything()
        return self.wait()

    def __enter__(self) -> SupervisedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    prefix: str | None = None,
    tail_lines: int = DEFAULT_TAIL_LINES,
    supervision: Supervision | None = None,
    stdout: IO[Any] | None = None,
    stderr: IO[Any] | None = None,
) -> SupervisedProcess:
    """Start ``command`` under supervision in the background; see :class:`SupervisedProcess`.

    Arguments as for :func:`run_process`. Raises ``OSError`` (``FileNotFoundError``,
    ``PermissionError``) when the command cannot be started.
    """
    return SupervisedProcess(
        command,
        env=env,
        cwd=cwd,
        prefix=prefix,
        tail_lines=tail_lines,
        supervision=supervision,
        stdout=stdout,
        stderr=stderr,
    )


def run_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    prefix: str | None = None,
    tail_lines: int = DEFAULT_TAIL_LINES,
    supervision: Supervision | None = None,
    stdout: IO[Any] | None = None,
    stderr: IO[Any] | None = None,
) -> TrainingResult:
    """Run ``command`` under supervision until it ends, and return its :class:`TrainingResult`.

    :param command: the program and its arguments, never passed through a shell.
    :param env: the complete environment of the process.
    :param cwd: its working directory.
    :param prefix: put in front of every output line; None passes lines as is. Where several ranks
        print, give each :func:`~smc_core.launch.output.rank_prefix` (``"[algo-2 rank 1]: "``).
    :param tail_lines: how many of the last stderr lines to keep for ``result.failure``.
    :param supervision: the policy whose grace periods it obeys; default: the job's, which the runner
        applies (``SMC_GRACE_PERIOD``, ``SMC_LEFTOVER_GRACE``). Hooks pass nothing.
    :param stdout: where to copy the process's stdout (default: smc's stdout).
    :param stderr: where to copy the process's stderr (default: smc's stderr).
    :return: the result: ``exit_code`` the process's own (``128 + S`` when killed by signal S;
        126/127 when the command cannot be started), ``failure`` the stderr tail when it failed.
    """
    try:
        process = start_process(
            command,
            env=env,
            cwd=cwd,
            prefix=prefix,
            tail_lines=tail_lines,
            supervision=supervision,
            stdout=stdout,
            stderr=stderr,
        )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        where = f" (working directory {cwd})" if cwd else ""
        reason = f"cannot start {command[0]!r}{where}: {exc.strerror or exc}"
        if exc.errno == errno.E2BIG:
            reason += (
                " (the command line and environment together exceed the system's limit: pass large "
                "values in a file instead)"
            )
        logger.error("%s", reason)
        return TrainingResult(exit_code=code, command=[os.fspath(c) for c in command], failure=reason)
    return process.wait()  # the constructor passes signals on until the process ends
