"""Metrics from a local job's log lines, in the form of SageMaker's ``MetricDefinitions``.

A definition is a name and a regular expression whose first group is the value, as in
``Estimator(metric_definitions=[{"Name": "loss", "Regex": "loss=([0-9.]+)"}])``. ``smc local`` takes
them as ``--metric loss=loss=([0-9.]+)`` (repeatable) or ``--metric-definitions FILE`` (that JSON list),
matches every line every host prints, and writes into the job dir:

    metrics.csv              timestamp (UTC, ISO 8601), seconds since the start, host, metric, value
    metric-<name>.png        the metric over time, one line per host (needs matplotlib)

and prints a table of last, min and max per metric. Every piece is a public function:
:func:`parse_metric_option`, :func:`load_metric_definitions`, :class:`MetricCollector`,
:func:`write_csv`, :func:`metrics_table`, :func:`plot_metrics`.

``smc local`` matches off the output path (:class:`MetricMatcher`): in a process of its own, each line
bounded to :data:`LINE_BUDGET` seconds, so that a regex that backtracks without end (``(a+)+$``) can
neither stall the job's output nor the job; such a regex is dropped, named in a warning.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smc_core.errors import ConfigError

PLOT_SIZE = (8.0, 4.5)
"""Inches; at :data:`PLOT_DPI` every PNG is 800 x 450 pixels."""
PLOT_DPI = 100
INSTALL_PLOTTING = "pip install matplotlib (or pip install 'smc-core[plot]')"


@dataclass(frozen=True)
class MetricDefinition:
    """A metric's name and the regex whose first group is its value."""

    name: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class MetricSample:
    """One value of a metric, read from one host's log line at ``timestamp`` (seconds since the epoch)."""

    timestamp: float
    host: str
    name: str
    value: float


def compile_metric(name: str, pattern: str, origin: str) -> MetricDefinition:
    """A :class:`MetricDefinition`, or a :class:`ConfigError` naming ``origin`` and what to fix."""
    if not name.strip():
        raise ConfigError(f"{origin}: the metric has no name; give one, e.g. loss=loss=([0-9.]+).")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{origin}: {pattern!r} is not a valid regular expression ({exc}).") from None
    if regex.groups < 1:
        raise ConfigError(
            f"{origin}: {pattern!r} has no group: put the value in parentheses, e.g. loss=([0-9.]+)."
        )
    return MetricDefinition(name.strip(), regex)


def parse_metric_option(item: str) -> MetricDefinition:
    """``--metric NAME=REGEX``: the name ends at the first ``=``; the rest is the regex."""
    name, sep, pattern = item.partition("=")
    if not sep or not pattern:
        raise ConfigError(f"--metric {item!r}: expected NAME=REGEX, e.g. --metric 'loss=loss=([0-9.]+)'.")
    return compile_metric(name, pattern, f"--metric {item!r}")


def load_metric_definitions(path: Path) -> list[MetricDefinition]:
    """``--metric-definitions FILE``: a JSON list of ``{"Name": ..., "Regex": ...}``, as SageMaker takes."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--metric-definitions {path}: no such file.") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--metric-definitions {path}: not valid JSON ({exc.msg}, line {exc.lineno})."
        ) from None
    example = '[{"Name": "loss", "Regex": "loss=([0-9.]+)"}]'
    if not isinstance(data, list):
        raise ConfigError(f"--metric-definitions {path}: expected a JSON list such as {example}.")
    definitions = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str) or "Regex" not in entry:
            raise ConfigError(
                f"--metric-definitions {path}: entry {index} is {json.dumps(entry)}; "
                f'each entry needs "Name" and "Regex", e.g. {example}.'
            )
        definitions.append(compile_metric(entry["Name"], str(entry["Regex"]), f"{path} entry {index}"))
    return definitions


def check_unique(definitions: Sequence[MetricDefinition]) -> None:
    """Refuse two definitions with one name: their values would be mixed in one series."""
    seen: set[str] = set()
    for definition in definitions:
        if definition.name in seen:
            raise ConfigError(f"metric {definition.name!r} is defined twice; give each metric one regex.")
        seen.add(definition.name)


@dataclass
class MetricCollector:
    """Collects :class:`MetricSample` values from log lines as they are printed."""

    definitions: Sequence[MetricDefinition]
    samples: list[MetricSample] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def feed(self, host: str, line: str, timestamp: float | None = None) -> None:
        """Match ``line`` against every definition; a first group that is not a number is skipped."""
        for definition in self.definitions:
            match = definition.regex.search(line)
            if match is None or match.group(1) is None:
                continue
            try:
                value = float(match.group(1))
            except ValueError:
                continue
            self.samples.append(
                MetricSample(time.time() if timestamp is None else timestamp, host, definition.name, value)
            )


LINE_BUDGET = 1.0
"""Seconds one metric regex may take on one line before it is dropped."""


class MetricMatcher(MetricCollector):
    """A :class:`MetricCollector` whose :meth:`feed` only queues the line: a thread hands the lines
    to a matching process (:mod:`smc_core.local.metric_worker`) and kills it when a regex takes more
    than ``line_budget`` seconds on one line (that regex is then dropped, with a warning, and a new
    process goes on with the others). Call :meth:`close` before reading :attr:`samples`."""

    def __init__(self, definitions: Sequence[MetricDefinition], line_budget: float = LINE_BUDGET) -> None:
        super().__init__(definitions)
        self.line_budget = line_budget
        self.active = list(definitions)
        self.dropped: list[str] = []
        self._lines: queue.Queue[tuple[str, str, float] | None] = queue.Queue()
        self._worker: subprocess.Popen[str] | None = None
        self._pending = b""
        self._thread = threading.Thread(target=self._run, name="smc-metrics", daemon=True)
        self._thread.start()

    def feed(self, host: str, line: str, timestamp: float | None = None) -> None:
        """Queue ``line`` for matching (returns at once)."""
        self._lines.put((host, line, time.time() if timestamp is None else timestamp))

    def close(self, timeout: float = 60.0) -> None:
        """Match what is queued (within ``timeout`` seconds), then stop the matching process."""
        self._lines.put(None)
        self._thread.join(timeout)
        self._stop_worker()

    def _start_worker(self) -> subprocess.Popen[str]:
        if self._worker is None:
            patterns = json.dumps([[d.name, d.regex.pattern] for d in self.active])
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "smc_core.local.metric_worker", patterns],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        return self._worker

    def _stop_worker(self) -> None:
        self._pending = b""
        worker, self._worker = self._worker, None
        if worker is not None:
            with contextlib.suppress(OSError):
                worker.kill()
            worker.wait()

    def _run(self) -> None:
        while True:
            item = self._lines.get()
            if item is None:
                return
            if self.active:
                self._match(*item)

    def _match(self, host: str, line: str, timestamp: float) -> None:
        worker = self._start_worker()
        assert worker.stdin is not None and worker.stdout is not None
        try:
            worker.stdin.write(json.dumps(line) + "\n")
            worker.stdin.flush()
            at = -1
            while True:
                reply = self._reply_line(worker.stdout.fileno())
                if reply is None:
                    self._drop(at, line)
                    if self.active:  # the other metrics still read this line
                        self._match(host, line, timestamp)
                    return
                if reply[:1] != "[":
                    at = int(reply)
                    continue
                for name, value in json.loads(reply):
                    self.samples.append(MetricSample(timestamp, host, name, value))
                return
        except (OSError, ValueError):
            self._stop_worker()  # started again for the next line

    def _reply_line(self, fd: int) -> str | None:
        """The worker's next line, or None when it sent none within the line budget."""
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], self.line_budget)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise OSError("the metric matcher ended")
            self._pending += chunk
        reply, _, self._pending = self._pending.partition(b"\n")
        return reply.decode()

    def _drop(self, at: int, line: str) -> None:
        self._stop_worker()
        definition = self.active.pop(at if 0 <= at < len(self.active) else 0)
        self.dropped.append(definition.name)
        print(
            f"smc local: the metric {definition.name!r} (regex {definition.regex.pattern!r}) took more than "
            f"{self.line_budget:g} s on one line ({line[:80]!r}...): no longer matched (a regex that "
            "backtracks without end, like (a+)+$? Make it match less: e.g. ([0-9.]+)).",
            file=sys.stderr,
            flush=True,
        )


def write_csv(samples: Iterable[MetricSample], path: Path, started: float) -> Path:
    """``metrics.csv``: ``timestamp,seconds,host,metric,value``, in the order the lines were printed."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "seconds", "host", "metric", "value"])
        for s in samples:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s.timestamp))
            stamp += f".{int(s.timestamp * 1000) % 1000:03d}Z"
            writer.writerow([stamp, f"{s.timestamp - started:.3f}", s.host, s.name, repr(s.value)])
    return path


def metrics_table(samples: Sequence[MetricSample], definitions: Sequence[MetricDefinition]) -> str:
    """The summary table: one row per metric with its count, last, min and max value."""
    rows = [("metric", "count", "last", "min", "max")]
    for definition in definitions:
        values = [s.value for s in samples if s.name == definition.name]
        if values:
            rows.append(
                (definition.name, str(len(values)), f"{values[-1]:g}", f"{min(values):g}", f"{max(values):g}")
            )
        else:
            rows.append((definition.name, "0", "-", "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def plot_file_name(name: str) -> str:
    """``metric-<name>.png``, with anything but letters, digits, ``.``, ``_`` and ``-`` made ``_``."""
    return "metric-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".png"


def plot_metrics(
    samples: Sequence[MetricSample], definitions: Sequence[MetricDefinition], directory: Path, started: float
) -> list[Path]:
    """A PNG per metric with values (value over seconds since the start, one line per host).

    Raises ImportError (with how to install it) when matplotlib is not installed.
    """
    try:
        import matplotlib  # optional (smc-core[plot]) and heavy: only when plots are drawn

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"plots need matplotlib: {INSTALL_PLOTTING}") from None
    written = []
    for definition in definitions:
        series = [s for s in samples if s.name == definition.name]
        if not series:
            continue
        figure, axes = plt.subplots(figsize=PLOT_SIZE, dpi=PLOT_DPI)
        for host in sorted({s.host for s in series}):
            points = [(s.timestamp - started, s.value) for s in series if s.host == host]
            axes.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=host)
        axes.set_title(definition.name)
        axes.set_xlabel("seconds since start")
        axes.set_ylabel(definition.name)
        axes.grid(True, alpha=0.3)
        axes.legend()
        path = directory / plot_file_name(definition.name)
        figure.savefig(path, dpi=PLOT_DPI)  # no bbox_inches="tight": the size stays PLOT_SIZE * PLOT_DPI
        plt.close(figure)
        written.append(path)
    return written


def report_metrics(collector: MetricCollector, directory: Path) -> str:
    """Write ``metrics.csv`` and the plots into ``directory``; return the lines for the summary."""
    csv_path = write_csv(collector.samples, directory / "metrics.csv", collector.started)
    lines = [
        "metrics:",
        *("  " + row for row in metrics_table(collector.samples, collector.definitions).splitlines()),
    ]
    lines.append(f"  csv:  {csv_path} ({len(collector.samples)} values)")
    try:
        plots = plot_metrics(collector.samples, collector.definitions, directory, collector.started)
    except ImportError as exc:
        lines.append(f"  plots: not drawn: {exc}")
    else:
        lines += [f"  plot: {path}" for path in plots]
    return "\n".join(lines)
