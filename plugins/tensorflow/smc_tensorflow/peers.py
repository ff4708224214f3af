"""How the hosts of a multi-host TensorFlow job tell each other that a process failed or the job is done.

TensorFlow has no job-wide failure signal: when one worker dies, the others wait in their next
collective (MultiWorkerMirroredStrategy) or keep serving (parameter servers) until a long timeout.
smc therefore runs a small control channel of its own, between the smc processes (never the user's):

* the master host (the first cluster host) listens on ``SMC_TF_CONTROL_PORT`` (default 8891) before
  its worker starts; every other host connects to it (bounded by ``SMC_HOST_WAIT_TIMEOUT``, logged)
  before its own worker starts;
* a host whose worker or parameter server fails reports it; the first failure reported is the job's
  root cause, and the master passes it to every host, which stops its own processes;
* when the master's worker has succeeded it says ``done`` (parameter-server hosts then stop their
  parameter server) and, bounded by ``SMC_TF_PEER_WAIT_TIMEOUT``, waits until every other host's
  worker has ended, to keep passing failures on between them.

Messages are JSON objects, one per line: ``{"hello": host}``, ``{"ended": host, "failure": F|null}``
from the other hosts; ``{"failure": F}``, ``{"done": true}`` from the master. A failure ``F`` is
``{"host", "process", "exit_code", "tail"}`` (``process``: ``worker``, ``parameter server`` or
``smc``; ``tail``: the end of that process's stderr).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from smc_core import ClusterError, logger, wait_for_port

SETTLE_SECONDS = 1.0
"""How long the master, when its own worker fails, waits for another host's earlier failure report:
a worker that dies because a peer died should not be named as the cause."""
VERDICT_SECONDS = 5.0
"""How long a host whose process failed waits for the master to say which failure came first."""


def failure(host: str, process: str, exit_code: int, tail: str) -> dict[str, Any]:
    """A failure record, as the channel carries it."""
    return {"host": host, "process": process, "exit_code": int(exit_code), "tail": tail}


def _send(sock: socket.socket, lock: threading.Lock, message: dict[str, Any]) -> bool:
    data = (json.dumps(message) + "\n").encode()
    try:
        with lock:
            sock.sendall(data)
        return True
    except OSError:
        return False


def _lines(sock: socket.socket) -> Iterable[dict[str, Any]]:
    """The JSON messages arriving on ``sock``, until it closes."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                yield message


class Channel:
    """What both ends share: the first failure known here, and an event set whenever anything changes."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.root: dict[str, Any] | None = None
        """The job's first failure, once known."""
        self.done = False
        """The master host said its worker succeeded (other hosts only)."""
        self.lost: str | None = None
        """Why contact with the master was lost (other hosts only), or None."""
        self.changed = threading.Event()
        self._lock = threading.Lock()

    @property
    def remote_failure(self) -> dict[str, Any] | None:
        """The job's first failure when it happened on another host, else None."""
        root = self.root
        return root if root is not None and root.get("host") != self.host else None

    def wait_changed(self, timeout: float) -> None:
        """Sleep until something changes or ``timeout`` seconds pass."""
        if self.changed.wait(timeout):
            self.changed.clear()


class MasterChannel(Channel):
    """The master host's end: listens on ``port``, passes the first failure to every host.

    :param host: this host's name; :param peers: the other hosts' names; :param port: the port.
    """

    def __init__(self, host: str, peers: Iterable[str], port: int) -> None:
        super().__init__(host)
        self.peers = list(peers)
        self.port = port
        self.connected: dict[str, tuple[socket.socket, threading.Lock]] = {}
        self.ended: set[str] = set()
        self._accepted: list[socket.socket] = []  # every connection, joined or not: closed by close()
        self._server: socket.socket | None = None
        self._closing = False
        self._started_at = time.monotonic()

    def start(self) -> MasterChannel:
        """Listen for the other hosts (on every interface, as TensorFlow's servers do)."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("", self.port))
        except OSError as error:
            server.close()
            raise ClusterError(
                f"smc's control channel cannot listen on port {self.port} of {self.host}: {error}. Free the "
                "port, or set SMC_TF_CONTROL_PORT to another one on every host."
            ) from None
        server.listen(64)
        self._server = server
        self._started_at = time.monotonic()
        threading.Thread(target=self._accept, name="smc-tf-accept", daemon=True).start()
        logger.info("Control channel for %d other host(s) on port %d.", len(self.peers), self.port)
        return self

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closing:
                    sock.close()
                    return
                self._accepted.append(sock)
            threading.Thread(target=self._serve, args=(sock,), name="smc-tf-peer", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        peer: str | None = None
        send_lock = threading.Lock()
        for message in _lines(sock):
            if "hello" in message:
                peer = str(message["hello"])
                with self._lock:
                    self.connected[peer] = (sock, send_lock)
                    root, done = self.root, self.done
                if root is not None:
                    _send(sock, send_lock, {"failure": root})
                elif done:
                    _send(sock, send_lock, {"done": True})
                logger.debug("%s joined the control channel.", peer)
            elif "ended" in message:
                peer = str(message["ended"])
                if message.get("failure"):
                    self.publish(message["failure"])
                with self._lock:
                    self.ended.add(peer)
                self.changed.set()
        sock.close()
        if peer is not None and peer not in self.ended and not self._closing:
            self.publish(
                failure(
                    peer,
                    "smc",
                    1,
                    f"smc on {peer} lost contact with the master host {self.host} before its worker ended "
                    "(smc there was killed, or the network between the hosts failed).",
                )
            )
            with self._lock:
                self.ended.add(peer)
            self.changed.set()

    def publish(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Offer ``entry`` as the job's first failure; pass the first one to every host; return it."""
        with self._lock:
            if self.root is None:
                self.root = entry
                targets = list(self.connected.values())
            else:
                targets = []
            root = self.root
        for sock, lock in targets:
            _send(sock, lock, {"failure": root})
        self.changed.set()
        return root

    def missing_peers(self, timeout: float) -> list[str]:
        """The hosts that have not joined ``timeout`` seconds after the channel opened (else [])."""
        if time.monotonic() - self._started_at < timeout:
            return []
        with self._lock:
            return [p for p in self.peers if p not in self.connected and p not in self.ended]

    def report_end(self, entry: dict[str, Any] | None) -> dict[str, Any] | None:
        """This host's worker ended (``entry``: its failure, or None): return the job's first failure."""
        if entry is None:
            return self.root
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.root is None and time.monotonic() < deadline:
            self.wait_changed(0.05)
        return self.publish(entry)

    def finish(self, *, succeeded: bool, timeout: float) -> None:
        """Say ``done`` (when this host's worker succeeded) and wait, at most ``timeout`` seconds, until
        every other host's worker has ended; then close the channel."""
        if succeeded:
            with self._lock:
                self.done = True
                targets = list(self.connected.values())
            for sock, lock in targets:
                _send(sock, lock, {"done": True})
            start = last_log = time.monotonic()
            while True:
                with self._lock:
                    waiting = [p for p in self.peers if p not in self.ended]
                if not waiting:
                    break
                now = time.monotonic()
                if now - start >= timeout:
                    logger.warning(
                        "%s did not end within %g s of the master's worker (SMC_TF_PEER_WAIT_TIMEOUT); "
                        "the master stops passing failures on.",
                        ", ".join(waiting),
                        timeout,
                    )
                    break
                if now - last_log >= 10:
                    logger.info(
                        "Waiting for the workers on %s to end (%.0f s of %g s, SMC_TF_PEER_WAIT_TIMEOUT).",
                        ", ".join(waiting),
                        now - start,
                        timeout,
                    )
                    last_log = now
                self.wait_changed(0.5)
        self.close()

    def close(self) -> None:
        """Stop listening and close every connection."""
        with self._lock:
            self._closing = True
            connections = list(self._accepted)
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> MasterChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PeerChannel(Channel):
    """A non-master host's end: connected to the master host's channel.

    :param host: this host's name; :param master: the master host; :param port: the channel's port.
    """

    def __init__(self, host: str, master: str, port: int) -> None:
        super().__init__(host)
        self.master = master
        self.port = port
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._closing = False

    def start(self, timeout: float) -> PeerChannel:
        """Connect to the master host, waiting at most ``timeout`` seconds for it (logged)."""
        logger.info("Joining the control channel on %s:%d.", self.master, self.port)
        wait_for_port(self.master, self.port, timeout=timeout)
        try:
            sock = socket.create_connection((self.master, self.port), timeout=30)
        except OSError as error:
            raise ClusterError(
                f"smc cannot reach the master host's control channel {self.master}:{self.port}: {error}. "
                "Check that the hosts reach each other on that port (SMC_TF_CONTROL_PORT)."
            ) from None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        _send(sock, self._send_lock, {"hello": self.host})
        threading.Thread(target=self._listen, name="smc-tf-master", daemon=True).start()
        return self

    def _listen(self) -> None:
        assert self._sock is not None
        for message in _lines(self._sock):
            if "failure" in message and self.root is None:
                self.root = message["failure"]
            elif message.get("done"):
                self.done = True
            self.changed.set()
        if not self._closing and not self.done and self.root is None:
            self.lost = (
                f"smc on {self.host} lost contact with the master host {self.master} "
                f"({self.master}:{self.port}) before it said the job was done: smc there ended or the "
                "network between the hosts failed; see the master host's log."
            )
        self.changed.set()

    def report_end(self, entry: dict[str, Any] | None) -> dict[str, Any] | None:
        """Tell the master that this host's worker ended (``entry``: its failure, or None).

        After a failure, wait a few seconds for the master's verdict and return the job's first
        failure (this one when the master does not answer).
        """
        if self._sock is not None:
            _send(self._sock, self._send_lock, {"ended": self.host, "failure": entry})
        if entry is None:
            return self.root
        deadline = time.monotonic() + VERDICT_SECONDS
        while self.root is None and self.lost is None and time.monotonic() < deadline:
            self.wait_changed(0.05)
        return self.root or entry

    def close(self) -> None:
        """Close the connection."""
        self._closing = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()

    def __enter__(self) -> PeerChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
