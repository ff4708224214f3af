"""Performance as jobs grow (issue 28): four curves, with smc's cost per unit, the reference beside it.

    make bench-scale                                   # everything, rewrites RESULTS.md and the plots
    .venv/bin/python benchmarks/curves.py --quick      # the smallest size of each, once (smoke)
    .venv/bin/python benchmarks/curves.py --only hosts --hosts 2,4,8,16,32 --runs 3
    .venv/bin/python benchmarks/curves.py --only archive,requirements --runs 5

1. **hosts** (``curve_hosts.py``): 2-16 (32) network-namespace hosts, each a full ``train``: launch,
   failure and the master's own cost, for smc-pytorch, the core's MPI and smc-tensorflow, with torchrun
   and MultiWorkerMirroredStrategy run directly beside them.
2. **archive** (``curve_fetch.py``): 1k / 10k / 100k small files and 1 GB of large files from the
   loopback S3 endpoint, smc and the reference against transfer + GNU ``tar xzf``; the runner's peak RSS.
3. **logs** (``curve_logs.py``): 1 / 2 / 4 / 8 ranks of 1M lines each through smc-pytorch, against the
   same processes writing straight to files.
4. **requirements** (``curve_fetch.py``): 1 / 10 / 50 packages from a loopback index, cold: smc (uv)
   against the reference (pip).

The tables go into ``benchmarks/RESULTS.md`` between the ``curves`` markers, the plots beside it
(``benchmarks/curve-*.png``, matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import curves_report
import envs
import run as bench_run
import services

CURVES = ("hosts", "archive", "logs", "requirements")
HERE = Path(__file__).resolve().parent


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smallest size of each curve, once")
    parser.add_argument(
        "--only", default=",".join(CURVES), help=f"comma-separated curves ({','.join(CURVES)})"
    )
    parser.add_argument("--runs", type=int, default=None, help="kept runs per point (default 3; --quick 1)")
    parser.add_argument("--warmup", type=int, default=None, help="discarded rounds first (default 0)")
    parser.add_argument("--hosts", type=_ints, default=None, help="host counts (default 2,4,8,16,32)")
    parser.add_argument(
        "--styles",
        default=None,
        help="launch styles for the hosts curve (default all: torchrun,smc-torchrun,...)",
    )
    parser.add_argument("--shapes", default=None, help="archive shapes (default train.py,1k,10k,100k,1GB)")
    parser.add_argument("--ranks", type=_ints, default=None, help="ranks writing logs (default 1,2,4,8)")
    parser.add_argument("--lines", type=int, default=None, help="log lines per rank (default 1M)")
    parser.add_argument("--packages", type=_ints, default=None, help="requirements sizes (default 0,1,10,50)")
    parser.add_argument("--runners", default="reference,smc", help="for archive and requirements")
    parser.add_argument("--smc-venv", type=Path, default=None, help="an existing environment for smc's runs")
    parser.add_argument(
        "--work", type=Path, default=envs.WORK, help="scratch directory (default benchmarks/.work)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every sample to this JSON file")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="render tables and plots from JSON files written by --json (curves merged, the first info kept)",
    )
    parser.add_argument("--update-results", action="store_true", help="rewrite the curves in RESULTS.md")
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="write the PNG plots here (default: beside RESULTS.md with --update-results, else none)",
    )
    parser.add_argument("--no-namespace", action="store_true", help="no private namespace for algo-1")
    args = parser.parse_args(argv)
    quick = args.quick
    args.runs = args.runs if args.runs is not None else (1 if quick else 3)
    args.warmup = args.warmup if args.warmup is not None else 0
    args.hosts = args.hosts or ([2] if quick else [2, 4, 8, 16, 32])
    args.shapes = [
        s for s in (args.shapes or ("1k" if quick else "train.py,1k,10k,100k,1GB")).split(",") if s
    ]
    args.ranks = args.ranks or ([1] if quick else [1, 2, 4, 8])
    args.lines = args.lines or (20_000 if quick else 1_000_000)
    args.packages = args.packages or ([0, 1] if quick else [0, 1, 10, 50])
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    args.runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    import curve_fetch
    import curve_hosts

    args.styles = [s for s in (args.styles or ",".join(curve_hosts.STYLES)).split(",") if s]
    for name, given, known in (
        ("--only", args.only, CURVES),
        ("--styles", args.styles, curve_hosts.STYLES),
        ("--shapes", args.shapes, tuple(curve_fetch.SHAPES)),
        ("--runners", args.runners, ("reference", "smc")),
    ):
        unknown = sorted(set(given) - set(known))
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if any(n > len(curve_fetch.PACKAGES) or n < 0 for n in args.packages):
        parser.error(f"--packages: between 0 (no requirements.txt) and {len(curve_fetch.PACKAGES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure the curves asked for; returns 0, or 1 when a run failed (the table says which)."""
    args = parse_args(argv)
    work: Path = args.work.resolve()
    log = _logger()
    if args.from_json:
        figures = {}
        runs: list[str] = []
        for path in args.from_json:
            part = json.loads(path.read_text())
            info = part.get("info", {})
            runs.append(
                f"{info.get('date', '?')}, smc {info.get('smc commit', '?')}: `{info.get('command', '?')}`"
            )
            for key, value in part.items():
                if key in ("loads",):
                    figures.setdefault(key, []).extend(value)
                elif key == "timing":
                    figures.setdefault(key, {}).update({k: v for k, v in value.items() if k != "all"})
                elif key not in figures:
                    figures[key] = value
                elif key in ("archive", "requirements"):  # points measured in another run, added
                    figures[key] = {**value, **figures[key]}
                elif key == "hosts":  # styles measured only in another run, added
                    have = {run["style"] for run in figures[key]["runs"]}
                    figures[key] = {
                        "runs": figures[key]["runs"] + [r for r in value["runs"] if r["style"] not in have],
                        "skipped": {**value["skipped"], **figures[key]["skipped"]},
                    }
    else:
        needs_reference = bool({"archive", "requirements"} & set(args.only)) and "reference" in args.runners
        if needs_reference and not args.no_namespace:
            bench_run.enter_namespace(work)  # the reference waits until algo-1 resolves
        work.mkdir(parents=True, exist_ok=True)
        figures = measure_all(args, work, log)
    if args.from_json and len(args.from_json) > 1:
        figures["info"] = {**figures["info"], "command": "the runs below, merged", "runs": " / ".join(runs)}
    section = curves_report.render(figures)
    print()
    print(section)
    (work / "curves-latest.md").parent.mkdir(parents=True, exist_ok=True)
    (work / "curves-latest.md").write_text(section)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=_jsonable))
    plots = args.plots or (HERE if args.update_results else None)
    if plots is not None:
        for path in curves_report.plot(figures, plots):
            log(f"[done] wrote {path}")
    if args.update_results:
        curves_report.update_results_file(HERE / "RESULTS.md", section)
        log("[done] wrote the curves into benchmarks/RESULTS.md")
    failed = curves_report.failed_runs(figures)
    if failed:
        log(f"[done] failed runs: {'; '.join(failed[:10])}")
    return 1 if failed else 0


def _jsonable(value: Any) -> Any:
    return None if value == float("inf") else str(value)


def _logger() -> Any:
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"{time.monotonic() - started:7.1f} {message}", flush=True)

    return log


def measure_all(args: argparse.Namespace, work: Path, log: Any) -> dict[str, Any]:
    """Run the curves in ``args.only``; returns every sample, with the machine and the load."""
    import curve_fetch
    import curve_hosts
    import curve_logs
    import report

    started = time.time()
    info = report.machine()
    info["reference"] = envs.REFERENCE_REQUIREMENT
    info["command"] = (
        "make bench-scale" if not sys.argv[1:] else "python benchmarks/curves.py " + " ".join(sys.argv[1:])
    )
    figures: dict[str, Any] = {"info": info, "loads": [], "timing": {}}

    def note_load(what: str) -> None:
        figures["loads"].append({"at": what, "load1": os.getloadavg()[0], "time": time.time()})

    common: dict[str, str] = {
        **services.FAKE_CREDENTIALS,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }
    if not bench_run.algo1_resolves():
        common["SM_STUDIO_LOCAL_MODE"] = "true"
    small: dict[str, envs.Venv] = {}
    if {"archive", "requirements"} & set(args.only):
        if "reference" in args.runners:
            small["reference"] = envs.ensure_reference("small")
        if "smc" in args.runners:
            small["smc"] = envs.existing_venv(args.smc_venv) if args.smc_venv else envs.ensure_smc("small")

    for curve in args.only:
        note_load(f"{curve} start")
        began = time.time()
        log(f"[{curve}] load {os.getloadavg()[0]:.1f}")
        if curve == "hosts":
            if not bench_run.scale.netns_available():
                figures["hosts"] = {
                    "runs": [],
                    "skipped": {"all": "network namespaces need root and iproute2"},
                }
            else:
                figures["hosts"] = curve_hosts.hosts_curve(work, args.hosts, args.styles, args.runs, log)
        elif curve == "archive":
            figures["archive"] = curve_fetch.archive_curve(
                work, small, common, args.shapes, args.runs, args.warmup, log
            )
        elif curve == "logs":
            out_dir = Path("/dev/shm") if Path("/dev/shm").is_dir() else work
            runs = []
            for ranks in args.ranks:
                for _ in range(args.runs):
                    for how in ("direct", "smc"):
                        run = curve_logs.logs_once(work, how, ranks, args.lines, out_dir)
                        runs.append({**run.__dict__, "load": os.getloadavg()[0]})
                        shown = f"{run.lines_per_s:,.0f} lines/s" if run.lines_per_s else "n/a"
                        took = f"({run.seconds or 0:.2f} s)"
                        log(f"  logs {how:<7} {ranks} rank(s): {shown} {took} {run.problem or ''}")
            figures["logs"] = {"runs": runs, "lines": args.lines}
        elif curve == "requirements":
            figures["requirements"] = curve_fetch.requirements_curve(
                work, small, common, args.packages, args.runs, args.warmup, log
            )
        figures["timing"][curve] = time.time() - began
        note_load(f"{curve} end")
    figures["timing"]["all"] = time.time() - started
    return figures


if __name__ == "__main__":
    sys.exit(main())
