"""The job channel's messages: typed records, one JSON object a line on the wire.

Every message is a frozen dataclass with a ``kind`` (its ``type`` on the wire) registered with
:func:`message_kind`; its fields are the rest of the JSON object. Three protocol fields travel beside
them and never belong to a message: ``id`` (the sender wants a reply), ``reply_to`` (this answers
request ``id``) and nothing else. :func:`encode` and :func:`decode` turn one into the other.

The core's messages are defined here (the table in :mod:`smc_core.cluster.channel`); a launch style or
plugin defines its own the same way, with a kind under its own prefix::

    @message_kind("mpi.ready")
    @dataclass(frozen=True)
    class SshdReady(Message):
        host_key: str
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from smc_core.base.log import logger
from smc_core.cluster.report import RankFailure

__all__ = [
    "Ack",
    "Bye",
    "Envelope",
    "Heartbeat",
    "Hello",
    "HostLost",
    "JobStopping",
    "Message",
    "Outcome",
    "Output",
    "OutputStream",
    "RankFailed",
    "Unknown",
    "Welcome",
    "decode",
    "encode",
    "message_kind",
]

M = TypeVar("M", bound="Message")

_KINDS: dict[str, type[Message]] = {}


@dataclass(frozen=True)
class Message:
    """Base of every channel message: a frozen dataclass whose fields are JSON values."""

    kind: ClassVar[str] = ""

    def to_fields(self) -> dict[str, Any]:
        """Its fields as JSON values (the wire object, less ``type``, ``id`` and ``reply_to``)."""
        return asdict(self)

    @classmethod
    def from_fields(cls: type[M], values: Mapping[str, Any]) -> M:
        """A message of this kind from the wire object's fields (unknown fields are ignored, missing
        ones take their defaults: a newer peer may send more)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def message_kind(kind: str) -> Callable[[type[M]], type[M]]:
    """Register a message class under ``kind`` (its ``type`` on the wire); a plugin names its own kinds
    under a prefix (``mpi.``, ``tf.``). Registering a kind twice with another class is an error."""

    def register(cls: type[M]) -> type[M]:
        known = _KINDS.get(kind)
        if known is not None and known is not cls and known.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"the channel message kind {kind!r} is already {known.__module__}.{known.__name__}"
            )
        cls.kind = kind
        _KINDS[kind] = cls
        return cls

    return register


@dataclass(frozen=True)
class Unknown(Message):
    """A message of a kind this process does not know (a newer peer's, a plugin not loaded here)."""

    type: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Envelope:
    """A message as it travels: the message, and the protocol fields around it."""

    message: Message
    id: int | None = None
    """Set when the sender waits for a reply."""
    reply_to: int | None = None
    """Set on a reply: the ``id`` of the request it answers."""


def encode(message: Message, *, id: int | None = None, reply_to: int | None = None) -> bytes:
    """One line of JSON: ``{"type": kind, ...fields, "id": ..., "reply_to": ...}``."""
    if not message.kind:
        raise ValueError(f"{type(message).__name__} has no kind: register it with @message_kind(...)")
    wire = {"type": message.kind, **message.to_fields()}
    if id is not None:
        wire["id"] = id
    if reply_to is not None:
        wire["reply_to"] = reply_to
    return (json.dumps(wire, separators=(",", ":"), default=str) + "\n").encode()


def decode(line: bytes) -> Envelope | None:
    """The envelope one line holds, or None for a line that is no JSON object."""
    try:
        wire = json.loads(line)
    except ValueError:
        return None
    if not isinstance(wire, dict):
        return None
    kind = str(wire.pop("type", ""))
    ids = {name: wire.pop(name, None) for name in ("id", "reply_to")}
    cls = _KINDS.get(kind)
    try:
        message: Message = cls.from_fields(wire) if cls is not None else Unknown(kind, wire)
    except (TypeError, ValueError) as error:
        logger.debug("Channel: a %r message that does not fit its kind (%s): %s", kind, error, wire)
        return None
    return Envelope(
        message,
        id=ids["id"] if isinstance(ids["id"], int) else None,
        reply_to=ids["reply_to"] if isinstance(ids["reply_to"], int) else None,
    )


# --- the core's messages (the table in smc_core.cluster.channel) ------------------------------------


@message_kind("hello")
@dataclass(frozen=True)
class Hello(Message):
    """A host's smc joins the job's channel (worker to master)."""

    host: str
    attempt: int = 1
    """The job attempt this host runs (restarts agree on it)."""


@message_kind("welcome")
@dataclass(frozen=True)
class Welcome(Message):
    """The master accepts a host (master to worker)."""

    master: str
    hosts: tuple[str, ...] = ()


@message_kind("bye")
@dataclass(frozen=True)
class Bye(Message):
    """The sender leaves the channel on purpose (either way); without it, a closed connection is a
    lost peer. ``retry``: the master turned a host away for now (its name does not resolve on the
    master yet): it may say hello again."""

    reason: str = ""
    retry: bool = False


@message_kind("heartbeat")
@dataclass(frozen=True)
class Heartbeat(Message):
    """The sender's smc is alive (either way, every sixth of the liveness bound); sent as a request,
    a probe whose reply says the other end is alive now."""


@message_kind("stop")
@dataclass(frozen=True)
class JobStopping(Message):
    """A host's smc received a stop signal (a host to the master, the master to every other host):
    every host stops too."""

    host: str = ""
    signal: str = "SIGTERM"


@message_kind("lost")
@dataclass(frozen=True)
class HostLost(Message):
    """The master lost a host (master to every other host): ``how`` is ``"died"`` (its connection
    ended without a goodbye) or ``"silent"`` (nothing heard from it within the liveness bound)."""

    host: str = ""
    how: str = ""
    detail: str = ""


@message_kind("ack")
@dataclass(frozen=True)
class Ack(Message):
    """The reply to a request no handler answered: it was received."""


@message_kind("outcome")
@dataclass(frozen=True)
class Outcome(Message):
    """How the job ended (master to every host, at its end)."""

    exit_code: int
    failure: str | None = None


@message_kind("rank_failed")
@dataclass(frozen=True)
class RankFailed(Message):
    """A process of the job failed (any process of any host to the master)."""

    failure: RankFailure

    def to_fields(self) -> dict[str, Any]:
        return {"failure": self.failure.to_message()}

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> RankFailed:
        raw = values.get("failure")
        if not isinstance(raw, Mapping):
            raise ValueError("no failure")
        return cls(RankFailure.from_message(raw))


@message_kind("stream")
@dataclass(frozen=True)
class OutputStream(Message):
    """This connection carries one process's output (its first message): the master counts the
    streams, so that it can wait for every line of one that prints nothing."""

    host: str = ""
    rank: int | None = None
    local_rank: int | None = None


@message_kind("out")
@dataclass(frozen=True)
class Output(Message):
    """One whole line of a process's output, written whole to the master's own stdout (``fd`` 1) or
    stderr (2). ``data`` is the line as written (prefix and newline included), ``line`` the line alone."""

    fd: int = 1
    data: str = ""
    line: str = ""
    host: str = ""
    rank: int | None = None
    local_rank: int | None = None
