"""The output of a supervised process: one pump thread per stream, passing whole lines on.

Each :class:`LinePump` copies a pipe to a :class:`Sink` (smc's stdout or stderr, or a given stream)
whole lines at a time (every complete line of one read in one write), unchanged, under one lock per
destination so that lines of several processes never interleave mid-line. ``\\r\\n`` ends a line as
``\\n`` does, and a line ending in a lone ``\\r`` (a progress bar) is passed on at once. The pump on
stderr keeps the last lines for the failure file; every block of whole lines also goes to the
progress clocks (:mod:`smc_core.launch.progress`) that watch for stalls.

Where several processes of a job print, each line starts with the one rank prefix,
``"[algo-2 rank 1]: "`` (:func:`rank_prefix`); ``smc local`` recognises it (:data:`RANK_PREFIX`) and
shows the line as ``algo-2 rank 1 | ...``.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import io
import os
import re
import threading
from typing import IO, Any

from smc_core.launch.progress import observe_output

__all__ = ["RANK_PREFIX", "LinePump", "Sink", "rank_prefix"]

RANK_PREFIX = re.compile(r"^\[(?:(?P<host>[A-Za-z0-9._-]+) )?rank (?P<rank>\d+)\]:? ?")
"""What a rank-prefixed line starts with: :func:`rank_prefix`'s ``"[algo-2 rank 1]: "``, also without the
colon (``"[algo-2 rank 1] "``, as MPI ranks print) or without the host (``"[rank 1]: "``)."""


def rank_prefix(host: str, rank: int) -> str:
    """The prefix for every output line of rank ``rank`` on ``host``: ``"[algo-2 rank 1]: "``.

    Pass it as ``prefix=`` to :func:`~smc_core.launch.process.start_process` or
    :func:`~smc_core.launch.process.run_process` when several processes print: ``smc local`` shows such
    a line as ``algo-2 rank 1 | ...`` and matches its metrics on the text after the prefix.
    """
    return f"[{host} rank {rank}]: "


_MAX_SEGMENT = 64 * 1024  # a "line" longer than this is passed on in pieces
_READ_SIZE = 256 * 1024

_SINK_LOCKS: dict[int, threading.Lock] = collections.defaultdict(threading.Lock)


class Sink:
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


class LinePump(threading.Thread):
    """Copies one pipe to a sink line by line; keeps the tail of complete lines when asked."""

    def __init__(
        self, pipe: IO[bytes], sink: Sink, prefix: bytes, tail: collections.deque[str] | None
    ) -> None:
        super().__init__(daemon=True, name="smc-output")
        self.pipe, self.sink, self.prefix, self.tail = pipe, sink, prefix, tail

    def run(self) -> None:
        fd = self.pipe.fileno()
        _grow_pipe(fd)
        buffer = b""
        at_line_start = True
        after_cr: bytes | None = None  # a segment passed on with its \r last in what had been read
        while True:
            try:
                chunk = os.read(fd, _READ_SIZE)
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
            # Everything up to the last line ending goes out in one write: whole lines, in order.
            last = max(buffer.rfind(b"\n"), buffer.rfind(b"\r"))
            if last >= 0:
                block, buffer = buffer[: last + 1], buffer[last + 1 :]
                if b"\r" in block:
                    after_cr = self.emit_segments(block, at_line_start, at_end=not buffer)
                else:
                    self.emit_lines(block, at_line_start)
                at_line_start = True
            if len(buffer) > _MAX_SEGMENT:
                self.emit(buffer, at_line_start, complete=False)
                at_line_start = False
                buffer = b""
        if buffer:
            self.emit(buffer, at_line_start, complete=True)

    def emit_lines(self, block: bytes, at_line_start: bool) -> None:
        """Pass on ``block``, whole lines each ending in \n, in one write (each line prefixed)."""
        if self.prefix:
            body = block[:-1].replace(b"\n", b"\n" + self.prefix) + b"\n"
            self.sink.write(self.prefix + body if at_line_start else body)
        else:
            self.sink.write(block)
        observe_output(block)
        if self.tail is not None:
            maxlen = self.tail.maxlen or 1
            for line in block[:-1].rsplit(b"\n", maxlen)[-maxlen:]:
                self.keep(line)

    def emit_segments(self, block: bytes, at_line_start: bool, *, at_end: bool) -> bytes | None:
        """Pass on ``block`` (segments ending in \n, \r\n or a lone \r) in one write; returns the last
        segment when it ends in a lone \r at the end of what was read (its \n may come next)."""
        out: list[bytes] = []
        start = 0
        newline = carriage = -1  # the next \n and \r at or after start (len(block) when none)
        segment = b""
        while start < len(block):
            if newline < start:
                newline = _find(block, b"\n", start)
            if carriage < start:
                carriage = _find(block, b"\r", start)
            end = _segment_end(block, newline, carriage)
            segment = block[start:end]
            out.append(self.prefix + segment if (self.prefix and at_line_start) else segment)
            if segment.endswith(b"\n"):
                self.keep(segment)
            at_line_start = True
            start = end
        self.sink.write(b"".join(out))
        observe_output(block)
        return segment if at_end and segment.endswith(b"\r") else None

    def emit(self, segment: bytes, at_line_start: bool, *, complete: bool) -> None:
        self.sink.write(self.prefix + segment if (self.prefix and at_line_start) else segment)
        if complete:
            observe_output(segment)
            self.keep(segment)

    def keep(self, line: bytes) -> None:
        """Add a complete line to the tail (when one is kept), without its line ending."""
        if self.tail is not None:
            self.tail.append(line.decode("utf-8", "replace").rstrip("\r\n")[:2000])


def _grow_pipe(fd: int) -> None:
    """Give the pipe a 1 MiB buffer (Linux; 64 KiB by default): a process printing fast then waits on
    smc less often, and each read passes on more lines at once."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _READ_SIZE * 4)


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
