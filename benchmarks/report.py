"""Turning the measurements into tables: figures per runner, ratios, and the targets of issue 7."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from measure import Series, paired_ratios, summary

MARK_START = "<!-- figures:start (written by `benchmarks/run.py --update-results`) -->"
MARK_END = "<!-- figures:end -->"

TITLES = {
    "overhead": "1. Start-up overhead, small environment (no requirements)",
    "overhead-requirements": "2. Start-up overhead, small environment, requirements.txt already satisfied",
    "overhead-framework": "1. Start-up overhead, framework-sized environment",
    "overhead-requirements-framework": (
        "2. Start-up overhead, framework-sized environment, requirements.txt already satisfied"
    ),
    "overhead-s3": "1s. Start-up overhead, code from `s3://` (small environment, the static endpoint)",
    "overhead-s3-framework": "1s. The same, framework-sized environment (300 distributions)",
    "fetch": "3. Code fetch: sourcedir.tar.gz from the loopback S3 endpoint (moto)",
    "fetch-fast": "3s. Code fetch: the same 200 MB sourcedir.tar.gz from the static endpoint",
    "install": "4. Requirements install into a fresh environment (cold caches)",
    "install-pip": "4b. The same, smc made to use pip (`SMC_INSTALLER=pip`), for comparison",
}

MEMORY_JOBS = {
    "overhead": "plain job, small environment (measurement 1)",
    "overhead-framework": "plain job, framework-sized environment",
    "fetch": "code fetched from S3 (measurement 3)",
    "fetch-fast": "code fetched from the static S3 endpoint (measurement 3s)",
    "install": "requirements installed (measurement 4)",
}

SPEEDUP_TARGETS = {
    "overhead": 6.0,
    "overhead-requirements": 6.0,
    "overhead-framework": 6.0,
    "overhead-requirements-framework": 6.0,
    "fetch": 1.5,
    "fetch-fast": 2.5,
    "install": 4.0,
}


def machine() -> dict[str, str]:
    """A description of this machine and of the software measured."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "smc_core", "plugins/pytorch"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent.parent,
            check=False,
        ).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except OSError:
        commit = "?"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "smc commit": commit or "?",
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.2f}"
    if unit == "ms":
        return f"{value * 1000:.1f}"
    if unit == "MiB":
        return f"{value:.1f}"
    return f"{value:.2f}"


def _range(stats: dict[str, float] | None, unit: str) -> str:
    if stats is None:
        return "n/a"
    return f"{_fmt(stats['min'], unit)} / **{_fmt(stats['median'], unit)}** / {_fmt(stats['max'], unit)}"


def _by_runner(series: list[Series]) -> dict[str, Series]:
    return {s.runner: s for s in series}


def timing_rows(results: dict[str, list[Series]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown rows for the timed measurements, and the verdicts for the targets table."""
    rows = [
        "| measurement | reference: min / **median** / max (s) | smc: min / **median** / max (s) "
        "| speed-up reference/smc: min / **median** / max | runs |",
        "|---|---|---|---|---|",
    ]
    verdicts: list[dict[str, Any]] = []
    for name, title in TITLES.items():
        if name not in results:
            continue
        by = _by_runner(results[name])
        ref, smc = by.get("reference"), by.get("smc")
        ref_stats = summary(ref.values("first_line_s")) if ref else None
        smc_stats = summary(smc.values("first_line_s")) if smc else None
        ratios = summary(paired_ratios(ref, smc, "first_line_s")) if ref and smc else None
        runs = max(len(s.samples) for s in results[name])
        rows.append(
            f"| {title} | {_range(ref_stats, 's')} | {_range(smc_stats, 's')} | "
            f"{_range(ratios, 'x')} | {runs} |"
        )
        if name in SPEEDUP_TARGETS:
            verdicts.append({"name": name, "title": title, "ratio": ratios, "target": SPEEDUP_TARGETS[name]})
    return rows, verdicts


def component_rows(results: dict[str, list[Series]]) -> tuple[list[str], dict[str, float | None]]:
    """Fetch and install alone: the median time to first line less the same runner's median start-up."""
    rows = [
        "| step alone (median less the runner's median start-up, measurement 1) | reference (s) | smc (s) "
        "| speed-up |",
        "|---|---|---|---|",
    ]
    speedups: dict[str, float | None] = {}
    base = _by_runner(results.get("overhead", []))
    for name in ("fetch", "fetch-fast", "install", "install-pip"):
        if name not in results:
            continue
        by = _by_runner(results[name])
        parts: dict[str, float | None] = {}
        for runner in ("reference", "smc"):
            step, start = summary(by[runner].values("first_line_s")) if runner in by else None, None
            if name == "fetch-fast":  # less the start-up with the (small) code from the same endpoint
                start = summary(
                    _by_runner(results.get("overhead-s3", []))
                    .get(runner, Series(runner, ""))
                    .values("first_line_s")
                )
            elif runner in base:
                start = summary(base[runner].values("first_line_s"))
            parts[runner] = step["median"] - start["median"] if step and start else None
        ref, smc = parts.get("reference"), parts.get("smc")
        speedups[name] = ref / smc if ref is not None and smc else None
        rows.append(f"| {TITLES[name]} | {_fmt(ref, 's')} | {_fmt(smc, 's')} | {_fmt(speedups[name], 'x')} |")
    return rows, speedups


def memory_rows(results: dict[str, list[Series]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The runner process's own peak resident memory (VmHWM) while the user script runs."""
    rows = [
        "| job | reference: min / **median** / max (MiB) | smc: min / **median** / max (MiB) "
        "| smc/reference (median) |",
        "|---|---|---|---|",
    ]
    verdicts = []
    for name in MEMORY_JOBS:
        if name not in results:
            continue
        by = _by_runner(results[name])
        ref = summary(by["reference"].values("runner_peak_mib")) if "reference" in by else None
        smc = summary(by["smc"].values("runner_peak_mib")) if "smc" in by else None
        ratio = smc["median"] / ref["median"] if ref and smc else None
        rows.append(
            f"| {MEMORY_JOBS[name]} | {_range(ref, 'MiB')} | {_range(smc, 'MiB')} | {_fmt(ratio, 'x')} |"
        )
        verdicts.append({"name": name, "ratio": ratio})
    return rows, verdicts


def discovery_rows(discovery: dict[str, list[dict[str, float]]]) -> tuple[list[str], float | None]:
    """Plugin discovery in fresh interpreters, per environment."""
    rows = [
        "| environment | distributions | entry-point discovery (ms) | first `get_plugin_manager()`, all (ms) "
        "| `import smc_core.host.runner, smc_core.host.plugins` (ms) "
        "| bare interpreter start, process (ms) |",
        "|---|---|---|---|---|---|",
    ]
    framework_median = None
    for venv, samples in discovery.items():
        if not samples:
            continue
        disc = summary([s["discovery_s"] for s in samples])
        total = summary([s["total_s"] for s in samples])
        imp = summary([s["import_s"] for s in samples])
        bare = summary([s["bare_interpreter_s"] for s in samples])
        rows.append(
            f"| {venv} | {int(samples[0]['distributions'])} | {_range(disc, 'ms')} | {_range(total, 'ms')} | "
            f"{_range(imp, 'ms')} | {_range(bare, 'ms')} |"
        )
        if "framework" in venv and disc:
            framework_median = disc["median"]
    return rows, framework_median


def profile_rows(profile: dict[str, dict[str, list[float]]], top: int = 14) -> list[str]:
    """Median import self time per top-level package, the largest first, side by side per runner."""
    runners = [r for r in ("reference", "smc") if r in profile]
    ranked = {
        r: sorted(((statistics.median(v), p) for p, v in profile[r].items() if v), reverse=True)[: top + 1]
        for r in runners
    }
    rows = ["| " + " | ".join(f"{r}: package | ms" for r in runners) + " |", "|---|---" * len(runners) + "|"]
    for i in range(max(len(v) for v in ranked.values())):
        cells = []
        for r in runners:
            seconds, package = ranked[r][i] if i < len(ranked[r]) else (None, "")
            cells.append(f"{package} | {_fmt(seconds, 'ms') if seconds is not None else ''}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def render(
    results: dict[str, list[Series]],
    discovery: dict[str, list[dict[str, float]]],
    info: dict[str, str],
    command: str,
    profile: dict[str, dict[str, list[float]]] | None = None,
    *,
    limits: dict[str, list[float]] | None = None,
    floor: list[dict[str, float]] | None = None,
    big: dict[str, list[dict[str, Any]]] | None = None,
) -> str:
    """The figures section of RESULTS.md."""
    timing, verdicts = timing_rows(results)
    components, speedups = component_rows(results)
    memory, mem_verdicts = memory_rows(results)
    disc, disc_median = discovery_rows(discovery)
    lines = [MARK_START, "", f"Measured {info['date']} with `{command}`.", ""]
    lines += [f"- {key}: {value}" for key, value in info.items() if key != "date"]
    lines += ["", "### Time from `train` starting to the user script's first line", "", *timing, ""]
    if len(components) > 2:
        lines += ["### Fetch and install alone", "", *components, ""]
    if len(memory) > 2:
        lines += ["### 5. The runner's own peak memory (VmHWM) while the user script runs", "", *memory, ""]
    if len(disc) > 2:
        lines += ["### 6. Plugin discovery (fresh interpreter each run)", "", *disc, ""]
    if profile:
        lines += [
            "### Where start-up time goes: import self time by top-level package "
            "(`python -X importtime train`, plain job, median)",
            "",
            "`-X importtime` slows imports itself: compare rows with each other, not with the timings above.",
            "",
            *profile_rows(profile),
            "",
        ]
    extra_rows, extra_verdicts = scale_sections(results, limits or {}, floor or [], big or {})
    lines += extra_rows
    lines += ["### Targets", "", "| target | figure (median) | met |", "|---|---|---|"]
    for v in verdicts:
        ratio = v["ratio"]["median"] if v["ratio"] else None
        name = v["name"]
        if name == "fetch-fast":
            label = f"{name}: `s3://` to first line at least {v['target']:g}x faster"
        elif name in speedups:
            ratio = speedups[name]
            label = f"{name} (step alone) at least {v['target']:g}x faster"
        else:
            label = f"{name}: smc overhead at most 1/{v['target']:g} of the reference's"
        met = "n/a" if ratio is None else ("yes" if ratio >= v["target"] else "**no**")
        lines.append(f"| {label} | {_fmt(ratio, 'x')}{'x' if ratio is not None else ''} | {met} |")
    for v in mem_verdicts:
        if v["name"] == "overhead":
            met = "n/a" if v["ratio"] is None else ("yes" if v["ratio"] <= 0.5 else "**no**")
            shown = _fmt(v["ratio"], "x") + ("x" if v["ratio"] is not None else "")
            lines.append(f"| runner peak memory at most half the reference's | {shown} | {met} |")
    if disc_median is not None:
        met = "yes" if disc_median <= 0.030 else "**no**"
        lines.append(
            f"| plugin discovery at most 30 ms (framework-sized) | {disc_median * 1000:.1f} ms | {met} |"
        )
    lines += extra_verdicts
    failures = [
        (name, s.runner, f.error) for name, series in results.items() for s in series for f in s.failures()
    ]
    if failures:
        lines += ["", "### Failed runs", ""]
        lines += [f"- {name}, {runner}: {error}" for name, runner, error in failures[:20]]
    lines += ["", MARK_END]
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _verdict(label: str, value: float | None, shown: str, met: bool | None) -> str:
    verdict = "n/a" if met is None else ("yes" if met else "**no**")
    return f"| {label} | {shown if value is not None else 'n/a'} | {verdict} |"


def scale_sections(
    results: dict[str, list[Series]],
    limits: dict[str, list[float]],
    floor: list[dict[str, float]],
    big: dict[str, list[dict[str, Any]]],
) -> tuple[list[str], list[str]]:
    """The tables of issue 16 (the S3 path, its limit and floor, logs, failures, peers) and their
    rows in the targets table."""
    lines: list[str] = []
    verdicts: list[str] = []
    for key, where in (("overhead-s3", "small"), ("overhead-s3-framework", "framework-sized")):
        s3 = _by_runner(results.get(key, []))
        if "reference" in s3 and "smc" in s3:
            ratios = summary([1 / r for r in paired_ratios(s3["reference"], s3["smc"], "first_line_s")])
            value = ratios["median"] if ratios else None
            verdicts.append(
                _verdict(
                    f"start-up, code from `s3://` ({where}): smc's time at most 0.5 of the reference's",
                    value,
                    f"{value:.2f}" if value else "",
                    value is not None and value <= 0.5,
                )
            )
    fast = _by_runner(results.get("fetch-fast", []))
    if limits.get("sum"):
        smc_fast = summary(fast["smc"].values("first_line_s")) if "smc" in fast else None
        ref_fast = summary(fast["reference"].values("first_line_s")) if "reference" in fast else None
        limit = _median(limits["sum"])
        lines += [
            "### 3s. The 200 MB archive from `s3://`, against the limit (same rounds)",
            "",
            "| | median (s) |",
            "|---|---|",
            f"| the transfer alone (one GET, dropped) | {_fmt(_median(limits.get('transfer', [])), 's')} |",
            f"| GNU `tar xzf` of the same file, from disk | {_fmt(_median(limits.get('tar', [])), 's')} |",
            f"| **limit**: transfer + GNU tar | **{_fmt(limit, 's')}** |",
            f"| smc, `train` start to first line | {_fmt(smc_fast['median'] if smc_fast else None, 's')} |",
            f"| reference, `train` start to first line | {_fmt(ref_fast and ref_fast['median'], 's')} |",
            "",
        ]
        if smc_fast and limit:
            ratio = smc_fast["median"] / limit
            verdicts.append(
                _verdict(
                    "200 MB from `s3://`: smc within 1.3x of transfer + GNU tar",
                    ratio,
                    f"{ratio:.2f}x",
                    ratio <= 1.3,
                )
            )
    cpu_rows = []
    for name in ("overhead-s3", "overhead-s3-framework", "fetch-fast", "fetch"):
        by = _by_runner(results.get(name, []))
        if "reference" in by and "smc" in by:
            ref_cpu = summary(by["reference"].values("cpu_s"))
            smc_cpu = summary(by["smc"].values("cpu_s"))
            if ref_cpu and smc_cpu:
                cpu_rows.append(
                    f"| {TITLES[name]} | {_range(ref_cpu, 's')} | {_range(smc_cpu, 's')} | "
                    f"{_fmt(ref_cpu['median'] / smc_cpu['median'], 'x')}x |"
                )
    if cpu_rows:
        lines += [
            "### CPU time of the whole run (user + system, `train` and all it ran), the same runs",
            "",
            "CPU time is what load does not inflate: on a shared machine it is the steadier comparison.",
            "",
            "| measurement | reference: min / **median** / max (s) | smc: min / **median** / max (s) "
            "| reference/smc (medians) |",
            "|---|---|---|---|",
            *cpu_rows,
            "",
        ]
    if floor:
        parts = ["bare_interpreter_s", "import_boto3_s", "import_smc_s3_s", "client_s", "head_get_s"]
        names = {
            "bare_interpreter_s": "a bare interpreter's start (the user's process pays it too)",
            "import_boto3_s": "`import boto3`",
            "import_smc_s3_s": "`import smc_core.usercode.s3`",
            "client_s": "creating the S3 client (botocore's loader: service model, endpoint rules)",
            "head_get_s": "HEAD and GET of the small archive",
        }
        lines += [
            "### 1s. The floor of start-up on the S3 path (smc-small-venv, fresh interpreters)",
            "",
            "| part | min / **median** / max (ms) |",
            "|---|---|",
        ]
        for part in parts:
            lines.append(f"| {names[part]} | {_range(summary([f[part] for f in floor]), 'ms')} |")
        total = sum(statistics.median([f[part] for f in floor]) for part in parts)
        lines += [f"| **sum of medians** | **{total * 1000:.1f}** |", ""]
    runs = {
        k: [r for r in v if r.get("seconds") is not None and not r.get("problem")] for k, v in big.items()
    }
    if any(k.startswith("logs-") for k in big):
        # Times of every run count (torchrun's own --tee splitting lines does not make it slower).
        secs = {
            k: _median([r["seconds"] for r in v if r.get("seconds") is not None])
            for k, v in big.items()
            if k.startswith("logs-")
        }
        problems = [
            f"{k}: {r['problem']}"
            for k, v in big.items()
            if k.startswith("logs-")
            for r in v
            if r.get("problem")
        ]
        n = max((len(v) for k, v in big.items() if k.startswith("logs-")), default=0)
        lines += [
            "### 7. Logs at full speed (medians, interleaved; output to a file, checked line by line)",
            "",
            "| how | median (s) | against |",
            "|---|---|---|",
        ]
        for key, label, against in (
            ("logs-direct", "the script run directly", None),
            ("logs-smc", "through `smc local`", "logs-direct"),
            ("logs-torchrun", "torchrun directly, 2 processes, `--tee 3` with rank prefixes", "logs-direct"),
            ("logs-smc-torchrun", "through `smc local` + the PyTorch adapter, 2 processes", "logs-torchrun"),
        ):
            value, base = secs.get(key), secs.get(against or "")
            shown = ""
            if value and base:
                what = "the direct run" if against == "logs-direct" else "torchrun directly"
                shown = f"{value / base:.2f}x {what}"
            lines.append(f"| {label} | {_fmt(value, 's')} | {shown} |")
        lines += [
            "",
            f"Runs: {n} each. Lines split, lost or out of order: {'; '.join(problems) or 'none'}.",
            "",
        ]
        if secs.get("logs-smc") and secs.get("logs-direct"):
            rel = secs["logs-smc"] / secs["logs-direct"]
            verdicts.append(
                _verdict(
                    "3M log lines through `smc local` within 1.15x of the direct run",
                    rel,
                    f"{rel:.2f}x",
                    rel <= 1.15,
                )
            )
        smc_torch = [r for r in big.get("logs-smc-torchrun", [])]
        if smc_torch:
            whole = all(not r.get("problem") for r in smc_torch)
            verdicts.append(
                _verdict(
                    "torchrun through smc: every line whole, in order, rank-prefixed",
                    1.0,
                    "yes" if whole else "no",
                    whole,
                )
            )
    failure_keys = [k for k in ("failure-one-host", "failure-two-hosts") if k in big]
    if failure_keys or "peers" in big:
        lines += [
            "### 8. Failures and peers",
            "",
            "| measurement | min / **median** / max (s) | runs | failed runs |",
            "|---|---|---|---|",
        ]
        titles = {
            "failure-one-host": "a rank raises → every host's `train` exited: one host, 2 processes",
            "failure-two-hosts": "a rank raises → every host's `train` exited: 2 hosts (network namespaces)",
            "peers": "the last peer's name resolves → this host launches torchrun (it resolves 5 s late)",
        }
        for key in [*failure_keys, *(["peers"] if "peers" in big else [])]:
            values = [r["seconds"] for r in runs.get(key, [])]
            bad = len(big[key]) - len(values)
            lines.append(f"| {titles[key]} | {_range(summary(values), 's')} | {len(big[key])} | {bad} |")
            value = _median(values)
            bound = 1.0 if key == "peers" else 10.0
            verdicts.append(
                _verdict(
                    f"{titles[key]}: under {bound:g} s",
                    value,
                    f"{value:.2f} s" if value else "",
                    value is not None and value < bound and not bad,
                )
            )
        lines.append("")
    return lines, verdicts


def update_results_file(path: Path, section: str) -> None:
    """Replace the figures section of ``path`` (between the markers) with ``section``."""
    text = path.read_text() if path.exists() else ""
    if MARK_START in text and MARK_END in text:
        before = text.split(MARK_START)[0]
        after = text.split(MARK_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text + ("\n" if text else "") + section
    path.write_text(text)
