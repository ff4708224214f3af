"""The curves of issue 28 as Markdown tables (with the targets' verdicts) and matplotlib plots."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MARK_START = "<!-- curves:start (written by `benchmarks/curves.py --update-results`) -->"
MARK_END = "<!-- curves:end -->"

STYLE_TITLES = {
    "torchrun": "torchrun directly",
    "smc-torchrun": "smc-pytorch (torchrun)",
    "smc-mpi": "smc MPI (mpirun)",
    "tf": "MWMS directly (TF_CONFIG by hand)",
    "smc-tf": "smc-tensorflow (MWMS)",
    "smc-plain": "smc, no distribution",
    "ref-plain": "reference, no distribution",
}
OWN = ("smc-torchrun", "smc-mpi", "smc-tf", "smc-plain", "ref-plain")
"""The styles whose runner (smc's ``train``, or the reference's) runs on every host."""


def _median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _f(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{min(values):.2f} / **{statistics.median(values):.2f}** / {max(values):.2f}"


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def slope(points: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """Least-squares slope and intercept of ``points`` (x, y); None when fewer than two x values."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return None, None
    mx, my = statistics.fmean(xs), statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return b, my - b * mx


def growth(points: dict[int, float]) -> float | None:
    """The largest size's value over what a straight line through the smaller sizes predicts for it
    (least squares): about 1 for a line, about 2 for a quadratic over 2-32 hosts (1.7 over 2-16).
    None with fewer than three sizes, or a prediction at or below zero."""
    sizes = sorted(points)
    if len(sizes) < 3:
        return None
    b, a = slope([(n, points[n]) for n in sizes[:-1]])
    if b is None or a is None:
        return None
    predicted = a + b * sizes[-1]
    return points[sizes[-1]] / predicted if predicted > 0 else None


# --- hosts -------------------------------------------------------------------------------------------


def _by(runs: list[dict[str, Any]], style: str, hosts: int) -> list[dict[str, Any]]:
    return [r for r in runs if r["style"] == style and r["hosts"] == hosts]


def _smc_own(run: dict[str, Any], key: str) -> float:
    return float(sum(run["master"].get(kind, {}).get(key, 0) for kind in ("train", "sshd", "rank-wrapper")))


def hosts_section(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    runs = data.get("runs", [])
    lines: list[str] = []
    verdicts: list[str] = []
    sizes = sorted({r["hosts"] for r in runs})
    styles = [s for s in STYLE_TITLES if any(r["style"] == s for r in runs)]
    if not sizes:
        return lines, verdicts
    loads = [r.get("load", 0.0) for r in runs]
    lines += [
        "### 1. Hosts: launch (s, median of the runs; from the last host's start to every rank's first line)",
        "",
        f"Load average (1 min) during these runs: {min(loads):.1f}-{max(loads):.1f}.",
        "",
        "| hosts | " + " | ".join(STYLE_TITLES[s] for s in styles) + " | smc-pytorch beyond torchrun "
        "| smc-tensorflow beyond MWMS (ready) | smc MPI: smc's part / mpirun's part "
        "| no distribution: reference / smc | smc's CPU a host (s) | x hosts / cores |",
        "|---|" + "---|" * len(styles) + "---|---|---|---|---|---|",
    ]
    beyond: dict[str, dict[int, float]] = {"smc-torchrun": {}, "smc-tf": {}, "smc-mpi": {}}
    for n in sizes:
        med = {s: _median(r["launch_s"] for r in _by(runs, s, n)) for s in styles}
        ready = {s: _median(r["ready_s"] for r in _by(runs, s, n)) for s in styles}
        cells = [_f(med[s]) for s in styles]
        extra = []
        # MWMS has no launcher: its rendezvous is in the strategy's creation, so TF is judged by *ready*.
        for smc, base, figure in (("smc-torchrun", "torchrun", med), ("smc-tf", "tf", ready)):
            if figure.get(smc) is not None and figure.get(base) is not None:
                beyond[smc][n] = figure[smc] - figure[base]  # type: ignore[operator]
                extra.append(f"{beyond[smc][n]:+.2f}")
            else:
                extra.append("n/a")
        mpi = _by(runs, "smc-mpi", n)
        own = _median(r.get("framework_start_s") for r in mpi)
        total = _median(r["launch_s"] for r in mpi)
        if own is not None and total is not None:
            beyond["smc-mpi"][n] = own
            extra.append(f"{own:.2f} / {total - own:.2f}")
        else:
            extra.append("n/a")
        # smc's own CPU on one host until the end (train, its sshd): on this rig all hosts share the cores.
        per_host = _median(
            float(sum(tree.get(k, {}).get("cpu_s", 0) for k in ("train", "sshd", "rank-wrapper")))
            for r in runs
            if r["hosts"] == n and r["style"].startswith("smc-")
            for tree in (r["master"], r.get("worker") or {})
            if tree
        )
        plain = (med.get("ref-plain"), med.get("smc-plain"))
        extra.append(f"{plain[0] / plain[1]:.2f}x" if plain[0] and plain[1] else "n/a")
        extra.append(_f(per_host))
        extra.append(_f(per_host * n / (os.cpu_count() or 1) if per_host is not None else None))
        lines.append(f"| {n} | " + " | ".join(cells) + " | " + " | ".join(extra) + " |")
    lines += ["", "Every rank past its first collective (*ready*, s, median):", ""]
    lines += [
        "| hosts | " + " | ".join(STYLE_TITLES[s] for s in styles) + " |",
        "|---|" + "---|" * len(styles),
    ]
    for n in sizes:
        lines.append(
            f"| {n} | "
            + " | ".join(_f(_median(r["ready_s"] for r in _by(runs, s, n))) for s in styles)
            + " |"
        )
    top = 16 if 16 in sizes else sizes[-1]
    for smc, what in (
        ("smc-torchrun", "torchrun's own rendezvous"),
        ("smc-tf", "MWMS started by hand (every worker past its first all-reduce)"),
        ("smc-mpi", "mpirun's own launch (smc's part: from the last host's start to mpirun starting)"),
    ):
        value = beyond[smc].get(top)
        verdicts.append(
            f"| hosts: {STYLE_TITLES[smc]} launch at most 1 s beyond {what}, {top} hosts "
            f"| {_f(value, 2, ' s')} | {_verdict(None if value is None else value <= 1.0)} |"
        )

    fail_styles = [s for s in styles if s in ("smc-torchrun", "smc-mpi", "smc-tf")]
    lines += (
        []
        if not fail_styles
        else [
            "",
            "### 1. Hosts: a rank raises → every host's `train` exited (s: min / **median** / max)",
            "",
            "The framework's and the user's share, from the death: torchrun's agent (on the master) last "
            "seen running; mpirun last seen running; the process of the rank that raised last seen running "
            "(its own teardown: the floor of any launcher that learns of a failure from the process's exit). "
            "Sampled every 0.1 s.",
            "",
            "| hosts | " + " | ".join(STYLE_TITLES[s] for s in fail_styles) + " | agent gone (smc-pytorch) "
            "| mpirun gone (smc MPI) | the failing rank's process gone (smc-pytorch / smc-tensorflow) |",
            "|---|" + "---|" * len(fail_styles) + "---|---|---|",
        ]
    )
    for n in sizes if fail_styles else []:
        cells = []
        for s in fail_styles:
            values = [r["failure_s"] for r in _by(runs, s, n) if r.get("failure_s") is not None]
            bad = sum(1 for r in _by(runs, s, n) if r.get("problem"))
            cells.append(_spread(values) + (f" ({bad} failed)" if bad else ""))
        for s, kind in (("smc-torchrun", "launcher"), ("smc-mpi", "mpirun")):
            cells.append(
                _f(_median(r["master"].get(kind, {}).get("gone_after_death_s") for r in _by(runs, s, n)))
            )
        own = [
            _median(
                (r.get("worker") or {}).get("user", {}).get("gone_after_death_s") for r in _by(runs, s, n)
            )
            for s in ("smc-torchrun", "smc-tf")
        ]
        cells.append(f"{_f(own[0])} / {_f(own[1])}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    for s in fail_styles:
        value = _median(r.get("failure_s") for r in _by(runs, s, top))
        verdicts.append(
            f"| hosts: {STYLE_TITLES[s]}, a rank raises → every host exited, at most 3 s at {top} hosts "
            f"| {_f(value, 2, ' s')} | {_verdict(None if value is None else value <= 3.0)} |"
        )

    lines += [
        "",
        "### 1. Hosts: the master's own cost (median of the runs)",
        "",
        "The runner's own processes on the master: smc's `train` (with the MPI coordinator or the "
        "TensorFlow control channel in it), the job's sshd and smc's wrapper of each MPI rank; for the "
        "reference, its `train`. *Agent*: "
        "torchrun's agent process, which on smc's side also holds smc's additions (the failure watch on "
        "the rendezvous store). RSS is the sum of each process's peak (`VmHWM`); sockets, the most open "
        "at once.",
        "",
        "| hosts | style | runner's own RSS (MiB) | runner's own CPU (s) | runner's own sockets "
        "| agent RSS (MiB) | agent CPU (s) | agent sockets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    slopes: list[str] = []
    for s in styles:
        series: dict[str, dict[int, float]] = {"rss": {}, "cpu": {}, "sockets": {}, "agent_cpu": {}}
        for n in sizes:
            sample = _by(runs, s, n)
            if not sample:
                continue
            rss = _median(_smc_own(r, "rss_mib") for r in sample)
            cpu = _median(_smc_own(r, "cpu_s") for r in sample)
            sockets = _median(_smc_own(r, "sockets") for r in sample)
            agent = {
                k: _median(r["master"].get("launcher", {}).get(k) for r in sample)
                for k in ("rss_mib", "cpu_s", "sockets")
            }
            if s in OWN:
                series["rss"][n], series["cpu"][n], series["sockets"][n] = rss or 0, cpu or 0, sockets or 0
            if agent["cpu_s"] is not None:
                series["agent_cpu"][n] = agent["cpu_s"]
            own = (_f(rss, 1), _f(cpu, 2), _f(sockets, 0)) if s in OWN else ("-", "-", "-")
            lines.append(
                f"| {n} | {STYLE_TITLES[s]} | {own[0]} | {own[1]} | {own[2]} | {_f(agent['rss_mib'], 1)} "
                f"| {_f(agent['cpu_s'], 2)} | {_f(agent['sockets'], 0)} |"
            )
        if s in OWN:
            parts = []
            for key, unit in (("rss", "MiB"), ("cpu", "s"), ("sockets", "sockets")):
                b, _ = slope(list(series[key].items()))
                g = growth(series[key])
                parts.append(f"{_f(b, 3)} {unit} a host (growth {_f(g, 2)})")
            slopes.append(f"| {STYLE_TITLES[s]} | " + " | ".join(parts) + " |")
            b_cpu = slope(list(series["cpu"].items()))[0]
            g_values = [growth(series[k]) for k in ("rss", "cpu", "sockets")]
            quadratic = any(
                g is not None and g > 1.5 and (series_delta(series, k))
                for g, k in zip(g_values, ("rss", "cpu", "sockets"), strict=True)
            )
            if s.startswith("ref-"):
                continue
            verdicts.append(
                f"| hosts: {STYLE_TITLES[s]}, the master's own cost linear in hosts (per-host CPU slope) "
                f"| {_f(b_cpu, 3, ' s a host')} | {_verdict(None if b_cpu is None else not quadratic)} |"
            )
    lines += [
        "",
        "Per-host slope of the master's own cost (least squares over the sizes), and its *growth*: the "
        "largest size's value over what a straight line through the smaller sizes predicts for it (1 for "
        "a straight line, about 2 for a quadratic over 2-32 hosts; above 1.5, with the values spread "
        "over more than 10 %, counts as super-linear below):",
        "",
        "| style | RSS | CPU | sockets |",
        "|---|---|---|---|",
        *slopes,
    ]
    skipped = data.get("skipped", {})
    if skipped:
        lines += ["", "Not run: " + "; ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) + "."]
    lines.append("")
    return lines, verdicts


def series_delta(series: dict[str, dict[int, float]], key: str) -> bool:
    """Whether a series grows by more than noise (10 % of its largest value) over the sizes."""
    values = list(series[key].values())
    return bool(values) and (max(values) - min(values)) > 0.1 * max(values)


# --- archive -----------------------------------------------------------------------------------------


def _series(entry: dict[str, Any], runner: str) -> dict[str, Any] | None:
    return next((s for s in entry.get("series", []) if s["runner"] == runner), None)


def _values(series: dict[str, Any] | None, metric: str) -> list[float]:
    if series is None:
        return []
    return [s[metric] for s in series["samples"] if s["ok"] and s.get(metric) is not None]


def _paired(a: dict[str, Any] | None, b: dict[str, Any] | None, metric: str) -> list[float]:
    if a is None or b is None:
        return []
    return [
        x[metric] / y[metric]
        for x, y in zip(a["samples"], b["samples"], strict=False)
        if x["ok"] and y["ok"] and x.get(metric) and y.get(metric)
    ]


def archive_section(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    lines = [
        "### 2. Archive shape: from `s3://`, against transfer + GNU `tar xzf` of the same file (s, median)",
        "",
        "*Fetch alone* is the median time to the first line less the same runner's median with an archive "
        "holding `train.py` alone (the `train.py` row: interpreter, boto3, the S3 client, one GET).",
        "",
        "| archive | files | MB extracted / compressed | transfer + GNU tar | smc, first line "
        "| smc, fetch alone "
        "| smc fetch alone / limit | reference, first line | reference / smc (paired) | smc peak RSS (MiB) "
        "| reference peak RSS (MiB) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    rss: dict[str, float] = {}
    base = data.get("train.py")
    base_smc = _median(_values(_series(base, "smc"), "first_line_s")) if base else None
    for shape, entry in data.items():
        smc, ref = _series(entry, "smc"), _series(entry, "reference")
        limit = _median(entry["limits"].get("sum", []))
        t_smc = _median(_values(smc, "first_line_s"))
        t_ref = _median(_values(ref, "first_line_s"))
        m_smc = _median(_values(smc, "runner_peak_mib"))
        m_ref = _median(_values(ref, "runner_peak_mib"))
        alone = (
            t_smc - base_smc if t_smc is not None and base_smc is not None and shape != "train.py" else None
        )
        ratio = alone / limit if alone and limit else None
        speed = _median(_paired(ref, smc, "first_line_s"))
        if m_smc is not None and entry["bytes"] >= 10_000_000:
            rss[shape] = m_smc
        load = entry.get("load", [0, 0])
        lines.append(
            f"| {shape} | {entry['members']:,} "
            f"| {entry['bytes'] / 1e6:.1f} / {entry['compressed_bytes'] / 1e6:.1f} "
            f"| {_f(limit)} | {_f(t_smc)} "
            f"| {_f(alone)} | {_f(ratio, 2, 'x')} | {_f(t_ref)} | {_f(speed, 2, 'x')} "
            f"| {_f(m_smc, 1)} | {_f(m_ref, 1)} | {load[0]:.1f}-{load[1]:.1f} |"
        )
        if shape != "train.py":
            first = t_smc / limit if t_smc and limit else None
            verdicts.append(
                f"| archive {shape}: smc within 1.3x of transfer + GNU tar (fetch alone; to the first line "
                f"{_f(first, 2, 'x')}) | {_f(ratio, 2, 'x')} "
                f"| {_verdict(None if ratio is None else ratio <= 1.3)} |"
            )
    if len(rss) >= 2:
        spread = max(rss.values()) / min(rss.values()) - 1
        verdicts.append(
            f"| archive: smc's peak RSS flat (within 10 %) from 10 MB to 1 GB ({', '.join(rss)}) "
            f"| {spread * 100:.0f} % ({min(rss.values()):.1f}-{max(rss.values()):.1f} MiB) "
            f"| {_verdict(spread <= 0.10)} |"
        )
    lines.append("")
    return lines, verdicts


# --- logs --------------------------------------------------------------------------------------------


def logs_section(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    runs = data.get("runs", [])
    lines = [
        f"### 3. Ranks writing logs: {data.get('lines', 0):,} lines a rank, lines per second (median)",
        "",
        "| ranks | straight to files | through smc-pytorch | smc time / direct time: min / **median** / max "
        "| every line whole, in order, prefixed | load |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for n in sorted({r["ranks"] for r in runs}):
        direct = [r for r in runs if r["ranks"] == n and r["how"] == "direct"]
        smc = [r for r in runs if r["ranks"] == n and r["how"] == "smc"]
        ratios = [
            s["seconds"] / d["seconds"]
            for d, s in zip(direct, smc, strict=False)
            if d.get("seconds") and s.get("seconds")
        ]
        problems = [r["problem"] for r in smc + direct if r.get("problem")]
        loads = [r.get("load", 0.0) for r in direct + smc]
        lines.append(
            f"| {n} | {_f(_median(r.get('lines_per_s') for r in direct), 0)} "
            f"| {_f(_median(r.get('lines_per_s') for r in smc), 0)} | {_spread(ratios)} "
            f"| {'yes' if not problems else 'no: ' + problems[0]} | {min(loads):.1f}-{max(loads):.1f} |"
        )
        value = _median(ratios)
        verdicts.append(
            f"| logs, {n} rank(s): through smc at most 1.2x the time straight to files, every line whole "
            f"| {_f(value, 2, 'x')} | {_verdict(None if value is None else value <= 1.2 and not problems)} |"
        )
    lines.append("")
    return lines, verdicts


# --- requirements ------------------------------------------------------------------------------------


def requirements_section(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    lines = [
        "### 4. Requirements from a loopback index, cold caches (s, median)",
        "",
        "*Install alone* is the median time to the first line less the same runner's median with no "
        "requirements (the `0` row).",
        "",
        "| packages | reference (pip), first line | smc (uv), first line "
        "| speed-up, paired: min / **median** / max "
        "| reference, install alone | smc, install alone | speed-up, install alone | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    base = data.get("0")
    base_ref = _median(_values(_series(base, "reference"), "first_line_s")) if base else None
    base_smc = _median(_values(_series(base, "smc"), "first_line_s")) if base else None
    for size in sorted(data, key=int):
        entry = data[size]
        smc, ref = _series(entry, "smc"), _series(entry, "reference")
        t_ref, t_smc = _median(_values(ref, "first_line_s")), _median(_values(smc, "first_line_s"))
        ratios = _paired(ref, smc, "first_line_s")
        alone_ref = t_ref - base_ref if t_ref is not None and base_ref is not None and size != "0" else None
        alone_smc = t_smc - base_smc if t_smc is not None and base_smc is not None and size != "0" else None
        alone = alone_ref / alone_smc if alone_ref and alone_smc and alone_smc > 0 else None
        load = entry.get("load", [0, 0])
        lines.append(
            f"| {size} | {_f(t_ref)} | {_f(t_smc)} | {_spread(ratios)} | {_f(alone_ref)} | {_f(alone_smc)} "
            f"| {_f(alone, 2, 'x')} | {load[0]:.1f}-{load[1]:.1f} |"
        )
        if size != "0":
            value = _median(ratios)
            verdicts.append(
                f"| requirements, {size} package(s): smc at least 4x faster than the reference (to the first "
                f"line; install alone {_f(alone, 2, 'x')}) | {_f(value, 2, 'x')} "
                f"| {_verdict(None if value is None else value >= 4.0)} |"
            )
    lines.append("")
    return lines, verdicts


# --- the whole section -------------------------------------------------------------------------------


def render(figures: dict[str, Any]) -> str:
    """The curves section of RESULTS.md, between :data:`MARK_START` and :data:`MARK_END`."""
    info = figures.get("info", {})
    lines = [MARK_START, "", f"Measured {info.get('date', '?')} with `{info.get('command', '?')}`.", ""]
    lines += [f"- {k}: {v}" for k, v in info.items() if k not in ("date", "command")]
    timing = figures.get("timing", {})
    if timing:
        lines.append("- wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timing.items()))
    loads = [entry["load1"] for entry in figures.get("loads", [])]
    if loads:
        lines.append(
            f"- load average (1 min) at the start and end of each curve: {min(loads):.1f}-{max(loads):.1f}"
        )
    lines.append("")
    verdicts: list[str] = []
    for key, section in (
        ("hosts", hosts_section),
        ("archive", archive_section),
        ("logs", logs_section),
        ("requirements", requirements_section),
    ):
        if figures.get(key):
            body, verdict = section(figures[key])
            lines += body
            verdicts += verdict
    if verdicts:
        lines += [
            "### Targets of issue 28",
            "",
            "| target | figure (median) | met |",
            "|---|---|---|",
            *verdicts,
            "",
        ]
    failed = failed_runs(figures)
    if failed:
        lines += ["### Failed runs", "", *[f"- {f}" for f in failed[:30]], ""]
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def failed_runs(figures: dict[str, Any]) -> list[str]:
    """Every run that did not do its work, named."""
    failed = []
    for r in figures.get("hosts", {}).get("runs", []):
        if r.get("problem"):
            failed.append(f"hosts {r['style']} on {r['hosts']}: {r['problem']}")
    for r in figures.get("logs", {}).get("runs", []):
        if r.get("problem"):
            failed.append(f"logs {r['how']} {r['ranks']} rank(s): {r['problem']}")
    for curve in ("archive", "requirements"):
        for point, entry in figures.get(curve, {}).items():
            for series in entry.get("series", []):
                for sample in series["samples"]:
                    if not sample["ok"]:
                        failed.append(f"{curve} {point} {series['runner']}: {sample['error']}")
    return failed


def update_results_file(path: Path, section: str) -> None:
    """Replace the curves section of ``path`` (between the markers), or append it."""
    text = path.read_text() if path.exists() else ""
    if MARK_START in text and MARK_END in text:
        before, rest = text.split(MARK_START, 1)
        after = rest.split(MARK_END, 1)[1]
        text = before + section.rstrip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


# --- plots -------------------------------------------------------------------------------------------


def plot(figures: dict[str, Any], directory: Path) -> list[Path]:
    """Write ``curve-<name>.png`` for each curve measured into ``directory``; returns the paths.

    :raises SystemExit: matplotlib is not installed (``make bench-scale`` installs it).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit(
            f"the plots need matplotlib ({exc}): `make bench-scale` installs it, or "
            "`.venv/bin/pip install -e '.[bench]'`"
        ) from exc
    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig: Any, name: str) -> None:
        path = directory / f"curve-{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    hosts = figures.get("hosts", {}).get("runs", [])
    if hosts:
        sizes = sorted({r["hosts"] for r in hosts})
        styles = [s for s in STYLE_TITLES if any(r["style"] == s for r in hosts)]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for s in styles:
            xs = [n for n in sizes if _by(hosts, s, n)]
            axes[0].plot(
                xs,
                [_median(r["launch_s"] for r in _by(hosts, s, n)) for n in xs],
                "o-",
                label=STYLE_TITLES[s],
            )
            if s in ("smc-torchrun", "smc-mpi", "smc-tf"):
                axes[1].plot(
                    xs,
                    [_median(r["failure_s"] for r in _by(hosts, s, n)) for n in xs],
                    "o-",
                    label=STYLE_TITLES[s],
                )
            if s in OWN:
                axes[2].plot(
                    xs,
                    [_median(_smc_own(r, "cpu_s") for r in _by(hosts, s, n)) for n in xs],
                    "o-",
                    label=f"{STYLE_TITLES[s]}: runner CPU s",
                )
            agent = [
                _median(r["master"].get("launcher", {}).get("cpu_s") for r in _by(hosts, s, n)) for n in xs
            ]
            if any(a is not None for a in agent) and s in ("torchrun", "smc-torchrun"):
                axes[2].plot(xs, agent, "s--", label=f"{STYLE_TITLES[s]}: agent CPU s")
        axes[1].axhline(3.0, color="grey", linestyle=":", label="target 3 s")
        for ax, title in zip(
            axes,
            (
                "launch: last host's start → every rank running (s)",
                "a rank raises → every host exited (s)",
                "the master's CPU seconds",
            ),
            strict=True,
        ):
            ax.set_xlabel("hosts")
            ax.set_title(title, fontsize=10)
            ax.set_xticks(sizes)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        save(fig, "hosts")
    archive = figures.get("archive", {})
    if archive:
        shapes = list(archive)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        xs = list(range(len(shapes)))
        for runner, mark in (("smc", "o-"), ("reference", "s-")):
            axes[0].plot(
                xs,
                [_median(_values(_series(archive[s], runner), "first_line_s")) for s in shapes],
                mark,
                label=runner,
            )
            axes[1].plot(
                xs,
                [_median(_values(_series(archive[s], runner), "runner_peak_mib")) for s in shapes],
                mark,
                label=runner,
            )
        axes[0].plot(
            xs,
            [_median(archive[s]["limits"].get("sum", [])) for s in shapes],
            "k:",
            label="transfer + GNU tar",
        )
        axes[0].set_yscale("log")
        labels = [f"{s}\n{archive[s]['members']:,} files\n{archive[s]['bytes'] / 1e6:.0f} MB" for s in shapes]
        for ax, title in zip(
            axes, ("time to the first line (s, log)", "runner's peak RSS (MiB)"), strict=True
        ):
            ax.set_xticks(xs, labels, fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        axes[1].set_ylim(bottom=0)
        save(fig, "archive")
    logs = figures.get("logs", {}).get("runs", [])
    if logs:
        ranks = sorted({r["ranks"] for r in logs})
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for how, label in (("direct", "straight to files"), ("smc", "through smc-pytorch")):
            ax.plot(
                ranks,
                [
                    _median(r.get("lines_per_s") for r in logs if r["ranks"] == n and r["how"] == how)
                    for n in ranks
                ],
                "o-",
                label=label,
            )
        ax.set_xlabel("ranks on one host")
        ax.set_title("lines per second, 1M lines a rank", fontsize=10)
        ax.set_xticks(ranks)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "logs")
    requirements = figures.get("requirements", {})
    if requirements:
        sizes = sorted(requirements, key=int)
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for runner, label in (("reference", "reference (pip)"), ("smc", "smc (uv)")):
            ax.plot(
                [int(s) for s in sizes],
                [_median(_values(_series(requirements[s], runner), "first_line_s")) for s in sizes],
                "o-",
                label=label,
            )
        ax.set_xlabel("packages in requirements.txt")
        ax.set_title("time to the first line, cold caches (s)", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "requirements")
    return written
