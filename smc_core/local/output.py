"""One terminal for many hosts: their output read line by line and printed whole, each line prefixed.

A reader thread per host puts ``(host, line, time)`` on one queue; the runner's thread prints them,
so lines from different hosts never mix within a line. The prefix is the host name, plus the rank
when the adapter marked the line with :func:`~smc_core.launch.output.rank_prefix` (``"[algo-2 rank 1]: "``;
also ``"[algo-2 rank 1] "`` as MPI ranks print, or ``"[rank 1]: "``):
``algo-2 rank 1 | loss 0.25``. Colours (one per host) only when the output is a terminal and
``NO_COLOR`` is not set.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Mapping
from typing import IO, NamedTuple

from smc_core.launch.output import RANK_PREFIX

COLOURS = ("36", "33", "35", "32", "34", "31", "96", "93")  # cyan, yellow, magenta, green, ...


class Line(NamedTuple):
    """A whole line one host printed (without its line ending), and when it was read."""

    host: str
    text: str
    timestamp: float


def use_colour(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Colours only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    environ = os.environ if environ is None else environ
    return bool(getattr(stream, "isatty", lambda: False)()) and not environ.get("NO_COLOR")


class LinePrefixer:
    """Formats a host's line for the shared terminal: ``algo-1 | ...`` or ``algo-2 rank 1 | ...``."""

    def __init__(self, hosts: list[str], colour: bool) -> None:
        self.width = max((len(h) for h in hosts), default=0)
        self.colours = {h: COLOURS[i % len(COLOURS)] for i, h in enumerate(hosts)}
        self.colour = colour

    def format(self, line: Line) -> str:
        """The line as printed, with its prefix."""
        text = line.text
        label = line.host
        match = RANK_PREFIX.match(text)
        if match:
            label = f"{line.host} rank {match['rank']}"
            text = text[match.end() :]
        label = label.ljust(self.width + 7) if self.width else label  # 7: len(" rank N")
        if self.colour:
            return f"\x1b[{self.colours.get(line.host, '0')}m{label} |\x1b[0m {text}"
        return f"{label} | {text}"


def strip_adapter_prefix(text: str) -> str:
    """``[algo-2 rank 1]: loss 0.2`` -> ``loss 0.2`` (metrics match what the user printed)."""
    match = RANK_PREFIX.match(text)
    return text[match.end() :] if match else text


def start_reader(host: str, stream: IO[bytes], lines: queue.Queue[Line | None]) -> threading.Thread:
    """A daemon thread that puts each whole line of ``stream`` on ``lines``, then ``None`` at EOF.

    A carriage return ends a line too (progress bars), so a bar's updates show as they happen.
    """

    def read() -> None:
        try:
            pending = b""
            while True:
                chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
                if not chunk:
                    break
                pending += chunk
                parts = re.split(rb"\r\n|\n|\r(?!$)", pending)
                pending = parts.pop()
                now = time.time()
                for part in parts:
                    lines.put(Line(host, part.decode("utf-8", "replace"), now))
            if pending:
                lines.put(Line(host, pending.rstrip(b"\r").decode("utf-8", "replace"), time.time()))
        except (OSError, ValueError):
            pass  # the pipe was closed under us at teardown
        finally:
            lines.put(None)

    thread = threading.Thread(target=read, name=f"smc-local-{host}", daemon=True)
    thread.start()
    return thread
