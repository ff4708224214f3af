"""Running and supervising the user's processes, and the outcome they produce.

:func:`run_process` is what the default ``invoke_train`` uses, and what adapters use to run
``torchrun``, ``mpirun`` or any other launcher; :func:`start_process` starts the same supervision in
the background (a parameter server beside the worker) and returns a :class:`SupervisedProcess` to
``stop()`` later.

Supervision, for every process started here:

* the command runs without a shell (each argument reaches the program exactly), in a new session and
  process group, with stdin from ``/dev/null``;
* SIGTERM and SIGINT received by smc from just before the start until the process ends are passed on
  to the whole group; after the grace period (``grace_period``; the default hooks pass the
  job's ``SMC_GRACE_PERIOD``, 100 s unless set) the group gets SIGKILL;
* stdout and stderr are streamed to smc's own stdout and stderr a line at a time, unchanged (a
  ``prefix`` such as ``[algo-1,rank 0] `` is put in front of each line when asked); ``\\r\\n`` ends a
  line as ``\\n`` does, and a line ending in a lone ``\\r`` (a progress bar) is passed on at once;
* the last ``tail_lines`` lines of stderr are kept for the failure file;
* when the process ends, whatever it left behind (in its group, or descendants seen while it ran)
  is stopped: no orphan outlives the job;
* the exit code is the process's own; death by signal S is ``128 + S`` (see :mod:`smc_core.launch.signals`).
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from smc_core.host.reporting import logger
from smc_core.host.settings import GRACE_PERIOD
from smc_core.launch.signals import (
    add_signal_target,
    exit_code_of,
    forward_signals,
    kill_group,
    remove_signal_target,
)

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_TAIL_LINES",
    "SupervisedProcess",
    "TrainingResult",
    "current_environ",
    "python_executable",
    "run_process",
    "start_process",
]

DEFAULT_GRACE_PERIOD: float = GRACE_PERIOD.default
"""Seconds between passing SIGTERM on and sending SIGKILL when the caller gives none (SageMaker allows
120 s after a stop); hooks pass the job's ``training_env.settings[GRACE_PERIOD]``."""
DEFAULT_TAIL_LINES = 60
"""Lines of stderr kept for the failure file."""
_MAX_SEGMENT = 64 * 1024  # a "line" longer than this is passed on in pieces
_MONITOR_INTERVAL = 0.5


@dataclass(frozen=True)
class TrainingResult:
    """What ``invoke_train`` returns: how the user's code ended.

    Attributes:
        exit_code: 0 on success; the user's own exit code otherwise (``128 + signal`` when killed).
        command: the command that ran (for the failure file), or None in function mode.
        failure: the reason to report when ``exit_code`` is not 0 (the stderr tail, a traceback).
        model: in function mode, the object ``train()`` returned, for the adapter to save.
        model_handled_by: the plugin that took care of ``model`` (saved it, or left the saving to
            the master host); a ``model`` that no plugin handled fails the job (exit 2) rather than
            being lost. Adapters set it in their ``invoke_train`` wrapper with
            ``dataclasses.replace(result, model_handled_by="smc-myfw")``.
        details: facts a plugin wants to pass on (host, rank of the failing process ...).
            :func:`run_process` sets ``pid``, ``stderr_tail``, and ``signal`` (the name of a
            signal passed on from smc) or ``killed_after_grace_period`` where they apply.
    """

    exit_code: int
    command: Sequence[str] | None = None
    failure: str | None = None
    model: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)
    model_handled_by: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when ``exit_code`` is 0."""
        return self.exit_code == 0


def python_executable() -> str:
    """The interpreter user scripts run with: the one running smc."""
    return sys.executable


def current_environ() -> dict[str, str]:
    """A copy of this process's environment."""
    return dict(os.environ)


# ------------------------------------------------------------------------------------------------
# Output: one pump thread per stream, passing whole lines on under one lock per destination.

_SINK_LOCKS: dict[int, threading.Lock] = collections.defaultdict(threading.Lock)


class _Sink:
    """A destination (smc's stdout or stderr, or a given stream) written a segment at a time."""

    def __init__(self, stream: IO[Any] | None, default: IO[Any]) -> None:
        self.stream = stream if stream is not None else default
        self.binary: Any = getattr(self.stream, "buffer", None)
        if self.binary is None and not isinstance(self.stream, io.TextIOBase):
            self.binary = self.stream  # a binary stream given by the caller
        self.lock = _SINK_LOCKS[id(self.binary if self.binary is not None else self.stream)]

    def write(self, data: bytes) -> None:
        with self.lock:
            try:
                if self.binary is not None:
                    self.binary.write(data)
                    self.binary.flush()
                else:
                    self.stream.write(data.decode("utf-8", "replace"))
                    self.stream.flush()
            except (OSError, ValueError):  # a closed stdout must not break supervision
                pass


class _Pump(threading.Thread):
    """Copies one pipe to a sink line by line; keeps the tail of complete lines when asked."""

    def __init__(
        self, pipe: IO[bytes], sink: _Sink, prefix: bytes, tail: collections.deque[str] | None
    ) -> None:
        super().__init__(daemon=True, name="smc-output")
        self.pipe, self.sink, self.prefix, self.tail = pipe, sink, prefix, tail

    def run(self) -> None:
        fd = self.pipe.fileno()
        buffer = b""
        at_line_start = True
        after_cr: bytes | None = None  # a segment passed on with its \r last in what had been read
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            if after_cr is not None and buffer.startswith(b"\n"):
                # A \r\n split between two reads: the \r went out at once, the \n ends that same line.
                self.sink.write(b"\n")
                self.keep(after_cr + b"\n")
                buffer = buffer[1:]
            after_cr = None
            start = 0
            newline = carriage = -1  # the next \n and \r at or after start (len(buffer) when none)
            while True:
                if newline < start:
                    newline = _find(buffer, b"\n", start)
                if carriage < start:
                    carriage = _find(buffer, b"\r", start)
                end = _segment_end(buffer, newline, carriage)
                if end > len(buffer):
                    break
                segment = buffer[start:end]
                self.emit(segment, at_line_start, complete=segment.endswith(b"\n"))
                if end == len(buffer) and segment.endswith(b"\r"):
                    after_cr = segment
                at_line_start = True
                start = end
            buffer = buffer[start:]
            if len(buffer) > _MAX_SEGMENT:
                self.emit(buffer, at_line_start, complete=False)
                at_line_start = False
                buffer = b""
        if buffer:
            self.emit(buffer, at_line_start, complete=True)

    def emit(self, segment: bytes, at_line_start: bool, *, complete: bool) -> None:
        self.sink.write(self.prefix + segment if (self.prefix and at_line_start) else segment)
        if complete:
            self.keep(segment)

    def keep(self, line: bytes) -> None:
        """Add a complete line to the tail (when one is kept), without its line ending."""
        if self.tail is not None:
            self.tail.append(line.decode("utf-8", "replace").rstrip("\r\n")[:2000])


def _find(buffer: bytes, byte: bytes, start: int) -> int:
    """The position of ``byte`` at or after ``start``; ``len(buffer)`` when there is none."""
    found = buffer.find(byte, start)
    return len(buffer) if found < 0 else found


def _segment_end(buffer: bytes, newline: int, carriage: int) -> int:
    """Where the segment ends: after its \\n, its \\r\\n, or a lone \\r (a progress bar redrawing
    its line, passed on at once); past ``len(buffer)`` when no line ending is there yet."""
    if newline < carriage:
        return newline + 1
    if buffer[carriage + 1 : carriage + 2] == b"\n":
        return carriage + 2  # \r\n: one line ending
    return carriage + 1


# ------------------------------------------------------------------------------------------------


class SupervisedProcess:
    """A command running under smc's supervision (see the module docstring).

    Start one with :func:`start_process`; end it with :meth:`wait` (until it exits) or :meth:`stop`
    (SIGTERM, the grace period, then SIGKILL). Both return a :class:`TrainingResult`. Usable as a
    context manager, which stops the process on exit if it still runs::

        with start_process(["python", "-m", "my_ps"], env=process_env, prefix="[ps] ") as ps:
            result = run_process(worker_command, env=process_env)
        # the parameter server is stopped here
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | str | None = None,
        prefix: str | None = None,
        tail_lines: int = DEFAULT_TAIL_LINES,
        grace_period: float | None = None,
        stdout: IO[Any] | None = None,
        stderr: IO[Any] | None = None,
    ) -> None:
        self.command = [os.fspath(c) for c in command]
        self.grace_period = DEFAULT_GRACE_PERIOD if grace_period is None else grace_period
        self.tail: collections.deque[str] = collections.deque(maxlen=max(1, tail_lines))
        self.forwarded: list[str] = []
        self.killed_after_grace = False
        # Reentrant: a second signal can interrupt the main thread inside send_signal's critical section.
        self._lock = threading.RLock()
        self._grace_timer: threading.Timer | None = None
        self._result: TrainingResult | None = None
        self._descendants: set[tuple[int, float]] = set()
        self._done = threading.Event()  # set once the process has exited: signals are no longer passed on
        self._started = False
        self._pending_signals: list[int] = []
        # The handlers go in before the process starts: a SIGTERM/SIGINT from here on is kept and passed on
        # as soon as the group exists. Installed after Popen, a signal in between killed smc by the default
        # action and left the process (in its own session) running as an orphan. (Blocking the signals
        # around Popen instead would not do: the child inherits the blocked mask through fork and exec.)
        self._forwarding = forward_signals()
        self._forwarding.__enter__()
        add_signal_target(id(self), self._on_signal)
        try:
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
        except BaseException:
            remove_signal_target(id(self))
            self._forwarding.__exit__(None, None, None)
            raise
        self.pid = self._popen.pid
        self.pgid = self.pid  # start_new_session: the leader's pid names the group
        self._started = True
        self._pass_on_pending()
        raw_prefix = prefix.encode() if prefix else b""
        assert self._popen.stdout is not None and self._popen.stderr is not None
        self._pumps = [
            _Pump(self._popen.stdout, _Sink(stdout, sys.stdout), raw_prefix, None),
            _Pump(self._popen.stderr, _Sink(stderr, sys.stderr), raw_prefix, self.tail),
        ]
        for pump in self._pumps:
            pump.start()
        self._monitor = threading.Thread(target=self._watch_descendants, daemon=True, name="smc-monitor")
        self._monitor.start()
        logger.debug("Started pid %d: %s", self.pid, self.command)

    # --- signals -------------------------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        # Runs in the main thread, between any two bytecodes of whatever it was doing (wait's teardown
        # included): it must neither block nor start anything once the process has ended.
        if self._done.is_set():
            return
        self._pending_signals.append(signum)
        if self._started:
            self._pass_on_pending()

    def _pass_on_pending(self) -> None:
        """Pass on the signals received so far (each exactly once: ``list.pop`` is atomic)."""
        while True:
            try:
                signum = self._pending_signals.pop(0)
            except IndexError:
                return
            logger.warning(
                "Received %s: passing it on to pid %d and its group (grace period %.0f s).",
                signal.Signals(signum).name,
                self.pid,
                self.grace_period,
            )
            self.send_signal(signum)

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the process group; SIGTERM/SIGINT also start the grace period.

        Does nothing once the process has exited (what it left behind is stopped by :meth:`wait`).
        """
        if self._done.is_set():
            return
        self.forwarded.append(signal.Signals(signum).name)
        kill_group(self.pgid, signum)
        if signum in (signal.SIGTERM, signal.SIGINT):
            with self._lock:
                if self._grace_timer is None and not self._done.is_set() and self._popen.poll() is None:
                    self._grace_timer = threading.Timer(self.grace_period, self._kill_after_grace)
                    self._grace_timer.daemon = True
                    self._grace_timer.start()

    def _kill_after_grace(self) -> None:
        if self._popen.poll() is None:
            logger.warning(
                "pid %d did not exit %.0f s after %s: sending SIGKILL to its group.",
                self.pid,
                self.grace_period,
                "/".join(self.forwarded) or "SIGTERM",
            )
            self.killed_after_grace = True
            kill_group(self.pgid, signal.SIGKILL)

    # --- descendants ---------------------------------------------------------------------------
    def _watch_descendants(self) -> None:
        # First wait, then import psutil (10-20 ms): not while the user's interpreter starts up.
        if self._done.wait(_MONITOR_INTERVAL):
            return
        import psutil

        try:
            leader = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._done.wait(_MONITOR_INTERVAL):
            try:
                for child in leader.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self._descendants.add((child.pid, child.create_time()))
            except psutil.Error:
                return

    def _leftovers(self) -> list[Any]:
        """Processes still alive from this one's group, or seen as its descendants while it ran."""
        if not self._descendants and not kill_group(self.pgid, 0):
            return []  # nothing seen, nothing left in the group: no need to import psutil
        import psutil

        found: dict[int, psutil.Process] = {}
        for pid, created in list(self._descendants):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.create_time() == created:
                    found[pid] = proc
        if kill_group(self.pgid, 0):
            for proc in psutil.process_iter():
                with contextlib.suppress(psutil.Error, OSError):
                    if os.getpgid(proc.pid) == self.pgid:
                        found[proc.pid] = proc
        return [p for p in found.values() if _alive(p)]

    def _stop_leftovers(self) -> int:
        """Stop what the process left behind (SIGTERM, then SIGKILL); how many processes that was."""
        left = self._leftovers()
        if not left:
            return 0
        import psutil

        for sig, timeout in ((signal.SIGTERM, min(self.grace_period, 5.0)), (signal.SIGKILL, 5.0)):
            kill_group(self.pgid, sig)
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(_alive(p) for p in left):
                time.sleep(0.05)
            for proc in left:  # reap the ones that were ours (smc may be PID 1 in a container)
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(proc.pid, os.WNOHANG)
            if not any(_alive(p) for p in left):
                break
        return len(left)

    # --- ending --------------------------------------------------------------------------------
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
        # Set before taking the lock: a signal handled during the seconds the teardown below may take
        # (stopping leftovers, draining the pipes) then returns at once instead of waiting for the lock,
        # which this same thread holds (a deadlock that only SIGKILL ended).
        self._done.set()
        with self._lock:
            if self._result is not None:
                return self._result
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            leftovers = self._stop_leftovers()
            if leftovers:
                logger.warning(
                    "Stopped %d process(es) left running by pid %d (%s).",
                    leftovers,
                    self.pid,
                    self.command[0],
                )
            for pump in self._pumps:
                pump.join(10)
            for pipe in (self._popen.stdout, self._popen.stderr):
                with contextlib.suppress(OSError):
                    pipe.close() if pipe else None
            remove_signal_target(id(self))
            self._forwarding.__exit__(None, None, None)
            self._result = self._make_result(exit_code_of(returncode))
        return self._result

    def stop(self, grace_period: float | None = None) -> TrainingResult:
        """SIGTERM the process group, wait up to ``grace_period`` seconds, then SIGKILL; the result."""
        grace = self.grace_period if grace_period is None else grace_period
        if self._popen.poll() is None:
            kill_group(self.pgid, signal.SIGTERM)
            try:
                return self.wait(grace)
            except subprocess.TimeoutExpired:
                self.killed_after_grace = True
                kill_group(self.pgid, signal.SIGKILL)
        return self.wait()

    def _make_result(self, exit_code: int) -> TrainingResult:
        tail = "\n".join(self.tail)
        details: dict[str, Any] = {"pid": self.pid, "stderr_tail": tail}
        if self.forwarded:
            details["signal"] = self.forwarded[0]
        failure = None
        if exit_code != 0:
            failure = tail
            if self.killed_after_grace:
                details["killed_after_grace_period"] = self.grace_period
                failure = (
                    f"smc sent SIGKILL {self.grace_period:.0f} s after passing on "
                    f"{'/'.join(self.forwarded) or 'SIGTERM'}: the process did not exit in the grace period "
                    "(set SMC_GRACE_PERIOD to allow more).\n" + tail
                )
        return TrainingResult(exit_code=exit_code, command=self.command, failure=failure, details=details)

    def __enter__(self) -> SupervisedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def start_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    prefix: str | None = None,
    tail_lines: int = DEFAULT_TAIL_LINES,
    grace_period: float | None = None,
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
        grace_period=grace_period,
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
    grace_period: float | None = None,
    stdout: IO[Any] | None = None,
    stderr: IO[Any] | None = None,
) -> TrainingResult:
    """Run ``command`` under supervision until it ends, and return its :class:`TrainingResult`.

    :param command: the program and its arguments, never passed through a shell.
    :param env: the complete environment of the process.
    :param cwd: its working directory.
    :param prefix: put in front of every output line (e.g. ``"[algo-2] "``); None passes lines as is.
    :param tail_lines: how many of the last stderr lines to keep for ``result.failure``.
    :param grace_period: seconds from passing on SIGTERM/SIGINT to SIGKILL (default
        100; hooks pass ``training_env.settings[GRACE_PERIOD]``, the job's ``SMC_GRACE_PERIOD``).
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
            grace_period=grace_period,
            stdout=stdout,
            stderr=stderr,
        )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        where = f" (working directory {cwd})" if cwd else ""
        reason = f"cannot start {command[0]!r}{where}: {exc.strerror or exc}"
        logger.error("%s", reason)
        return TrainingResult(exit_code=code, command=[os.fspath(c) for c in command], failure=reason)
    return process.wait()  # the constructor passes signals on until the process ends
