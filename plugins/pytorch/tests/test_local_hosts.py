"""`smc local --hosts 2` with the PyTorch adapter: a real torch.distributed job on two local hosts."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pytorch_helpers import DDP_SCRIPT

from smc_core.testing.netns import (
    NETNS_ETC,
    loopback_unavailable_reason,
    namespaces,
    netns_unavailable_reason,
    processes_with_environ,
)

NETNS = netns_unavailable_reason()
LOOPBACK = loopback_unavailable_reason()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(NETNS is not None and LOOPBACK is not None, reason=f"{NETNS}; {LOOPBACK}"),
]
ROOT = Path(__file__).resolve().parents[3]
SMC = str(Path(sys.executable).parent / "smc")


def smc_local(tmp_path: Path, source: Path, *args: str, timeout: float = 240) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env["SMC_HOST_WAIT_TIMEOUT"] = "60"
    command = [SMC, "local", str(source), "--entry-point", "train.py", "--hosts", "2", "--adapter", "pytorch"]
    with subprocess.Popen(
        [*command, "-p", "sagemaker_torch_distributed_enabled=true", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return proc, out


def ddp_source(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(DDP_SCRIPT)
    return source


def assert_nothing_left(tmp_path: Path, smc_pid: int) -> None:
    deadline = time.monotonic() + 5
    while processes_with_environ(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with_environ(str(tmp_path)) == [], "processes of the job outlived smc local"
    prefix = f"smcns-{smc_pid}-"
    if NETNS is None:
        assert [ns for ns in namespaces() if ns.startswith(prefix)] == []
        assert not list(NETNS_ETC.glob(prefix + "*"))


def test_two_hosts_train_together_and_the_summary_shows_both(tmp_path):
    proc, out = smc_local(tmp_path, ddp_source(tmp_path), "-p", "steps=3", "--job-name", "two")
    assert proc.returncode == 0, out[-6000:]
    job = tmp_path / ".smc" / "jobs" / "two"
    w0 = torch.load(job / "algo-1" / "model" / "weights-0.pt")
    w1 = torch.load(job / "algo-2" / "model" / "weights-1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "the hosts' weights differ: they did not all-reduce"
    assert "algo-2 rank 1 | rank 1 of 2 done" in out
    assert "algo-1 rank 0 | rank 0 of 2 done" in out
    assert "smc local: job two succeeded" in out
    assert "algo-1  succeeded" in out and "algo-2  succeeded" in out
    assert f"model:   {job / 'algo-1' / 'model'}" in out
    assert_nothing_left(tmp_path, proc.pid)


@pytest.mark.parametrize("before_init", [1, 0], ids=["before-init", "in-training"])
def test_a_failing_host_ends_the_job_within_60_s_and_leaves_nothing(tmp_path, before_init):
    source = ddp_source(tmp_path)
    started = time.monotonic()
    proc, out = smc_local(
        tmp_path,
        source,
        *("-p", "steps=3", "-p", "fail-rank=1", "-p", f"fail-before-init={before_init}"),
        *("--job-name", "broken"),
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode != 0, out[-6000:]
    assert elapsed < 60, f"smc local took {elapsed:.0f} s to end a job whose host failed:\n{out[-6000:]}"
    error = "RuntimeError: cannot start rank 1" if before_init else "ValueError: boom on rank 1"
    summary = out[out.index("smc local: job broken failed") :]
    assert "algo-2 failed first" in summary, summary
    assert "failure (algo-2):" in summary and error in summary, summary
    row = next(line for line in summary.splitlines() if line.strip().startswith("algo-2"))
    assert error in row, summary
    assert_nothing_left(tmp_path, proc.pid)


def test_the_example_runs_on_two_hosts_with_metrics(tmp_path):
    proc, out = smc_local(
        tmp_path,
        ROOT / "examples" / "pytorch",
        *("-p", "epochs=2", "--job-name", "example"),
        *("--metric", r"loss=loss ([0-9.]+)", "--metric", r"test_mse=test mse ([0-9.]+)"),
    )
    assert proc.returncode == 0, out[-6000:]
    job = tmp_path / ".smc" / "jobs" / "example"
    assert (job / "algo-1" / "model" / "model.pt").exists()
    with (job / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    losses = [(r["host"], r["metric"]) for r in rows if r["metric"] == "loss"]
    assert sorted(losses) == [("algo-1", "loss")] * 2 + [("algo-2", "loss")] * 2
    assert [r["host"] for r in rows if r["metric"] == "test_mse"] == ["algo-1"]
    assert (job / "metric-loss.png").exists() and (job / "metric-test_mse.png").exists()
