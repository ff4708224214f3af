"""`smc local --hosts N` and `--metric`: hosts with their own names, one terminal, signals, metrics files."""

from __future__ import annotations

import csv
import datetime
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smc_core.local.hosts import loopback_unavailable_reason, processes_with_environ
from smc_core.local.metrics import MetricCollector, parse_metric_option
from smc_core.local.netns import NETNS_ETC, _namespaces, netns_unavailable_reason
from smc_core.local.output import Line, LinePrefixer

from .helpers import SMC_ENV_PREFIXES, run_smc

NETNS = netns_unavailable_reason()
LOOPBACK = loopback_unavailable_reason()
SMC = str(Path(sys.executable).parent / "smc")

IDENTITY = """
import os, socket
others = {h: socket.gethostbyname(h) for h in ("algo-1", "algo-2")}
print("I am", socket.gethostname(), "in", os.environ["SAGEMAKER_BASE_DIR"].rsplit("/", 1)[-1],
      "current", os.environ["SM_CURRENT_HOST"], "sees", others, flush=True)
"""

METRICS = """
import time
for epoch in range(1, 5):
    print(f"epoch={epoch} loss={1 / epoch:.2f}", flush=True)
    time.sleep(0.05)
print("done, no metric here", flush=True)
"""


def local(*args: str, cwd: Path, **kwargs):
    return run_smc("smc", "local", *args, cwd=cwd, **kwargs)


def write_source(tmp_path: Path, script: str) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(script)
    return source


def assert_nothing_left(tmp_path: Path, smc_pid: int | None) -> None:
    """No process of the job, no namespace and no /etc/netns entry of that smc local."""
    deadline = time.monotonic() + 5  # SIGKILLed processes need a moment to be reaped by init
    while processes_with_environ(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with_environ(str(tmp_path)) == []
    if NETNS is None and smc_pid is not None:
        prefix = f"smcns-{smc_pid}-"
        assert [ns for ns in _namespaces() if ns.startswith(prefix)] == []
        assert not [p for p in NETNS_ETC.glob(prefix + "*")] if NETNS_ETC.exists() else True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "0"], "--hosts 0: give a number of hosts from 1 to 64"),
        (["--metric", "loss"], "--metric 'loss': expected NAME=REGEX"),
        (["--metric", "loss=[0-9"], "is not a valid regular expression"),
        (["--metric", "loss=loss [0-9.]+"], "has no group: put the value in parentheses"),
        (["--metric", "a=(1)", "--metric", "a=(2)"], "metric 'a' is defined twice"),
        (["--metric-definitions", "nope.json"], "--metric-definitions nope.json: no such file"),
        (["--failure-wait", "-1"], "--failure-wait -1: give 0 or more seconds"),
    ],
)
def test_bad_options_are_one_line_and_nothing_runs(tmp_path, args, message):
    source = write_source(tmp_path, "print('never')\n")
    proc = local(str(source), "--entry-point", "train.py", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / ".smc").exists()


def test_metric_definitions_file_entries_are_checked(tmp_path):
    source = write_source(tmp_path, "print('never')\n")
    (tmp_path / "defs.json").write_text('[{"Name": "loss", "Regex": "loss=([0-9.]+)"}, {"Regex": "x"}]')
    proc = local(str(source), "--entry-point", "train.py", "--metric-definitions", "defs.json", cwd=tmp_path)
    assert proc.returncode == 2
    assert 'entry 1 is {"Regex": "x"}; each entry needs "Name" and "Regex"' in proc.stderr


def test_metric_values_come_from_the_first_group():
    collector = MetricCollector([parse_metric_option("loss=loss=([0-9.e-]+)")])
    collector.feed("algo-1", "epoch=1 loss=0.25", 10.0)
    collector.feed("algo-1", "loss=nan-ish", 11.0)  # not a number: skipped, as SageMaker does
    collector.feed("algo-2", "no metric", 12.0)
    collector.feed("algo-2", "loss=1e-3", 13.0)
    assert [(s.host, s.value, s.timestamp) for s in collector.samples] == [
        ("algo-1", 0.25, 10.0),
        ("algo-2", 0.001, 13.0),
    ]


def test_lines_get_the_host_and_the_rank_the_adapter_marked():
    from smc_core import rank_prefix

    prefixer = LinePrefixer(["algo-1", "algo-2"], colour=False)
    assert prefixer.format(Line("algo-2", "[algo-2 rank 3]: loss 1", 0)) == "algo-2 rank 3 | loss 1"
    # the one prefix adapters write (rank_prefix), and the forms others print: MPI's, a hostless one
    assert prefixer.format(Line("algo-2", rank_prefix("algo-2", 2) + "x", 0)) == "algo-2 rank 2 | x"
    assert prefixer.format(Line("algo-2", "[algo-2 rank 1] loss 2", 0)) == "algo-2 rank 1 | loss 2"
    assert prefixer.format(Line("algo-2", "[rank 1]: loss 3", 0)) == "algo-2 rank 1 | loss 3"
    assert prefixer.format(Line("algo-1", "smc INFO: x", 0)) == "algo-1        | smc INFO: x"
    coloured = LinePrefixer(["algo-1"], colour=True).format(Line("algo-1", "x", 0))
    assert coloured.startswith("\x1b[36malgo-1") and coloured.endswith("\x1b[0m x")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_metrics_give_csv_rows_a_table_and_a_png_per_metric(tmp_path):
    source = write_source(tmp_path, METRICS)
    before = time.time()
    proc = local(
        str(source),
        "--entry-point",
        "train.py",
        "--job-name",
        "metrics",
        "--metric",
        "loss=loss=([0-9.]+)",
        "--metric",
        r"epoch=epoch=(\d+)",
        cwd=tmp_path,
    )
    after = time.time()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = tmp_path / ".smc" / "jobs" / "metrics"
    with (job / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["host"], r["metric"], float(r["value"])) for r in rows] == [
        pair
        for epoch in range(1, 5)
        for pair in (("algo-1", "loss", round(1 / epoch, 2)), ("algo-1", "epoch", float(epoch)))
    ]
    stamps = [datetime.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in rows]
    seconds = [s.timestamp() for s in stamps]
    assert seconds == sorted(seconds) and before - 1 <= seconds[0] <= seconds[-1] <= after + 1
    assert [float(r["seconds"]) for r in rows] == sorted(float(r["seconds"]) for r in rows)
    # The summary table: last, min, max.
    assert any(line.split() == ["loss", "4", "0.25", "0.25", "1"] for line in proc.stdout.splitlines())
    assert any(line.split() == ["epoch", "4", "4", "1", "4"] for line in proc.stdout.splitlines())
    for name in ("loss", "epoch"):
        png = job / f"metric-{name}.png"
        assert png_size(png) == (800, 450)
        from PIL import Image

        with Image.open(png) as image:
            image.verify()
    # Without --metric nothing of this appears.
    assert "epoch=1 loss=1.00" in proc.stdout


def test_without_matplotlib_the_csv_is_written_and_the_summary_says_how_to_plot(tmp_path):
    source = write_source(tmp_path, METRICS)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('No module named matplotlib')\n")
    proc = local(
        str(source),
        "--entry-point",
        "train.py",
        "--job-name",
        "noplot",
        "--metric",
        "loss=loss=([0-9.]+)",
        cwd=tmp_path,
        pythonpath=blocker,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "plots: not drawn: plots need matplotlib: pip install matplotlib" in proc.stdout
    assert len((tmp_path / ".smc" / "jobs" / "noplot" / "metrics.csv").read_text().splitlines()) == 5


def identity_check(tmp_path: Path, network: str) -> None:
    source = write_source(tmp_path, IDENTITY)
    proc = local(
        str(source), "--entry-point", "train.py", "--hosts", "2", "--host-network", network, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split(" | ")[0].strip(): line for line in proc.stdout.splitlines() if " I am " in line}
    for me in ("algo-1", "algo-2"):
        assert f"I am {me} in {me} current {me}" in lines[me], proc.stdout
    one, two = (eval(lines[h].split(" sees ")[1]) for h in ("algo-1", "algo-2"))
    assert one == two and len(set(one.values())) == 2, (one, two)
    assert "algo-1  succeeded" in proc.stdout and "algo-2  succeeded" in proc.stdout
    assert "smc local: job train-" in proc.stdout and f"(2, {network})" in proc.stdout


@pytest.mark.netns
@pytest.mark.skipif(NETNS is not None, reason=NETNS or "")
def test_netns_hosts_have_their_own_name_address_and_job_dir(tmp_path):
    identity_check(tmp_path, "netns")


@pytest.mark.skipif(LOOPBACK is not None, reason=LOOPBACK or "")
def test_loopback_hosts_have_their_own_name_address_and_job_dir(tmp_path):
    identity_check(tmp_path, "loopback")


SLEEPER = """
import os, signal, sys, time
host = os.environ["SM_CURRENT_HOST"]
def stop(signum, frame):
    open(os.path.join({base!r}, "stopped-" + host), "w").write("saved")
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
open(os.path.join({base!r}, "started-" + host), "w").write(str(os.getpid()))
time.sleep(120)
"""


NETWORKS = [
    pytest.param("netns", marks=pytest.mark.skipif(NETNS is not None, reason=NETNS or "")),
    pytest.param("loopback", marks=pytest.mark.skipif(LOOPBACK is not None, reason=LOOPBACK or "")),
]


@pytest.mark.netns
@pytest.mark.parametrize("network", NETWORKS)
def test_sigterm_reaches_every_host_and_nothing_is_left_behind(tmp_path, network):
    source = write_source(tmp_path, SLEEPER.format(base=str(tmp_path)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(SMC_ENV_PREFIXES)}
    options = ["--hosts", "2", "--host-network", network, "--job-name", "stopped"]
    proc = subprocess.Popen(
        [SMC, "local", str(source), "--entry-point", "train.py", *options],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = [tmp_path / "started-algo-1", tmp_path / "started-algo-2"]
    deadline = time.monotonic() + 90
    while not all(p.exists() and p.read_text() for p in started):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    for host in ("algo-1", "algo-2"):
        assert (tmp_path / f"stopped-{host}").read_text() == "saved"
        failure = tmp_path / ".smc" / "jobs" / "stopped" / host / "output" / "failure"
        assert "ExitCode 143" in failure.read_text()
    assert "SIGTERM: passed on to every host" in out
    assert "job stopped stopped by SIGTERM (exit code 143)" in out
    assert sum(line.split()[1:3] == ["exit", "code"] and "143" in line for line in out.splitlines()) == 2, out
    assert_nothing_left(tmp_path, proc.pid)


FAILS_ON_ALGO_2 = """
import os, signal, sys, time
host = os.environ["SM_CURRENT_HOST"]
if host == "algo-2":
    time.sleep(1)
    sys.exit("algo-2 gives up: no data for this host")
def stop(signum, frame):
    open(os.path.join({base!r}, "stopped-" + host), "w").write("saved")
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
time.sleep(120)
"""


@pytest.mark.netns
@pytest.mark.skipif(NETNS is not None and LOOPBACK is not None, reason=f"{NETNS}; {LOOPBACK}")
def test_a_host_that_ignores_a_peer_failure_is_stopped_after_the_failure_wait(tmp_path):
    source = write_source(tmp_path, FAILS_ON_ALGO_2.format(base=str(tmp_path)))
    started = time.monotonic()
    proc = local(
        str(source),
        *("--entry-point", "train.py", "--hosts", "2", "--failure-wait", "2", "--job-name", "broken"),
        cwd=tmp_path,
        timeout=90,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert elapsed < 45, f"{elapsed:.0f} s"
    out = proc.stdout
    assert "smc local: algo-2 failed (exit code 1); the other hosts have 2 s to stop on their own." in out
    assert "smc local: stopping algo-1 (SIGTERM" in out
    assert (tmp_path / "stopped-algo-1").read_text() == "saved"
    summary = out[out.index("smc local: job broken failed: algo-2 failed first (exit code 1)") :]
    assert "algo-2 gives up: no data for this host" in summary
    row = next(line for line in summary.splitlines() if line.strip().startswith("algo-1"))
    assert "exit code 143 (SIGTERM)" in row, summary
    assert_nothing_left(tmp_path, None)


CHECKPOINTING = """
import os
ckpt = os.environ["SM_CHECKPOINT_DIR"]
host = os.environ["SM_CURRENT_HOST"]
print("restored", sorted(os.listdir(ckpt)), "into", ckpt, flush=True)
open(os.path.join(ckpt, "ckpt-" + host), "w").write("state of " + host)
"""


@pytest.mark.netns
@pytest.mark.skipif(NETNS is not None and LOOPBACK is not None, reason=f"{NETNS}; {LOOPBACK}")
def test_every_host_keeps_its_checkpoints_in_step_with_s3(tmp_path, s3_server):
    bucket = s3_server.bucket()
    source = write_source(tmp_path, CHECKPOINTING)
    uri = f"s3://{bucket}/ckpt/job"
    args = ("--entry-point", "train.py", "--hosts", "2", "--checkpoint-s3-uri", uri)
    first = local(str(source), *args, "--job-name", "one", cwd=tmp_path, env=s3_server.env)
    assert first.returncode == 0, first.stdout + first.stderr
    client = s3_server.client()
    stored = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert stored == {"ckpt/job/ckpt-algo-1", "ckpt/job/ckpt-algo-2"}, first.stdout
    second = local(str(source), *args, "--job-name", "two", cwd=tmp_path, env=s3_server.env)
    assert second.returncode == 0, second.stdout + second.stderr
    for host in ("algo-1", "algo-2"):
        where = tmp_path / ".smc" / "jobs" / "two" / host / "checkpoints"
        assert f"restored ['ckpt-algo-1', 'ckpt-algo-2'] into {where}" in second.stdout, second.stdout
