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
"""

from __future__ import annotations

import csv
import json
import re
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
