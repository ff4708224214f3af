"""A smoke run of the benchmark code (benchmarks/run.py --quick): it runs, and its figures are well formed.

Only smc's side runs here, in the test's own environment: building the reference's environment needs
PyPI and minutes. No timing is asserted: benchmarks are not tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "benchmarks" / "run.py"


def run_bench(tmp_path: Path, only: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "figures.json"
    cmd = [
        sys.executable,
        str(RUN),
        "--quick",
        "--runners",
        "smc",
        "--smc-venv",
        sys.prefix,
        "--only",
        only,
        "--work",
        str(tmp_path / "work"),
        "--json",
        str(out),
        "--no-namespace",
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert out.exists(), done.stdout + done.stderr
    return done, json.loads(out.read_text())


def test_overhead_memory_and_discovery_measure_one_run(tmp_path: Path) -> None:
    done, figures = run_bench(tmp_path, "overhead,overhead-requirements,discovery")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("overhead", "overhead-requirements"):
        (series,) = figures["results"][name]
        (sample,) = series["samples"]
        assert series["runner"] == "smc"
        assert sample["ok"], sample["error"]
        assert 0 < sample["first_line_s"] <= sample["total_s"]
        assert sample["runner_peak_mib"] > 0
    (discovery,) = figures["discovery"].values()
    assert discovery[0]["discovery_s"] > 0 and discovery[0]["distributions"] > 0
    # The figures section for RESULTS.md was rendered.
    assert "<!-- figures:end -->" in done.stdout
    assert "Start-up overhead, small environment" in done.stdout


def test_fetch_measurement_runs_against_a_loopback_s3_endpoint(tmp_path: Path) -> None:
    # A 1 MB tarball through moto's server; whether smc's run succeeds is reported, not asserted here.
    _, figures = run_bench(tmp_path, "fetch", "--source-mb", "1")
    (series,) = figures["results"]["fetch"]
    (sample,) = series["samples"]
    assert sample["ok"] or sample["error"]
    assert (tmp_path / "work" / "data" / "sourcedir-1mb.tar.gz").stat().st_size > 500_000
