"""Progress of a long transfer: a bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import io
import sys
import time
from typing import IO, Any

from smc_core.base.log import logger

__all__ = ["PROGRESS_MIN_BYTES", "Progress", "ProgressReader"]

PROGRESS_MIN_BYTES = 8 * 1024 * 1024
"""Transfers smaller than this show no progress."""


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class Progress:
    """Reports ``done`` of ``total`` bytes for ``label``.

    On a terminal (``stream.isatty()``) a bar is redrawn at most every ``redraw_every`` seconds;
    otherwise a log line is written at each further 10 % (at most every ``log_every`` seconds) or
    every 30 s, whichever comes first.
    Nothing is shown when ``total`` is below ``min_bytes``.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: IO[str] | None = None,
        min_bytes: int = PROGRESS_MIN_BYTES,
        redraw_every: float = 0.1,
        log_every: float = 2.0,
    ) -> None:
        self.label, self.total = label, total
        self.redraw_every, self.log_every = redraw_every, log_every
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = total >= min_bytes
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.done = 0
        self.start = self.last = time.monotonic()
        self.last_decile = 0

    def update(self, n: int) -> None:
        """Count ``n`` more bytes."""
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        fraction = self.done / self.total if self.total else 1.0
        if self.tty:
            if now - self.last >= self.redraw_every:
                self.last = now
                self._draw(fraction, now)
        elif (
            int(10 * fraction) > self.last_decile and now - self.last >= self.log_every
        ) or now - self.last >= 30:
            self.last, self.last_decile = now, int(10 * fraction)
            logger.info("%s: %s of %s (%.0f%%)", self.label, _mb(self.done), _mb(self.total), 100 * fraction)

    def _draw(self, fraction: float, now: float) -> None:
        width = 30
        filled = int(width * min(fraction, 1.0))
        rate = self.done / max(now - self.start, 1e-6)
        self.stream.write(
            f"\r{self.label}: [{'#' * filled}{' ' * (width - filled)}] {100 * fraction:5.1f}% "
            f"{_mb(self.done)}/{_mb(self.total)} {_mb(rate)}/s"
        )
        self.stream.flush()

    def finish(self) -> None:
        """Close the bar and log the total."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            self._draw(self.done / self.total if self.total else 1.0, now)
            self.stream.write("\n")
            self.stream.flush()
        logger.info("%s: %s in %.1f s", self.label, _mb(self.done), now - self.start)


class ProgressReader(io.RawIOBase):
    """Wraps a binary stream, counting what is read through it into a :class:`Progress`."""

    def __init__(self, raw: Any, progress: Progress) -> None:
        super().__init__()
        self.raw, self.progress = raw, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer`` from the wrapped stream and count the bytes."""
        view = memoryview(buffer).cast("B")
        data = self.raw.read(len(view))
        view[: len(data)] = data
        self.progress.update(len(data))
        return len(data)
