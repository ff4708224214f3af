"""A smoke run of the benchmark code (benchmarks/run.py --quick): each measurement runs once, did the work
it times (fetched files present and byte-identical to the archive's, every log line whole and in order,
the failure seen on every host), and its figures are well formed.

Only smc's side runs here, in the test's own environment: building the reference's environment needs
PyPI and minutes. No timing is asserted: benchmarks are not tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "benchmarks" / "run.py"


def run_bench(
    tmp_path: Path, only: str, *extra: str, timeout: float = 240
) -> tuple[subprocess.CompletedProcess[str], dict]:
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
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
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
    # A 1 MB tarball through moto's server. A sample is ok only when the run succeeded and its code dir
    # then held every file of the tarball, byte for byte (the benchmark's check, tested below).
    done, figures = run_bench(tmp_path, "fetch", "--source-mb", "1")
    (series,) = figures["results"]["fetch"]
    (sample,) = series["samples"]
    assert sample["ok"], (sample["error"], done.stderr[-2000:])
    assert (tmp_path / "work" / "data" / "sourcedir-1mb.tar.gz").stat().st_size > 500_000


def test_the_fetch_check_finds_missing_and_changed_files(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from jobs import differences_from_tarball, make_sourcedir
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    tarball = make_sourcedir(tmp_path / "src.tar.gz", megabytes=1, log=False)
    code = tmp_path / "code"
    code.mkdir()
    with tarfile.open(tarball, "r:gz") as tar:
        # extraction filters came with Python 3.11.4 (and 3.10.12): Debian 12's 3.11.2 has none
        tar.extractall(code, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    assert differences_from_tarball(tarball, code) is None
    (code / "train.py").write_text("changed")
    blob = next(code.rglob("*.bin"))
    blob.unlink()
    found = differences_from_tarball(tarball, code)
    assert found is not None and "1 file(s) missing" in found and "1 differ (train.py)" in found


def test_s3_path_measurements_fetch_byte_identical_files(tmp_path: Path) -> None:
    # Start-up and a 2 MB archive from the static S3 endpoint, the limit (transfer + GNU tar) and the
    # floor's parts. A run whose extracted files differ from the archive's is marked failed.
    done, figures = run_bench(tmp_path, "overhead-s3,fetch-fast,s3-floor", "--source-mb", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("overhead-s3", "fetch-fast"):
        (series,) = figures["results"][name]
        (sample,) = series["samples"]
        assert sample["ok"], sample["error"]
        assert 0 < sample["first_line_s"] <= sample["total_s"]
    assert figures["limits"]["transfer"][0] > 0
    if shutil.which("tar"):
        assert figures["limits"]["tar"][0] > 0
    (floor,) = figures["floor"]
    assert floor["bytes"] > 0 and all(floor[k] > 0 for k in ("import_boto3_s", "client_s", "head_get_s"))
    assert "against the limit" in done.stdout and "The floor of start-up on the S3 path" in done.stdout


def test_logs_failures_and_peers_measure_one_run(tmp_path: Path) -> None:
    # 30,000 lines each way, checked line by line; one rank's death felt on every host; a late peer.
    done, figures = run_bench(tmp_path, "logs,failure,peers", timeout=500)
    scale = figures["scale"]
    for how in ("direct", "smc", "smc-torchrun"):
        (run,) = scale[f"logs-{how}"]
        assert run["problem"] is None, (how, run["problem"])
    assert len(scale["logs-torchrun"]) == 1  # torchrun's own --tee may split lines: reported only
    hosts = ["one-host", *(["two-hosts"] if "peers" in scale else [])]
    for how in hosts:
        (run,) = scale[f"failure-{how}"]
        assert run["problem"] is None, run["problem"]
        assert run["exit_codes"] and all(code == 1 for code in run["exit_codes"]), run
        assert run["seconds"] > 0
    if "peers" in scale:
        (run,) = scale["peers"]
        assert run["problem"] is None and run["exit_codes"] == [0, 0], run
        assert run["seconds"] > -0.02  # a process's start time is known to a clock tick (10 ms)
    assert done.returncode == 0, done.stdout[-3000:]


def test_the_curves_measure_the_smallest_size_of_each_once(tmp_path: Path) -> None:
    # Issue 28's curves at their smallest sizes, smc's side only: 2 hosts (torchrun directly, smc-pytorch,
    # the core's MPI), the 1,000-file archive from the static S3 endpoint, 1 rank of 20,000 log lines
    # both ways, 0 and 1 requirement from the loopback index; then the tables and the four plots.
    out = tmp_path / "curves.json"
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "curves.py"), "--quick", "--runners", "smc",
        "--smc-venv", sys.prefix, "--styles", "torchrun,smc-torchrun,smc-mpi",
        "--work", str(tmp_path / "work"), "--json", str(out), "--plots", str(tmp_path / "plots"),
        "--no-namespace",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    hosts = figures["hosts"]
    if hosts["runs"]:  # network namespaces (root) here; else skipped, with the reason
        ran = {run["style"]: run for run in hosts["runs"]}
        assert set(ran) | {s for s in hosts["skipped"]} >= {"torchrun", "smc-torchrun", "smc-mpi"}
        for style, run in ran.items():
            assert run["hosts"] == 2 and run["problem"] is None, run
            # every rank reached its first line and got past its first barrier
            assert 0 < run["launch_s"] <= run["ready_s"], run
            if style.startswith("smc-"):  # the last rank raised: every host's train ended with its exit code
                assert run["exit_codes"] == [1, 1] and run["failure_s"] > 0, run
                assert run["master"]["train"]["rss_mib"] > 0 and run["master"]["train"]["cpu_s"] > 0
            else:
                assert run["exit_codes"] == [0, 0], run
    else:
        assert hosts["skipped"], hosts

    (shape,) = figures["archive"].values()
    (series,) = shape["series"]
    (sample,) = series["samples"]
    # ok only when the code dir then held every file of the archive with its size
    assert sample["ok"], sample["error"]
    assert shape["members"] == 1_001 and sample["runner_peak_mib"] > 0
    assert shape["limits"]["transfer"][0] > 0

    logs = {run["how"]: run for run in figures["logs"]["runs"]}
    for how in ("direct", "smc"):
        # every line of the rank there, whole, in order (and through smc with its rank's prefix)
        assert logs[how]["problem"] is None and logs[how]["lines_per_s"] > 0, logs[how]

    for size in ("0", "1"):
        (series,) = figures["requirements"][size]["series"]
        (sample,) = series["samples"]
        assert sample["ok"], sample["error"]  # for "1": the package was installed, then removed again

    assert "### Targets of issue 28" in done.stdout and "<!-- curves:end -->" in done.stdout
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert plots == ["curve-archive.png", "curve-hosts.png", "curve-logs.png", "curve-requirements.png"]
