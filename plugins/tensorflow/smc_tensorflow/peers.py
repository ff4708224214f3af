"""How the hosts of a multi-host TensorFlow job tell each other that a process failed or the job is done.

TensorFlow has no job-wide failure signal: when one worker dies, the others wait in their next
collective (MultiWorkerMirroredStrategy) or keep serving (parameter servers) until a long timeout.
smc therefore relays failures between its hosts over the job's channel, which the core opens for every
multi-host job (:func:`smc_core.job_channel`), with three messages of this adapter's own:

===============  =============  ================================================================
``type``         direction      meaning
===============  =============  ================================================================
``tf.ended``     host→master    this host's worker ended: ``failure`` (a rank failure) or null
``tf.failure``   master→host    the job's first failure, its root cause: every host stops its own
                                processes
``tf.done``      master→host    the master's worker succeeded (parameter-server hosts then stop
                                their parameter server)
===============  =============  ================================================================

* the master host (the first cluster host) holds the channel's master end before its worker starts;
  every other host waits for its link to the master (bounded by ``SMC_HOST_WAIT_TIMEOUT``, logged)
  before its own worker starts;
* a host whose worker or parameter server fails reports it; the first failure reported is the job's
  root cause, and the master passes it to every host, which stops its own processes; a host that
  leaves the channel without a goodbye, or falls silent, before its worker ended is a failure too (the
  core then reports it as the lost host it is: :func:`smc_core.job_channel`);
* when the master's worker has succeeded it says ``tf.done`` and, bounded by
  ``SMC_TF_PEER_WAIT_TIMEOUT``, waits until every other host's worker has ended, to keep passing
  failures on between them.

A failure is a :class:`smc_core.RankFailure` (``process``: ``worker``, ``parameter server`` or
``smc``; ``tail``: the end of that process's stderr).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from smc_core import (
    ChannelLink,
    ChannelMaster,
    Hello,
    Message,
    Peer,
    RankFailure,
    logger,
    message_kind,
    wait_until,
)

SETTLE_SECONDS = 1.0
"""How long the master, when its own worker fails, waits for another host's earlier failure report:
a worker that dies because a peer died should not be named as the cause."""
VERDICT_SECONDS = 5.0
"""How long a host whose process failed waits for the master to say which failure came first."""


def failure(host: str, process: str, exit_code: int, tail: str) -> RankFailure:
    """A failure record, as the channel carries it."""
    return RankFailure(host, int(exit_code), tail, process=process)


@message_kind("tf.ended")
@dataclass(frozen=True)
class Ended(Message):
    """A host's worker ended (``failure`` its failure's fields, or None)."""

    host: str = ""
    failure: dict[str, Any] | None = None


@message_kind("tf.failure")
@dataclass(frozen=True)
class Failure(Message):
    """The job's first failure."""

    failure: dict[str, Any]


@message_kind("tf.done")
@dataclass(frozen=True)
class Done(Message):
    """The master's worker succeeded."""


class Channel:
    """What both ends share: the first failure known here, and an event set whenever anything changes."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.root: RankFailure | None = None
        """The job's first failure, once known."""
        self.done = False
        """The master host said its worker succeeded (other hosts only)."""
        self.lost: str | None = None
        """Why contact with the master was lost (other hosts only), or None."""
        self.changed = threading.Event()
        self._lock = threading.Lock()

    @property
    def remote_failure(self) -> RankFailure | None:
        """The job's first failure when it happened on another host, else None."""
        root = self.root
        return root if root is not None and root.host != self.host else None

    def wait_changed(self, timeout: float) -> None:
        """Sleep until something changes or ``timeout`` seconds pass."""
        if self.changed.wait(timeout):
            self.changed.clear()


class MasterChannel(Channel):
    """The master host's side: on the channel's master end, passes the first failure to every host.

    :param master: the job channel's master end (``job_channel().master()``).
    :param peers: the other hosts of the TensorFlow cluster.
    """

    def __init__(self, master: ChannelMaster, peers: Iterable[str]) -> None:
        super().__init__(master.host)
        self.master = master
        self.peers = list(peers)
        self.port = master.port
        self.ended: set[str] = set()
        self._closing = False
        master.on(Ended, self._ended)
        master.on_closed(self._closed)
        master.on(Hello, self._joined)
        logger.info(
            "Relaying failures between %s and %s on the job's channel.", self.host, ", ".join(self.peers)
        )

    def _joined(self, peer: Peer | None, _hello: Hello) -> None:  # a late joiner learns what it missed
        if peer is None:
            return
        with self._lock:
            root, done = self.root, self.done
        if root is not None:
            self.master.send(peer.host, Failure(root.to_message()))
        elif done:
            self.master.send(peer.host, Done())

    def _ended(self, peer: Peer | None, message: Ended) -> None:
        host = peer.host if peer is not None else message.host
        if message.failure:
            self.publish(RankFailure.from_message(message.failure))
        with self._lock:
            self.ended.add(host)
        self.changed.set()

    def _closed(self, peer: Peer) -> None:
        if peer.host not in self.peers or peer.host in self.ended or self._closing or peer.closed == "bye":
            return
        self.publish(
            failure(
                peer.host,
                "smc",
                1,
                f"smc on {peer.host} lost contact with the master host {self.host} before its worker ended "
                f"({peer.reason}).",
            )
        )
        with self._lock:
            self.ended.add(peer.host)
        self.changed.set()

    def publish(self, entry: RankFailure) -> RankFailure:
        """Offer ``entry`` as the job's first failure; pass the first one to every host; return it."""
        with self._lock:
            first = self.root is None
            if first:
                self.root = entry
            root = self.root
        assert root is not None
        if first:
            for host in self.peers:
                self.master.send(host, Failure(root.to_message()))
        self.changed.set()
        return root

    def missing_peers(self, timeout: float) -> list[str]:
        """The hosts that have not joined ``timeout`` seconds after the channel opened (else [])."""
        if time.monotonic() - self.master.opened_at < timeout:
            return []
        joined = set(self.master.peers)
        with self._lock:
            return [p for p in self.peers if p not in joined and p not in self.ended]

    def report_end(self, entry: RankFailure | None, *, wait: bool = True) -> RankFailure | None:
        """This host's worker ended (``entry``: its failure, or None): return the job's first failure.

        :param wait: give another host's earlier failure :data:`SETTLE_SECONDS` to arrive first.
        """
        if entry is None:
            return self.root
        deadline = time.monotonic() + (SETTLE_SECONDS if wait else 0.0)
        while self.root is None and time.monotonic() < deadline:
            self.wait_changed(0.05)
        return self.publish(entry)

    def finish(self, *, succeeded: bool, timeout: float) -> None:
        """Say ``tf.done`` (when this host's worker succeeded) and wait, at most ``timeout`` seconds,
        until every other host's worker has ended."""
        if succeeded:
            with self._lock:
                self.done = True
            for host in self.peers:
                self.master.send(host, Done())

            def waiting() -> list[str]:
                with self._lock:
                    return [p for p in self.peers if p not in self.ended]

            if wait_until(
                lambda: not waiting(),
                timeout=timeout,
                waiting_for=lambda: f"the workers on {', '.join(waiting())} to end",
                setting="SMC_TF_PEER_WAIT_TIMEOUT",
                interval=0.5,
                first_log=10.0,
                raise_on_timeout=False,
            ) is None:  # fmt: skip
                logger.warning(
                    "%s did not end within %g s of the master's worker (SMC_TF_PEER_WAIT_TIMEOUT); "
                    "the master stops passing failures on.",
                    ", ".join(waiting()),
                    timeout,
                )
        self._closing = True


class PeerChannel(Channel):
    """A non-master host's side: its link to the master over the job's channel.

    :param link: this host's link (``job_channel().link()``).
    """

    def __init__(self, link: ChannelLink) -> None:
        super().__init__(link.host)
        self.link = link
        self.master = link.master
        self._closing = False
        link.on(Failure, self._failure)
        link.on(Done, self._done)
        link.on_closed(self._closed)

    def _failure(self, _link: ChannelLink, message: Failure) -> None:
        with self._lock:
            if self.root is None:
                self.root = RankFailure.from_message(message.failure)
        self.changed.set()

    def _done(self, _link: ChannelLink, _message: Done) -> None:
        self.done = True
        self.changed.set()

    def _closed(self, link: ChannelLink) -> None:
        if not self._closing and not self.done and self.root is None and link.closed != "bye":
            self.lost = (
                f"smc on {self.host} lost contact with the master host {self.master} before it said the job "
                f"was done ({link.reason}); see the master host's log."
            )
        self.changed.set()

    def report_end(self, entry: RankFailure | None, *, wait: bool = True) -> RankFailure | None:
        """Tell the master that this host's worker ended (``entry``: its failure, or None).

        After a failure, wait (``wait``) a few seconds for the master's verdict and return the job's
        first failure (this one when the master does not answer).
        """
        self.link.send(Ended(self.host, entry.to_message() if entry is not None else None))
        if entry is None or not wait:
            return self.root
        deadline = time.monotonic() + VERDICT_SECONDS
        while self.root is None and self.lost is None and time.monotonic() < deadline:
            self.wait_changed(0.05)
        return self.root or entry

    def close(self) -> None:
        """Stop listening for failures (the core says goodbye on the link at the job's end)."""
        self._closing = True
