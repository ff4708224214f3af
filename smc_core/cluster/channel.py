"""The job channel: one job-control channel between the smc processes of a multi-host job.

JSON lines over TCP (:mod:`smc_core.cluster.messages`). The master host listens
(:class:`ChannelMaster`); every other host's smc keeps one connection to it for the whole job
(:class:`ChannelLink`); a process of the job (an MPI rank's wrapper) may connect for a moment to report
a failure (:func:`deliver`) or to relay its output (:class:`Connection`). The core opens the channel for
every multi-host job (:mod:`smc_core.cluster.job`); launch styles and plugins use it through
:func:`~smc_core.cluster.job.job_channel`. Nothing secret goes over it: public keys, outcomes, log
tails.

The core's messages
-------------------

===============  ===============  =========================================================================
``type``         direction        meaning
===============  ===============  =========================================================================
``hello``        worker→master    a host's smc joins: ``host``, ``attempt`` (the job attempt it runs); the
                                  master refuses a host it does not know, or one that connects from
                                  another address than its name resolves to
``welcome``      master→worker    the host is accepted: ``master``, ``hosts``
``bye``          either way       the sender leaves on purpose (``reason``): a connection that closes
                                  without it is a **lost** peer (its smc died, or the network broke)
``heartbeat``    either way       the sender is alive: sent every sixth of the liveness bound; sent as a
                                  request, a probe that the other end answers at once
``stop``         any→master,      a host's smc received a stop signal (``host``, ``signal``): the master
                 master→all       passes it on, and every host stops (:mod:`smc_core.cluster.job`)
``lost``         master→all       the master lost a host (``host``, ``how``: ``died`` or ``silent``,
                                  ``detail``): every host stops (:mod:`smc_core.cluster.job`)
``outcome``      master→all       how the job ended: ``exit_code``, ``failure``; sent at the job's end
                                  (:meth:`ChannelMaster.finish`), each host acknowledges it
``rank_failed``  any→master       a process failed: its :class:`~smc_core.cluster.report.RankFailure`
                                  (host, rank, exit code, traceback tail); the master keeps them all and
                                  names the root cause (:meth:`ChannelMaster.root_failure`)
``stream``       process→master   this connection relays one process's output (sent first)
``out``          process→master   one whole line of that output (``fd`` 1 or 2, ``data``), written to the
                                  master's own stdout or stderr, whole; stderr lines also kept per rank
``ack``          reply            a request was received (the reply when no handler answers one)
===============  ===============  =========================================================================

**Requests and replies.** A message sent with an ``id`` (:meth:`ChannelLink.request`,
:meth:`ChannelMaster.gather`, :func:`deliver`) waits for the message whose ``reply_to`` is that id: the
value the receiving handler returns, else an ``ack``. Every wait is bounded.

**A launch style's own messages.** Define a message class with :func:`~smc_core.cluster.messages.message_kind`
under a prefix of your own (``mpi.ready``, ``tf.failure``), send it with :meth:`ChannelLink.send`,
:meth:`ChannelMaster.send` or :meth:`ChannelMaster.broadcast`, and handle it with ``on(Kind, handler)``
on the other end. MPI's key exchange (``mpi.key``, ``mpi.ready``, ``mpi.failed``) and smc-tensorflow's
failure relay (``tf.failure``, ``tf.ended``, ``tf.done``) are built this way.

How a connection closes is known: :attr:`Peer.closed` (master side) and :attr:`ChannelLink.closed` are
``"bye"`` after a goodbye, ``"lost"`` when the connection ended without one, and ``"silent"`` when
nothing came over it within the liveness bound (the channel then closes it); ``on_closed`` handlers
hear of each, once.

Liveness
--------
Given a bound (``liveness=`` seconds: the job's ``SMC_LIVENESS_TIMEOUT``), both ends keep every
connection of a joined host alive: each sends a ``heartbeat`` every sixth of the bound (from a thread of
its own, so that a send held up by a broken network never delays the check), and a watcher compares
:attr:`Peer.last_heard` / :attr:`ChannelLink.last_heard`, which every message received moves on, to the
bound. A host unheard for longer is closed as ``"silent"`` and reported to ``on_closed`` handlers, with
how long it was silent in ``reason``. A host whose smc dies is ``"lost"`` at once (its kernel closes the
connection). A watcher that itself woke up late (this process was frozen) skips one check, so that the
heartbeats waiting in its sockets are read first. :meth:`ChannelMaster.probe` and
:meth:`ChannelLink.probe` ask the other end for a heartbeat now: a quick answer from a live host, or
the liveness bound for a silent one.

Seams for what comes next
-------------------------
* **Stacks from every host** (a stall, or on demand): the master sends a request to every host with
  :meth:`ChannelMaster.gather` (``stacks.request``); each host's handler (``link.on(StacksRequest, ...)``)
  returns its ranks' stacks as the reply; ``gather`` returns the replies and names the hosts that did
  not answer within its bound.
* **One outcome everywhere** and **whole-job restarts**: the master decides and tells every host with
  :meth:`ChannelMaster.broadcast` (``outcome`` today; ``restart`` with the next attempt number); each
  host's ``hello`` carries the ``attempt`` it runs, so a host of an older attempt is told apart.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from smc_core.base.log import logger
from smc_core.cluster.messages import (
    Ack,
    Bye,
    Envelope,
    Heartbeat,
    Hello,
    Message,
    Outcome,
    Output,
    OutputStream,
    RankFailed,
    Welcome,
    decode,
    encode,
)
from smc_core.cluster.network import resolve_host
from smc_core.cluster.report import TRACEBACK_HEADER, RankFailure, root_failure
from smc_core.cluster.waits import wait_until
from smc_core.errors import ClusterError
from smc_core.launch.progress import observe_line

__all__ = [
    "ChannelLink",
    "ChannelMaster",
    "Connection",
    "Gathered",
    "Peer",
    "deliver",
    "heartbeat_interval",
]

M = TypeVar("M", bound=Message)
C = TypeVar("C")
Handler = Callable[[Any, Any], Message | None]

PORT_SETTING = "SMC_CHANNEL_PORT"
LIVENESS_SETTING = "SMC_LIVENESS_TIMEOUT"
BEATS_PER_BOUND = 6
"""Heartbeats each end sends within one liveness bound."""
TAIL_LINES = 60
"""stderr lines the master keeps per relayed process (for the root cause's traceback)."""
_MAX_LINE = 1024 * 1024


class Connection:
    """One TCP connection carrying channel messages, one JSON line each, in both directions.

    :param sock: a connected socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.peer_address = ""
        with contextlib.suppress(OSError):
            self.peer_address = str(sock.getpeername()[0])

    @classmethod
    def open(cls, endpoint: str, timeout: float = 10.0, source: str | None = None) -> Connection:
        """Connect to ``endpoint`` (``address:port``) within ``timeout`` seconds.

        :param source: the local address to connect from, where it can be used (a host's own address,
            so that the master sees the connection come from it).
        :raises OSError: the connection could not be made.
        """
        host, _, port = endpoint.rpartition(":")
        address = (host, int(port))
        sock: socket.socket | None = None
        if source:
            with contextlib.suppress(OSError):
                sock = socket.create_connection(address, timeout=timeout, source_address=(source, 0))
        if sock is None:
            sock = socket.create_connection(address, timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return cls(sock)

    def next_id(self) -> int:
        """A request id, unique on this connection."""
        return next(self._ids)

    def send(self, message: Message, *, id: int | None = None, reply_to: int | None = None) -> bool:
        """Send one message whole; False when the connection is gone."""
        data = encode(message, id=id, reply_to=reply_to)
        with self._lock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def envelopes(self) -> Iterator[Envelope]:
        """The messages arriving, until the connection closes (lines that are no message are skipped)."""
        try:
            with self.sock.makefile("rb") as reader:
                while True:
                    line = reader.readline(_MAX_LINE)
                    if not line:
                        return
                    envelope = decode(line)
                    if envelope is not None:
                        yield envelope
        except (OSError, ValueError):
            return

    def close(self) -> None:
        """Close the connection (both directions)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


class _Handlers:
    """Message handlers by kind, and the messages no handler took yet (kept for the first handler of
    their kind, or for ``receive``: a message that arrives before its handler is registered is not lost)."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list[Handler]] = collections.defaultdict(list)
        self.lock = threading.Lock()
        self.waiting: collections.deque[tuple[Any, Message]] = collections.deque(maxlen=1000)
        self.arrived = threading.Condition(self.lock)

    def add(self, kind: type[Message], handler: Handler) -> None:
        with self.lock:
            self.by_kind[kind.kind].append(handler)
            kept = [item for item in self.waiting if item[1].kind == kind.kind]
            for item in kept:
                self.waiting.remove(item)
        for sender, message in kept:
            self._call(handler, sender, message)

    def remove(self, kind: type[Message], handler: Handler) -> None:
        with self.lock:
            handlers = self.by_kind.get(kind.kind, [])
            if handler in handlers:
                handlers.remove(handler)

    def run(self, sender: Any, message: Message, *, keep: bool = True) -> Message | None:
        """Call the handlers of ``message``'s kind (or keep it for later, unless ``keep`` is False: a
        message the channel itself took care of); the first reply returned."""
        with self.lock:
            handlers = list(self.by_kind.get(message.kind, ()))
            if not handlers:
                if not keep:
                    return None
                self.waiting.append((sender, message))
                self.arrived.notify_all()
                return None
        reply: Message | None = None
        for handler in handlers:
            answer = self._call(handler, sender, message)
            if reply is None and isinstance(answer, Message):
                reply = answer
        return reply

    @staticmethod
    def _call(handler: Handler, sender: Any, message: Message) -> Message | None:
        try:
            return handler(sender, message)
        except Exception:  # a handler's bug must not end the channel's reader
            logger.exception("Channel: the handler of %r raised", message.kind)
            return None

    def take(self, kinds: set[str], timeout: float) -> Message | None:
        """The oldest message kept of ``kinds`` (any kind when empty), waiting ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for item in self.waiting:
                    if not kinds or item[1].kind in kinds:
                        self.waiting.remove(item)
                        return item[1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.arrived.wait(remaining)


class _Replies:
    """Replies awaited, by request id."""

    def __init__(self, changed: threading.Condition) -> None:
        self.changed = changed
        self.got: dict[tuple[Any, int], Message] = {}

    def put(self, key: tuple[Any, int], message: Message) -> None:
        with self.changed:
            self.got[key] = message
            self.changed.notify_all()


@dataclass
class Peer:
    """What the master knows of one worker host.

    Attributes:
        host: its name.
        address: the address it connected from.
        attempt: the job attempt it said it runs.
        joined_at: when it joined (``time.monotonic()``).
        last_heard: when anything last came from it (``time.monotonic()``).
        closed: None while connected; ``"bye"`` when it left on purpose, ``"lost"`` when its connection
            ended without a goodbye, ``"silent"`` when nothing came from it within the liveness bound.
        reason: the goodbye's reason, or what ended the connection.
    """

    host: str
    address: str
    attempt: int
    joined_at: float
    last_heard: float
    closed: str | None = None
    reason: str = ""
    connection: Connection | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Gathered:
    """The replies to one request sent to several hosts (:meth:`ChannelMaster.gather`).

    Attributes:
        replies: each host's reply.
        missing: the hosts that did not answer within the bound (or were gone).
    """

    replies: Mapping[str, Message]
    missing: tuple[str, ...]


class ChannelMaster:
    """The master host's end of the job channel (see the module docstring).

    :param host: this host's name.
    :param workers: the other hosts of the job; only they may join.
    :param port: the TCP port (0: any free one, for a one-host job's processes).
    :param address: where to listen: an address of this host, or None for every interface.
    :param resolve: how a worker's name becomes the address it must connect from (``resolve_host``).
    :param liveness: the liveness bound in seconds (see the module docstring), None for none.
    """

    def __init__(
        self,
        host: str,
        workers: Iterable[str],
        *,
        port: int,
        address: str | None = None,
        resolve: Callable[[str], str | None] = resolve_host,
        liveness: float | None = None,
    ) -> None:
        self.host = host
        self.workers = tuple(workers)
        self.port = port
        self.address = address
        self.liveness = liveness
        self._resolve = resolve
        self.changed = threading.Condition(threading.RLock())
        """Notified on every change of what the master knows (a peer joined or closed, a reply, a
        failure, a stream's end): wait on it with :func:`~smc_core.cluster.waits.wait_until`."""
        self.peers: dict[str, Peer] = {}
        self.rank_failures: list[RankFailure] = []
        """Every ``rank_failed`` report, in the order they came."""
        self.streams_opened = 0
        self.streams_ended = 0
        self._tails: dict[tuple[str, Any], collections.deque[str]] = {}
        self._printed_traceback: list[RankFailure] = []
        self._handlers = _Handlers()
        self._closed_handlers: list[Callable[[Peer], None]] = []
        self._replies = _Replies(self.changed)
        self._connections: list[Connection] = []
        self._server: socket.socket | None = None
        self._closing = threading.Event()
        self.opened_at = time.monotonic()

    # --- life --------------------------------------------------------------------------------------
    def start(self) -> ChannelMaster:
        """Listen, and serve every connection in a thread of its own.

        :raises ClusterError: the port cannot be had, naming it and ``SMC_CHANNEL_PORT``.
        """
        try:
            server = socket.create_server((self.address or "", self.port), reuse_port=False)
        except OSError as error:
            if self.address and error.errno == errno.EADDRNOTAVAIL:  # the name is not this machine's
                server = None
            else:
                raise ClusterError(self._bind_error(error)) from None
        if server is None:
            try:
                server = socket.create_server(("", self.port))
            except OSError as error:
                raise ClusterError(self._bind_error(error)) from None
        self._server = server
        self.port = int(server.getsockname()[1])
        self.opened_at = time.monotonic()
        threading.Thread(target=self._accept, daemon=True, name="smc-channel-accept").start()
        if self.liveness:
            _keep_alive(self.liveness, self._closing, self._beat, self._check, self.host)
        logger.info(
            "The job's channel listens on %s:%d for %s.",
            self.address or "every interface",
            self.port,
            ", ".join(self.workers) or "this host's processes",
        )
        return self

    def _bind_error(self, error: OSError) -> str:
        return (
            f"smc's job channel cannot listen on port {self.port} of {self.host}: {error.strerror or error}. "
            f"Another process holds the port: set {PORT_SETTING} to a free one (the same on every host)."
        )

    @property
    def endpoint(self) -> str:
        """``address:port`` where it listens, as a process of this host reaches it."""
        address = self.address or "127.0.0.1"
        return f"{address}:{self.port}"

    def on(self, kind: type[M], handler: Callable[[Peer | None, M], Message | None]) -> None:
        """Call ``handler(peer, message)`` for every message of ``kind`` (``peer`` None for a process's
        connection that did not join as a host); the message it returns is the reply to a request.

        Messages of ``kind`` that came before any handler of it was registered are handed to it now.
        ``on(Hello, handler)`` hears every host that joins (after its welcome)."""
        self._handlers.add(kind, handler)

    def off(self, kind: type[M], handler: Callable[[Peer | None, M], Message | None]) -> None:
        """Stop calling ``handler`` for ``kind`` (a launch style that runs again, after a restart,
        registers its handlers anew)."""
        self._handlers.remove(kind, handler)

    def on_closed(self, handler: Callable[[Peer], None]) -> None:
        """Call ``handler(peer)`` when a joined host leaves (``peer.closed == "bye"``), is lost
        (``"lost"``) or falls silent (``"silent"``); once per host."""
        self._closed_handlers.append(handler)

    # --- liveness --------------------------------------------------------------------------------
    def _connected(self) -> list[Peer]:
        with self.changed:
            return [p for p in self.peers.values() if p.closed is None and p.connection is not None]

    def _beat(self) -> None:
        for peer in self._connected():
            assert peer.connection is not None
            peer.connection.send(Heartbeat())

    def _check(self, bound: float) -> None:
        now = time.monotonic()
        for peer in self._connected():
            silent = now - peer.last_heard
            if silent > bound:
                self._close_peer(
                    peer,
                    "silent",
                    f"nothing heard from it for {silent:.1f} s, more than the liveness bound of {bound:g} s "
                    f"({LIVENESS_SETTING})",
                )

    def _close_peer(self, peer: Peer, how: str, reason: str) -> None:
        """Close ``peer`` as ``how`` (``"silent"``), unless it closed already; tell the handlers."""
        with self.changed:
            if peer.closed is not None or self.peers.get(peer.host) is not peer:
                return
            peer.closed, peer.reason = how, reason
            self.changed.notify_all()
        if peer.connection is not None:
            peer.connection.close()
        self._tell_closed(peer)

    def _tell_closed(self, peer: Peer) -> None:
        if self._closing.is_set():
            return
        if peer.closed != "bye":
            logger.warning("The job's channel lost %s: %s.", peer.host, peer.reason)
        _call_closed_handlers(self._closed_handlers, peer)

    def probe(self, *, timeout: float, hosts: Sequence[str] | None = None) -> list[str]:
        """Ask every connected host of ``hosts`` (default: all) for a heartbeat now and wait, at most
        ``timeout`` seconds, until each answered or closed (a silent one closes when the liveness
        bound runs out); the hosts that did not answer."""
        return list(self.gather(Heartbeat(), timeout=timeout, hosts=hosts).missing)

    # --- serving ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._server is not None
        while not self._closing.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            connection = Connection(sock)
            with self.changed:
                if self._closing.is_set():
                    connection.close()
                    return
                self._connections.append(connection)
            threading.Thread(
                target=self._serve, args=(connection,), daemon=True, name="smc-channel-peer"
            ).start()

    def _serve(self, connection: Connection) -> None:
        peer: Peer | None = None
        streaming = False
        said_bye = ""
        for envelope in connection.envelopes():
            message = envelope.message
            if peer is not None:
                peer.last_heard = time.monotonic()
            if envelope.reply_to is not None:
                self._replies.put((peer.host if peer else None, envelope.reply_to), message)
                continue
            if isinstance(message, Hello):
                peer = self._join(connection, message)
                if peer is None:
                    break
                continue
            if isinstance(message, Bye):
                said_bye = message.reason or "bye"
            elif isinstance(message, OutputStream):
                streaming = True
                with self.changed:
                    self.streams_opened += 1
                    self.changed.notify_all()
            elif isinstance(message, Output):
                self._write_output(message)
            elif isinstance(message, RankFailed):
                with self.changed:
                    self.rank_failures.append(message.failure)
                    self.changed.notify_all()
            core = isinstance(message, (Bye, OutputStream, Output, RankFailed, Heartbeat))
            reply = self._handlers.run(peer, message, keep=not core)
            if envelope.id is not None:
                connection.send(reply or Ack(), reply_to=envelope.id)
            if said_bye:
                break
        connection.close()
        closed_here = False
        with self.changed:
            if streaming:
                self.streams_ended += 1
            if peer is not None and self.peers.get(peer.host) is peer and peer.closed is None:
                peer.closed = "bye" if said_bye else "lost"
                peer.reason = said_bye or "the connection ended without a goodbye"
                closed_here = True
            self.changed.notify_all()
        if peer is not None and closed_here:
            self._tell_closed(peer)

    def _join(self, connection: Connection, hello: Hello) -> Peer | None:
        host = hello.host
        if host not in self.workers:
            reason = (
                f"refused: {connection.peer_address} says it is {host!r}, which is not a host of this job "
                f"(hosts: {', '.join(self.workers) or 'none'})"
            )
            logger.warning("The job's channel %s.", reason)
            connection.send(Bye(reason))
            return None
        expected = self._resolve(host)
        if expected is None:  # its name resolves here later (hosts come up minutes apart): try again
            logger.info("The job's channel: %s does not resolve here yet; it will try again.", host)
            connection.send(Bye(f"{host} does not resolve on {self.host} yet", retry=True))
            return None
        if expected != connection.peer_address:
            reason = (
                f"refused: {connection.peer_address} says it is {host!r}, which resolves to {expected} on "
                f"{self.host}"
            )
            logger.warning("The job's channel %s.", reason)
            connection.send(Bye(reason))
            return None
        now = time.monotonic()
        peer = Peer(host, connection.peer_address, hello.attempt, now, now, connection=connection)
        with self.changed:
            old = self.peers.get(host)
            self.peers[host] = peer
            self.changed.notify_all()
        if old is not None and old.connection is not None and old.closed is None:
            old.connection.close()  # the same host again (its smc restarted): the new connection wins
        connection.send(Welcome(self.host, (self.host, *self.workers)))
        logger.info("%s joined the job's channel from %s.", host, connection.peer_address)
        self._handlers.run(peer, hello)
        return peer

    def _write_output(self, message: Output) -> None:
        write_line(message.fd, message.data)
        observe_line(message.line)  # a rank's line is progress for the stall watch
        if message.fd != 2:
            return
        key = (message.host, message.rank)
        with self.changed:
            tail = self._tails.get(key)
            if tail is None:
                tail = self._tails[key] = collections.deque(maxlen=TAIL_LINES)
            tail.append(message.line)
            if message.line.startswith(TRACEBACK_HEADER) and not any(
                (f.host, f.rank) == key for f in self._printed_traceback
            ):
                self._printed_traceback.append(
                    RankFailure(message.host, None, rank=message.rank, local_rank=message.local_rank)
                )

    # --- talking -------------------------------------------------------------------------------
    def joined(self) -> list[str]:
        """The hosts connected now."""
        with self.changed:
            return [h for h, p in self.peers.items() if p.closed is None]

    def send(self, host: str, message: Message) -> bool:
        """Send ``message`` to ``host``; False when it is not connected."""
        with self.changed:
            peer = self.peers.get(host)
        if peer is None or peer.closed is not None or peer.connection is None:
            return False
        return peer.connection.send(message)

    def broadcast(self, message: Message) -> list[str]:
        """Send ``message`` to every connected host; the hosts it could not reach."""
        return [host for host in self.workers if not self.send(host, message)]

    def gather(self, request: Message, *, timeout: float, hosts: Sequence[str] | None = None) -> Gathered:
        """Send ``request`` to ``hosts`` (default: every connected host) and wait, at most ``timeout``
        seconds, for each one's reply (what its handler returned, else an ``ack``)."""
        with self.changed:
            targets = [h for h in (hosts or self.workers) if h in self.peers and self.peers[h].closed is None]
        asked: dict[str, int] = {}
        for host in targets:
            peer = self.peers[host]
            assert peer.connection is not None
            request_id = peer.connection.next_id()
            if peer.connection.send(request, id=request_id):
                asked[host] = request_id

        def answered() -> bool:
            return all(
                (h, i) in self._replies.got or self.peers[h].closed is not None for h, i in asked.items()
            )

        wait_until(
            answered,
            timeout=timeout,
            waiting_for=f"every host to answer {request.kind}",
            changed=self.changed,
            raise_on_timeout=False,
        )
        with self.changed:
            replies = {
                h: self._replies.got.pop((h, i)) for h, i in asked.items() if (h, i) in self._replies.got
            }
        missing = tuple(h for h in (hosts or self.workers) if h not in replies)
        return Gathered(replies, missing)

    def wait_joined(
        self, *, timeout: float, setting: str | None = None, hosts: Sequence[str] | None = None
    ) -> None:
        """Wait, at most ``timeout`` seconds, until every host of ``hosts`` (default: all) has joined.

        :raises ClusterError: naming the hosts that never joined, or left, and ``setting``.
        """
        wanted = list(hosts or self.workers)

        def missing() -> list[str]:
            return [h for h in wanted if h not in self.peers]

        def check() -> bool:
            gone = [p for h, p in self.peers.items() if h in wanted and p.closed in ("lost", "silent")]
            if gone:
                raise ClusterError(f"{gone[0].host} left the job's channel on {self.host}: {gone[0].reason}.")
            return not missing()

        wait_until(
            check,
            timeout=timeout,
            waiting_for=lambda: f"{', '.join(missing())} to join the job's channel on {self.endpoint}",
            setting=setting,
            changed=self.changed,
            error=lambda _: (
                f"{', '.join(missing())} did not join the job's channel on {self.host} (port {self.port}) "
                f"within {timeout:g} s: smc there did not start, failed before it could join (see its log), "
                f"or cannot reach this port ({PORT_SETTING}). "
                + (f"Set {setting} (seconds) to wait longer." if setting else "")
            ),
        )

    def wait_for_streams(self, count: int, timeout: float) -> None:
        """Wait (``timeout`` seconds at most) until ``count`` relayed output streams have ended, so that
        every line they sent is written before the job's own last lines."""
        wait_until(
            lambda: self.streams_ended >= count,
            timeout=timeout,
            waiting_for="the processes' output to end",
            changed=self.changed,
            raise_on_timeout=False,
            first_log=timeout,
        )

    def root_failure(self, wait: float = 2.0) -> RankFailure | None:
        """The failure that caused the others (:func:`~smc_core.cluster.report.root_failure`), waiting
        up to ``wait`` seconds for a first report; a process known only from its traceback gets the
        stderr it printed as its tail."""
        wait_until(
            lambda: bool(self.rank_failures),
            timeout=wait,
            waiting_for="a failure report",
            changed=self.changed,
            raise_on_timeout=False,
            first_log=wait,
        )
        with self.changed:
            root = root_failure(self.rank_failures, self._printed_traceback)
            if root is not None and not root.tail:
                tail = self._tails.get((root.host, root.rank))
                if tail:
                    root = RankFailure(
                        root.host, root.exit_code, "\n".join(tail), root.rank, root.local_rank, root.process
                    )
            return root

    def finish(self, exit_code: int, failure: str | None, *, timeout: float = 5.0) -> None:
        """Tell every connected host how the job ended, wait (``timeout`` seconds at most) until each
        acknowledged it or left, say goodbye, and close."""
        self.gather(Outcome(exit_code, failure), timeout=timeout)
        with self.changed:
            peers = [p for p in self.peers.values() if p.closed is None and p.connection is not None]
        for peer in peers:
            assert peer.connection is not None
            peer.connection.send(Bye("the job ended"))
        self.close()

    def close(self) -> None:
        """Stop listening and close every connection (joined hosts then count as having said goodbye)."""
        self._closing.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        with self.changed:
            connections = list(self._connections)
            for peer in self.peers.values():
                if peer.closed is None:
                    peer.closed, peer.reason = "bye", "the master closed the channel"
            self.changed.notify_all()
        for connection in connections:
            connection.close()


class ChannelLink:
    """A worker host's end of the job channel: its connection to the master (see the module docstring).

    Make one with :meth:`connect`.
    """

    def __init__(self, connection: Connection, host: str, master: str, liveness: float | None = None) -> None:
        self.connection = connection
        self.liveness = liveness
        self.host = host
        self.master = master
        self.changed = threading.Condition(threading.RLock())
        """Notified whenever something arrives or the link closes."""
        self.last_heard = time.monotonic()
        self.welcome: Welcome | None = None
        self.outcome: Outcome | None = None
        """How the job ended, once the master said."""
        self.closed: str | None = None
        """None while connected; ``"bye"`` after the master's goodbye (or :meth:`close`), ``"lost"`` when
        the connection ended without one, ``"silent"`` when nothing came within the liveness bound."""
        self.reason = ""
        self.retry = False
        """The master turned this host away for now (a goodbye with ``retry``)."""
        self._handlers = _Handlers()
        self._closed_handlers: list[Callable[[ChannelLink], None]] = []
        self._replies = _Replies(self.changed)
        self._leaving = False
        self._ended = threading.Event()
        threading.Thread(target=self._read, daemon=True, name="smc-channel-link").start()

    @classmethod
    def connect(
        cls,
        master: str,
        port: int,
        host: str,
        *,
        timeout: float,
        setting: str | None = None,
        attempt: int = 1,
        source: str | None = None,
        stop: threading.Event | None = None,
        quiet: bool = False,
        liveness: float | None = None,
    ) -> ChannelLink:
        """Join the job channel of ``master`` as ``host``: connect (retrying while the master is not up
        yet), say hello, and wait for the welcome; all within ``timeout`` seconds. Once joined, with
        ``liveness`` (seconds), the link keeps the connection alive and takes a silent master as lost
        (see the module docstring).

        :param setting: the variable that sets ``timeout``, named in the progress lines and the error.
        :param source: this host's own address, to connect from.
        :param stop: set it to give up at once (the job ended).
        :param quiet: log the wait only at debug level (a join in the background).
        :raises ClusterError: the master did not accept this host in time (naming it, the port and the
            last error), or refused it.
        """
        errors: list[str] = []
        refused: list[str] = []

        def attempt_join() -> ChannelLink | None:
            if stop is not None and stop.is_set():
                raise ClusterError(f"{host} stopped joining the job's channel on {master}: the job ended.")
            address = resolve_host(master)
            if address is None:
                errors[:] = [f"{master} does not resolve"]
                return None
            try:
                connection = Connection.open(f"{address}:{port}", timeout=5.0, source=source)
            except OSError as error:
                errors[:] = [str(error.strerror or error)]
                return None
            link = cls(connection, host, master)
            connection.send(Hello(host, attempt))
            with link.changed:
                link.changed.wait_for(lambda: link.welcome is not None or link.closed is not None, 10.0)
            if link.welcome is None:
                errors[:] = [link.reason or "no welcome"]
                if link.closed == "bye" and not link.retry:
                    refused.append(link.reason)
                link.connection.close()
                return None
            if liveness:
                link.liveness = liveness
                link.last_heard = time.monotonic()
                _keep_alive(liveness, link._ended, link._beat, link._check, host)
            return link

        def refused_or(check: Callable[[], ChannelLink | None]) -> ChannelLink | None:
            value = check()
            if refused:
                raise ClusterError(f"The job's channel on {master} refused {host}: {refused[0]}.")
            return value

        if quiet:
            deadline = time.monotonic() + timeout
            while True:
                link = refused_or(attempt_join)
                if link is not None:
                    return link
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
            raise ClusterError(join_error(master, port, host, timeout, errors, setting))
        joined = wait_until(
            lambda: refused_or(attempt_join),
            timeout=timeout,
            waiting_for=f"the master {master} to accept {host} on its channel (port {port})",
            setting=setting,
            error=lambda _: join_error(master, port, host, timeout, errors, setting),
        )
        assert joined is not None
        return joined

    def on(self, kind: type[M], handler: Callable[[ChannelLink, M], Message | None]) -> None:
        """Call ``handler(link, message)`` for every message of ``kind`` from the master; the message it
        returns is the reply to a request (:meth:`ChannelMaster.gather`). Messages of ``kind`` that came
        before any handler of it was registered are handed to it now."""
        self._handlers.add(kind, handler)

    def off(self, kind: type[M], handler: Callable[[ChannelLink, M], Message | None]) -> None:
        """Stop calling ``handler`` for ``kind``."""
        self._handlers.remove(kind, handler)

    def on_closed(self, handler: Callable[[ChannelLink], None]) -> None:
        """Call ``handler(link)`` when the link closes: :attr:`closed` says how."""
        self._closed_handlers.append(handler)

    def _beat(self) -> None:
        if self.closed is None:
            self.connection.send(Heartbeat())

    def _check(self, bound: float) -> None:
        silent = time.monotonic() - self.last_heard
        if self.closed is not None or silent <= bound:
            return
        with self.changed:
            if self.closed is not None:
                return
            self.closed = "silent"
            self.reason = (
                f"nothing heard from it for {silent:.1f} s, more than the liveness bound of {bound:g} s "
                f"({LIVENESS_SETTING})"
            )
            self.changed.notify_all()
        self.connection.close()
        self._tell_closed()

    def _tell_closed(self) -> None:
        self._ended.set()
        if self.closed != "bye" and self.welcome is not None:
            logger.warning("The job's channel: lost the master %s (%s).", self.master, self.reason)
        _call_closed_handlers(self._closed_handlers, self)

    def probe(self, *, timeout: float) -> bool:
        """Ask the master for a heartbeat now and wait, at most ``timeout`` seconds, for its answer (a
        silent master closes the link when the liveness bound runs out); whether it answered."""
        return self.request(Heartbeat(), timeout=timeout) is not None

    def _read(self) -> None:
        for envelope in self.connection.envelopes():
            message = envelope.message
            self.last_heard = time.monotonic()
            if envelope.reply_to is not None:
                self._replies.put((None, envelope.reply_to), message)
                continue
            with self.changed:
                if isinstance(message, Welcome):
                    self.welcome = message
                    self.master = message.master or self.master  # its name, however it was reached
                elif isinstance(message, Outcome):
                    self.outcome = message
                elif isinstance(message, Bye):
                    self.closed, self.reason = "bye", message.reason or "the master said goodbye"
                    self.retry = message.retry
                self.changed.notify_all()
            if isinstance(message, Bye):
                break
            if isinstance(message, Welcome):
                continue
            reply = None if isinstance(message, Heartbeat) else self._handlers.run(self, message)
            if envelope.id is not None:
                self.connection.send(reply or Ack(), reply_to=envelope.id)
        closed_here = False
        with self.changed:
            if self.closed is None:
                self.closed = "bye" if self._leaving else "lost"
                self.reason = self.reason or (
                    "this host left"
                    if self._leaving
                    else f"the connection to {self.master} ended without a goodbye"
                )
                closed_here = True
            self.changed.notify_all()
        if closed_here:
            self._tell_closed()

    def send(self, message: Message) -> bool:
        """Send ``message`` to the master; False when the link is gone."""
        return self.connection.send(message)

    def request(self, message: Message, *, timeout: float) -> Message | None:
        """Send ``message`` and wait, at most ``timeout`` seconds, for the master's reply; None when
        none came (or the link closed)."""
        request_id = self.connection.next_id()
        if not self.connection.send(message, id=request_id):
            return None
        key = (None, request_id)
        wait_until(
            lambda: key in self._replies.got or self.closed is not None,
            timeout=timeout,
            waiting_for=f"the master's reply to {message.kind}",
            changed=self.changed,
            raise_on_timeout=False,
            first_log=timeout,
        )
        with self.changed:
            return self._replies.got.pop(key, None)

    def receive(self, kinds: Iterable[type[Message]] = (), *, timeout: float) -> Message | None:
        """The oldest message from the master that no handler took (of ``kinds``, when given), waiting
        at most ``timeout`` seconds; None when none came."""
        return self._handlers.take({k.kind for k in kinds}, timeout)

    def close(self, reason: str = "done") -> None:
        """Say goodbye (``reason``) and close the connection."""
        self._leaving = True
        self._ended.set()
        if self.closed is None:
            self.connection.send(Bye(reason))
        self.connection.close()


def _call_closed_handlers(handlers: list[Callable[[C], None]], closed: C) -> None:
    """Tell every ``on_closed`` handler (of a master or of a link) that ``closed`` has closed; one that
    raises is logged and the others still run."""
    for handler in list(handlers):
        try:
            handler(closed)
        except Exception:
            logger.exception("Channel: an on_closed handler raised")


def heartbeat_interval(bound: float) -> float:
    """Seconds between two heartbeats for the liveness bound ``bound``."""
    return bound / BEATS_PER_BOUND


def _keep_alive(
    bound: float, ended: threading.Event, beat: Callable[[], None], check: Callable[[float], None], host: str
) -> None:
    """Start the two liveness threads of one end of the channel (see the module docstring): one sends
    a heartbeat every :func:`heartbeat_interval`, the other checks twice as often, until ``ended``."""
    interval = heartbeat_interval(bound)

    def beating() -> None:
        while not ended.wait(interval):
            beat()

    def checking() -> None:
        last = time.monotonic()
        while not ended.wait(interval / 2):
            now = time.monotonic()
            late, last = now - last > interval / 2 + bound / 3, now
            if not late:  # after a freeze of this process, its readers first catch up
                check(bound)

    threading.Thread(target=beating, daemon=True, name=f"smc-channel-beat-{host}").start()
    threading.Thread(target=checking, daemon=True, name=f"smc-channel-watch-{host}").start()


def join_error(
    master: str, port: int, host: str, timeout: float, errors: list[str], setting: str | None
) -> str:
    """What a host that could not join the channel in ``timeout`` seconds says (``errors``: the last)."""
    last = f" (last error: {errors[0]})" if errors else ""
    raise_it = f" Set {setting} (seconds) to wait longer." if setting else ""
    return (
        f"{host} could not join the job's channel on the master {master} (port {port}) within {timeout:g} s"
        f"{last}: check that smc runs there with the same job and that the hosts reach each other on that "
        f"port ({PORT_SETTING}).{raise_it}"
    )


def deliver(endpoint: str, message: Message, *, timeout: float = 5.0) -> bool:
    """Send one message to the channel at ``endpoint`` (``address:port``) on a connection of its own
    and wait, at most ``timeout`` seconds, for its acknowledgement: how a process of the job reports
    its failure (``RankFailed``). False when it could not be delivered."""
    try:
        connection = Connection.open(endpoint, timeout=timeout)
    except (OSError, ValueError):
        return False
    try:
        connection.sock.settimeout(timeout)
        if not connection.send(message, id=1):
            return False
        return any(e.reply_to == 1 for e in connection.envelopes())
    finally:
        connection.close()


_OUTPUT_LOCK = threading.Lock()


def write_line(fd: int, text: str) -> None:
    """Write one relayed line to this process's stdout (``fd`` 1) or stderr (2), in one piece."""
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
