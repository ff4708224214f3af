"""Progress on this host: when the job's processes last printed a line, or one that matches.

A :class:`ProgressClock` is started for the user's code (the stall watch does it); while it runs, every
whole line a supervised process prints (:mod:`smc_core.launch.output` hands each block of lines to
:func:`observe_output`, and the job's channel hands it the lines MPI's ranks relay) moves it on: any
line, or, when a pattern is given, only a line the pattern matches (a Python regular expression
searched in the line, as ``smc local --metric`` and SageMaker's ``MetricDefinitions`` use them). Lines
are matched in a thread of the clock's own, never in the thread that passes the output on, so that a
slow pattern cannot hold the output up. Anything else (a file written) moves it on with :meth:`tick`.
"""

from __future__ import annotations

import collections
import re
import threading
import time

__all__ = ["ProgressClock", "observe_line", "observe_output"]

_QUEUE = 2000  # lines waiting to be matched; older ones are dropped when the code prints faster


class ProgressClock:
    """When progress was last seen on this host (``time.monotonic()``), and what it was.

    :param pattern: only lines it matches count as progress (None: any whole line).
    """

    def __init__(self, pattern: re.Pattern[str] | None = None) -> None:
        self.pattern = pattern
        self.last = time.monotonic()
        """When progress was last seen (the start counts as progress)."""
        self.what = "the start of the user's code"
        """What the last progress was, for the log."""
        self._lines: collections.deque[str] = collections.deque(maxlen=_QUEUE)
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> ProgressClock:
        """Start counting the output of supervised processes (until :meth:`stop`)."""
        self.last = time.monotonic()
        with _LOCK:
            _CLOCKS.append(self)
        if self.pattern is not None:
            self._thread = threading.Thread(target=self._match, daemon=True, name="smc-progress-match")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop counting."""
        with _LOCK:
            if self in _CLOCKS:
                _CLOCKS.remove(self)
        with self._wake:
            self._stopped = True
            self._wake.notify_all()

    def tick(self, what: str) -> None:
        """Progress was seen: ``what`` it was."""
        self.last = time.monotonic()
        self.what = what

    def idle_for(self) -> float:
        """Seconds since the last progress."""
        return time.monotonic() - self.last

    def lines(self, lines: list[str]) -> None:
        """Whole lines printed by the job's processes."""
        if not lines:
            return
        if self.pattern is None:
            self.tick("an output line")
            return
        with self._wake:
            self._lines.extend(lines)
            self._wake.notify_all()

    def _match(self) -> None:
        assert self.pattern is not None
        while True:
            with self._wake:
                while not self._lines and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                line = self._lines.popleft()
            if self.pattern.search(line):
                self.tick(f"an output line matching {self.pattern.pattern!r}")


_LOCK = threading.Lock()
_CLOCKS: list[ProgressClock] = []


def observe_output(block: bytes) -> None:
    """Hand a block of whole lines that a process printed to the running clocks (cheap when none)."""
    if not _CLOCKS:
        return
    with _LOCK:
        clocks = list(_CLOCKS)
    if all(clock.pattern is None for clock in clocks):
        for clock in clocks:
            clock.tick("an output line")
        return
    lines = block.decode("utf-8", "replace").splitlines()
    for clock in clocks:
        clock.lines(lines)


def observe_line(line: str) -> None:
    """Hand one whole line (relayed by the job's channel) to the running clocks."""
    if not _CLOCKS:
        return
    with _LOCK:
        clocks = list(_CLOCKS)
    for clock in clocks:
        clock.lines([line])
