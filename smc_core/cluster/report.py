"""The failing-rank report: which process of which host failed, how, and the end of its traceback.

Every launch style that spans processes or hosts reports a failure the same way, in the same budget:
the failure file's first 1024 characters (what the platform shows) hold the error line, the exit code,
the command, then this report::

    rank 1 (local rank 0) on host algo-2 failed with exit code 1; algo-1 stopped its own processes
    because of it:
    Traceback (most recent call last):
      ...
      File "train.py", line 12, in <module>
    ValueError: loss is NaN

A :class:`RankFailure` is what a launch style knows of one failed process (it travels over the job's
channel as the ``rank_failed`` message); :meth:`RankFailure.describe` is the failure file's reason;
:func:`traceback_tail` the end of a traceback within :data:`TRACEBACK_CHARS`; :func:`root_failure` picks,
among several failures, the one that caused the others.
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["TRACEBACK_CHARS", "RankFailure", "root_failure", "traceback_tail"]

TRACEBACK_CHARS = 600
"""How much of a failing process's stderr its report keeps, everywhere: with the error line, the exit
code, the command and the report's own first line it stays within the 1024 characters the platform
shows."""

TRACEBACK_HEADER = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning))\b")
_STOPPED_BY_LAUNCHER = {128 + signal.SIGTERM, 128 + signal.SIGKILL, 128 + signal.SIGINT}


@dataclass(frozen=True)
class RankFailure:
    """One failed process of a job: a rank, a worker, a parameter server, or smc itself on a host.

    Attributes:
        host: the host it ran on.
        exit_code: its exit code (``128 + S`` for signal S); None when it was stopped before it could
            say.
        tail: the end of its stderr (its traceback).
        rank: its global rank, where it has one.
        local_rank: its rank on its host, where it has one.
        process: what it was, as the report names it: ``rank`` (with a rank number), ``worker``,
            ``parameter server``, ``smc`` (smc on that host failed or was lost).
        collateral: it failed only because another did (a collective that lost its peer).
    """

    host: str
    exit_code: int | None = None
    tail: str = ""
    rank: int | None = None
    local_rank: int | None = None
    process: str = "rank"
    collateral: bool = False

    @property
    def stopped(self) -> bool:
        """It ended by SIGTERM, SIGKILL or SIGINT: likely stopped because another failed."""
        return self.exit_code in _STOPPED_BY_LAUNCHER

    @property
    def who(self) -> str:
        """``rank 1 (local rank 0) on host algo-2``, ``the worker on host algo-2``, ``smc on algo-2``."""
        if self.process == "smc":
            return f"smc on {self.host}"
        if self.rank is not None:
            local = f" (local rank {self.local_rank})" if self.local_rank is not None else ""
            name = "rank" if self.process == "rank" else f"{self.process} rank"
            return f"{name} {self.rank}{local} on host {self.host}"
        return f"the {self.process} on host {self.host}"

    @property
    def how(self) -> str:
        """``failed with exit code 1``, ``failed with exit code 139 (SIGSEGV)``, or that it could not say."""
        code = self.exit_code
        if code is None:
            return "failed (it was stopped before it could report its exit code)"
        if 128 < code < 128 + 65:
            with contextlib.suppress(ValueError):
                return f"failed with exit code {code} ({signal.Signals(code - 128).name})"
        return f"failed with exit code {code}"

    def describe(
        self, current_host: str, *, also: RankFailure | None = None, context: str | None = None
    ) -> str:
        """The failure file's reason on ``current_host``: who failed and how, then its traceback's end.

        :param also: this host's own failure, when its processes failed by themselves after this one.
        :param context: a word on the circumstances, in brackets after how it failed (``the first to
            fail; ...``).
        """
        head = f"{self.who} {self.how}"
        if context:
            head += f" ({context})"
        if self.host != current_host:
            if also is not None:
                head += f"; {also.who} {also.how} after it"
            else:
                head += f"; {current_host} stopped its own processes because of it"
        tail = traceback_tail(self.tail)
        return f"{head}:\n{tail}" if tail else head

    def to_message(self) -> dict[str, Any]:
        """Its fields, for the channel (JSON)."""
        return asdict(self)

    @classmethod
    def from_message(cls, fields_: Mapping[str, Any]) -> RankFailure:
        """A failure from the fields of a ``rank_failed`` message (unknown fields ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in fields_.items() if k in known}
        values["host"] = str(values.get("host") or "?")
        for name in ("exit_code", "rank", "local_rank"):
            if values.get(name) is not None:
                values[name] = int(values[name])
        values["tail"] = str(values.get("tail") or "")
        return cls(**values)


def traceback_tail(text: str, limit: int = TRACEBACK_CHARS) -> str:
    """The end of a stderr tail within about ``limit`` characters: from its last ``Traceback`` line
    when there is one (the header kept, middle frames dropped), always with its last exception line
    (``ValueError: ...``), shortened, when what follows that line is long (a tensor's repr)."""
    text = text.rstrip()
    start = text.rfind(TRACEBACK_HEADER)
    if start >= 0:
        text = text[start:]
    if len(text) <= limit:
        return text
    end = text[-limit:]
    end = end[end.find("\n") + 1 :] if "\n" in end else end
    last = next((line for line in reversed(text.splitlines()) if _EXCEPTION_LINE.match(line)), None)
    if last is not None and last not in end:
        kept = end[-(limit // 2) :]
        kept = kept[kept.find("\n") + 1 :] if "\n" in kept else kept
        end = f"{last[:200]}\n[...]\n{kept}"
    return f"{TRACEBACK_HEADER}\n  ...\n{end}" if start >= 0 else end


def root_failure(
    failures: Sequence[RankFailure], printed_traceback: Iterable[RankFailure] = ()
) -> RankFailure | None:
    """The failure that caused the others, or None when there is none.

    The first that failed on its own (not stopped by a signal, not collateral); else, when every
    report is of a stopped process (an abort ends every rank at once, some before they could report),
    the first process that printed a traceback (``printed_traceback``, in the order they printed one);
    else the first report.
    """
    own = [f for f in failures if not f.stopped and not f.collateral]
    if own:
        return own[0]
    printed = list(printed_traceback)
    if printed:
        return printed[0]
    return failures[0] if failures else None
