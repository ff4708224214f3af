"""The MPI job's coordination channel: JSON lines over TCP between the master and everyone else.

The master listens (:class:`Coordinator`); each worker host keeps one connection open for the whole
job (:class:`MasterLink`), and a rank that fails connects once to report it. Messages, one JSON
object a line:

========================  ==============  =====================================================
message                   direction       meaning
========================  ==============  =====================================================
``hello {host}``          worker->master  this host is up and wants the job's key
``key {public_key, ...}`` master->worker  the job's public client key and the master's address
``ready {host_key}``      worker->master  the job's sshd listens; this is its host key
``failed {reason}``       worker->master  the worker could not get ready (its sshd did not start)
``ping``                  master->worker  a heartbeat: a worker that hears nothing for its
                                          silence bound takes the master as gone
``outcome {exit_code,     master->worker  how the job ended; the worker ends the same way
failure}``
``bye``                   worker->master  the worker got the outcome
``rank_failed {...}``     rank->master    a rank's exit code, host and traceback tail
``stream {rank, ...}``    rank->master    this connection carries a rank's output (sent first: a
                                          rank that prints nothing is waited for too)
``out {fd, data}``        rank->master    one whole line of a rank's stdout (fd 1) or stderr (2),
                                          written to the master's own, whole
========================  ==============  =====================================================

Nothing secret goes over the channel: public keys, outcomes and log tails.
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smc_core.base.log import logger
from smc_core.errors import ClusterError

__all__ = ["EOF", "Coordinator", "MasterLink", "WorkerState", "report_rank_failure"]

EOF: dict[str, Any] = {"type": "eof"}
"""What :meth:`MasterLink.receive` returns once the master has closed the connection."""


def _send(sock: socket.socket, lock: threading.Lock, message: Mapping[str, Any]) -> bool:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
    with lock:
        try:
            sock.sendall(data)
            return True
        except OSError:
            return False


def _lines(sock: socket.socket) -> Iterable[dict[str, Any]]:
    with sock.makefile("rb") as reader:
        for raw in reader:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if isinstance(message, dict):
                yield message


@dataclass
class WorkerState:
    """What the master knows of one worker host."""

    host: str
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    host_key: str | None = None
    failure: str | None = None
    said_bye: bool = False
    gone: bool = False


class Coordinator:
    """The master's side: hands out the job's key, learns who is ready, collects rank failures,
    sends heartbeats and, at the end, the outcome.

    :param address: where to listen (the master's address on the job's interface, or 127.0.0.1).
    :param port: the TCP port (0: any free port, for one-host jobs).
    :param hosts: the worker hosts and the addresses they resolve to (``{"algo-2": "10.0.0.2"}``);
        a connection that says it is a host from another address is refused.
    :param public_key: the job's public client key, handed to every worker.
    :param heartbeat: seconds between pings.
    """

    def __init__(
        self,
        address: str,
        port: int,
        hosts: Mapping[str, str],
        *,
        public_key: str = "",
        heartbeat: float = 5.0,
    ) -> None:
        try:
            self._server = socket.create_server((address, port))
        except OSError as exc:
            raise ClusterError(
                f"The MPI coordinator cannot listen on {address}:{port}: {exc.strerror or exc}. "
                "Another process holds the port: set SMC_MPI_PORT to a free one (the same on every host)."
            ) from exc
        self.address = address
        self.port = int(self._server.getsockname()[1])
        self.hosts = dict(hosts)
        self.public_key = public_key  # known before listening: a worker may connect at once
        self.workers: dict[str, WorkerState] = {}
        self.rank_failures: list[dict[str, Any]] = []
        self.streams_ended = 0  # ranks' output connections that have closed
        self.stderr_tails: dict[Any, collections.deque[str]] = {}
        self.stream_ranks: dict[Any, dict[str, Any]] = {}
        self.tracebacks: list[Any] = []  # ranks, in the order they first printed a traceback
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._heartbeat = heartbeat
        threading.Thread(target=self._accept, daemon=True, name="smc-mpi-accept").start()
        threading.Thread(target=self._ping, daemon=True, name="smc-mpi-ping").start()

    @property
    def endpoint(self) -> str:
        """``address:port``, as ranks are told it (``SMC_MPI_COORDINATOR``)."""
        return f"{self.address}:{self.port}"

    # --- serving ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, peer = self._server.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(sock, peer[0]), daemon=True, name="smc-mpi-link"
            ).start()

    def _serve(self, sock: socket.socket, peer: str) -> None:
        lock = threading.Lock()
        state: WorkerState | None = None
        streaming = False
        try:
            for message in _lines(sock):
                kind = message.get("type")
                if kind == "stream":  # a rank's output connection, counted even if it prints nothing
                    streaming = True
                    continue
                if kind == "out":
                    streaming = True
                    _write_line(message.get("fd"), str(message.get("data", "")))
                    if message.get("fd") == 2:
                        self._keep_stderr(message)
                    continue
                if kind == "rank_failed":
                    with self._changed:
                        self.rank_failures.append(message)
                        self._changed.notify_all()
                    _send(sock, lock, {"type": "ok"})
                    return
                if kind == "hello":
                    state = self._hello(sock, lock, str(message.get("host")), peer)
                    if state is None:
                        return
                    continue
                if state is None:
                    return
                with self._changed:
                    if kind == "ready":
                        state.host_key = str(message.get("host_key") or "")
                    elif kind == "failed":
                        state.failure = str(message.get("reason") or "no reason given")
                    elif kind == "bye":
                        state.said_bye = True
                    self._changed.notify_all()
        except OSError:
            pass
        finally:
            with self._changed:
                if state is not None:
                    state.gone = True
                if streaming:
                    self.streams_ended += 1
                self._changed.notify_all()
            with contextlib.suppress(OSError):
                sock.close()

    def _keep_stderr(self, message: Mapping[str, Any]) -> None:
        rank = message.get("rank")
        line = str(message.get("line", ""))
        with self._changed:
            if rank not in self.stderr_tails:
                self.stderr_tails[rank] = collections.deque(maxlen=60)
                self.stream_ranks[rank] = {k: message.get(k) for k in ("rank", "local_rank", "host")}
            self.stderr_tails[rank].append(line)
            if line.startswith("Traceback (most recent call last)") and rank not in self.tracebacks:
                self.tracebacks.append(rank)

    def _hello(self, sock: socket.socket, lock: threading.Lock, host: str, peer: str) -> WorkerState | None:
        expected = self.hosts.get(host)
        if expected is None or expected != peer:
            logger.warning(
                "MPI coordinator: refused a connection from %s saying it is host %r (expected hosts: %s).",
                peer,
                host,
                ", ".join(f"{h}={a}" for h, a in self.hosts.items()),
            )
            return None
        state = WorkerState(host, sock, lock)
        with self._changed:
            self.workers[host] = state
            self._changed.notify_all()
        _send(sock, lock, {"type": "key", "public_key": self.public_key, "master_address": self.address})
        logger.info("MPI: worker %s connected from %s.", host, peer)
        return state

    def _ping(self) -> None:
        while not self._closed.wait(self._heartbeat):
            for state in list(self.workers.values()):
                _send(state.sock, state.lock, {"type": "ping"})

    # --- the master's waits ----------------------------------------------------------------------
    def wait_for_workers(self, timeout: float, setting: str) -> dict[str, str]:
        """Wait until every worker host reported its sshd ready; return ``{host: host_key}``.

        :raises ClusterError: naming the hosts that never answered, or that reported a failure.
        """
        start = time.monotonic()
        deadline = start + timeout
        last_log = start - 10.0
        with self._changed:
            while True:
                failed = {h: s.failure for h, s in self.workers.items() if s.failure}
                if failed:
                    raise ClusterError(next(iter(failed.values())))
                lost = [h for h, s in self.workers.items() if s.gone and not s.host_key]
                if lost:
                    raise ClusterError(
                        f"MPI worker host {lost[0]} closed its connection before its sshd was ready "
                        "(see that host's log)."
                    )
                pending = [h for h in self.hosts if not (h in self.workers and self.workers[h].host_key)]
                if not pending:
                    logger.info("MPI: every worker's sshd is ready after %.1f s.", time.monotonic() - start)
                    return {h: str(self.workers[h].host_key) for h in self.hosts}
                now = time.monotonic()
                if now >= deadline:
                    silent = [h for h in pending if h not in self.workers]
                    detail = (
                        f"{', '.join(silent)} never reached the master's coordinator at {self.endpoint}"
                        if silent
                        else f"{', '.join(pending)} connected but never reported its sshd ready"
                    )
                    raise ClusterError(
                        f"MPI worker host(s) {', '.join(pending)} did not get ready within {timeout:g} s: "
                        f"{detail}. Check that smc runs on every host with the same job, that the port "
                        f"{self.port} is open between hosts, and that sshd can start there; set {setting} "
                        "(seconds) to wait longer."
                    )
                if now - last_log >= 10:
                    logger.info(
                        "MPI: waiting for worker sshd on %s (%.0f s of %g s, %s)",
                        ", ".join(pending),
                        now - start,
                        timeout,
                        setting,
                    )
                    last_log = now
                self._changed.wait(min(1.0, max(0.01, deadline - now)))

    def root_rank_failure(self, wait: float = 2.0) -> dict[str, Any] | None:
        """The rank failure that caused the others (waiting up to ``wait`` s for any), or None.

        The first report of a rank that failed on its own: ranks that mpirun stopped because of it
        (SIGTERM, SIGKILL, SIGINT) may report first; they are the cause only when nothing else is.
        """
        stopped = {128 + 15, 128 + 9, 128 + 2}
        with self._changed:
            self._changed.wait_for(lambda: bool(self.rank_failures), timeout=wait)
            own = [r for r in self.rank_failures if r.get("exit_code") not in stopped]
            if own:
                return own[0]
            # A rank killed right after it failed (MPI_Abort ends every rank at once) may not have
            # reported: the first rank that printed a traceback is the cause.
            if self.tracebacks:
                rank = self.tracebacks[0]
                return {**self.stream_ranks[rank], "tail": "\n".join(self.stderr_tails[rank])}
            return self.rank_failures[0] if self.rank_failures else None

    def wait_for_output(self, streams: int, timeout: float) -> None:
        """Wait (``timeout`` s at most) until ``streams`` ranks' output connections have closed, so that
        every line they sent is written before the job's own last lines."""
        with self._changed:
            self._changed.wait_for(lambda: self.streams_ended >= streams, timeout=timeout)

    def finish(self, exit_code: int, failure: str | None, wait: float = 10.0) -> None:
        """Send the outcome to every connected worker, wait (``wait`` s at most) until each says bye
        or goes, then stop listening."""
        outcome = {"type": "outcome", "exit_code": exit_code, "failure": failure}
        for state in list(self.workers.values()):
            _send(state.sock, state.lock, outcome)
        with self._changed:
            self._changed.wait_for(
                lambda: all(s.said_bye or s.gone for s in self.workers.values()), timeout=wait
            )
        self.close()

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()
        for state in list(self.workers.values()):
            with contextlib.suppress(OSError):
                state.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                state.sock.close()


_OUTPUT_LOCK = threading.Lock()


def _write_line(fd: Any, text: str) -> None:
    """Write one rank's line to this process's stdout (fd 1) or stderr, in one piece."""
    stream = sys.stderr if fd == 2 else sys.stdout
    data = text.encode("utf-8", "surrogateescape")
    with _OUTPUT_LOCK:
        try:
            binary = getattr(stream, "buffer", None)
            if binary is not None:
                binary.write(data)
                binary.flush()
            else:
                stream.write(data.decode("utf-8", "replace"))
                stream.flush()
        except (OSError, ValueError):
            pass


class MasterLink:
    """A worker's connection to the master's :class:`Coordinator`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="smc-mpi-master").start()

    @classmethod
    def connect(cls, master: str, port: int, timeout: float, setting: str) -> MasterLink:
        """Connect to the master's coordinator, retrying until ``timeout`` seconds have passed.

        :raises ClusterError: naming the master, the port and the last error.
        """
        start = time.monotonic()
        last_log = start
        while True:
            try:
                sock = socket.create_connection((master, port), timeout=5.0)
                sock.settimeout(None)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                return cls(sock)
            except OSError as exc:
                error = exc
            now = time.monotonic()
            if now - start >= timeout:
                raise ClusterError(
                    f"The MPI master {master} did not accept connections on port {port} within {timeout:g} s "
                    f"(last error: {error}). Check that smc runs there with the same job; set {setting} "
                    "(seconds) to wait longer."
                )
            if now - last_log >= 10:
                logger.info(
                    "MPI: waiting for the master %s:%d (%.0f s of %g s)", master, port, now - start, timeout
                )
                last_log = now
            time.sleep(0.1)  # a worker that came up before the master starts as soon as it listens

    def _read(self) -> None:
        try:
            for message in _lines(self.sock):
                self._messages.put(message)
        except OSError:
            pass
        self._messages.put(EOF)

    def send(self, message: Mapping[str, Any]) -> bool:
        """Send one message; False when the connection is gone."""
        return _send(self.sock, self._lock, message)

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message (:data:`EOF` once the master closed), or None after ``timeout`` s."""
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


def report_rank_failure(endpoint: str, report: Mapping[str, Any], timeout: float = 5.0) -> bool:
    """Send a rank's failure to the coordinator at ``endpoint`` (``host:port``) and wait for its
    acknowledgement; False when it could not be delivered."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if not _send(sock, threading.Lock(), {"type": "rank_failed", **report}):
                return False
            return any(m.get("type") == "ok" for m in _lines(sock))
    except (OSError, ValueError):
        return False
