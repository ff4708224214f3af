"""Long torch jobs: a stall found and explained on 2 hosts (with stacks on demand first), and torchrun's
restarts from a checkpoint (issue 26)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smc_core.testing.netns import loopback_unavailable_reason, netns_unavailable_reason

NETNS = netns_unavailable_reason()
LOOPBACK = loopback_unavailable_reason()
SMC = str(Path(sys.executable).parent / "smc")
TRAIN = str(Path(sys.executable).parent / "train")

STALLING = """\
import os, sys, time
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
for step in range(2):
    t = torch.ones(1)
    dist.all_reduce(t)
    print(f"rank {rank} step {step}", flush=True)
marker = os.environ["SM_HP_MARKER"]
if rank == 3:
    open(marker, "w").write(str(time.time()))
    print("rank 3 sleeps", flush=True)
    time.sleep(3600)  # the line it stalls on
print(f"rank {rank} waits in all_reduce", flush=True)
dist.all_reduce(torch.ones(1))
"""

RESUMING = """\
import os, time
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
attempt = int(os.environ["SMC_ATTEMPT"])
checkpoint = os.path.join(os.environ["SM_CHECKPOINT_DIR"], "step.txt")
start = int(open(checkpoint).read()) + 1 if os.path.exists(checkpoint) else 1
print(f"rank {rank} attempt {attempt} starts at step {start}", flush=True)
for step in range(start, 5):
    if step == 3 and rank == 1 and attempt == 1:
        raise RuntimeError("rank 1 dies at step 3")
    dist.all_reduce(torch.ones(1))
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)  # each host's own, as on the platform
    open(f"{checkpoint}.{rank}", "w").write(str(step))
    os.replace(f"{checkpoint}.{rank}", checkpoint)
    dist.barrier()
print(f"rank {rank} finished on attempt {attempt}", flush=True)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env.update(SMC_HOST_WAIT_TIMEOUT="60", PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.mark.netns
@pytest.mark.skipif(NETNS is not None, reason=f"{NETNS}")
def test_a_rank_that_sleeps_before_an_all_reduce_is_found_on_two_hosts(tmp_path: Path) -> None:
    """2 hosts x 2 processes, rank 3 sleeps before an all-reduce: `smc stacks` first shows every rank's
    stack and the job goes on; the 20 s stall then ends it on every host within 30 s, the failure file
    naming rank 3, its host and line, and the others' frames in the collective."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(STALLING)
    marker = tmp_path / "rank3-sleeps"
    command = [
        SMC, "local", str(source), "--entry-point", "train.py", "--hosts", "2", "--adapter", "pytorch",
        "--job-name", "stall", "-p", "sagemaker_torch_distributed_enabled=true",
        "-p", "sagemaker_mpi_num_of_processes_per_host=2", "-p", "sagemaker_stall_timeout=20",
        "-p", f"marker={marker}",
    ]  # fmt: skip
    job = tmp_path / ".smc" / "jobs" / "stall"
    with subprocess.Popen(
        command, cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 120
            while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert marker.exists(), "rank 3 never reached its sleep"
            time.sleep(3)  # every rank in its place
            asked = subprocess.run(
                [SMC, "stacks", str(job)], cwd=tmp_path, capture_output=True, text=True, timeout=30
            )
            assert asked.returncode == 0, asked.stderr
            out, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    ended = time.time()
    slept = float(marker.read_text())
    assert proc.returncode == 7, out[-6000:]
    assert ended - slept < 30 + 5, f"the stall ended the job {ended - slept:.0f} s after rank 3 slept"
    on_demand = out[out.index("SIGUSR1: reading the stacks") : out.index("No progress on any host")]
    for rank, host in ((0, "algo-1"), (1, "algo-1"), (2, "algo-2"), (3, "algo-2")):
        assert f"rank {rank} on {host}" in on_demand, on_demand[-4000:]
    for host in ("algo-1", "algo-2"):
        failure = (job / host / "output" / "failure").read_text()
        first, second = failure.splitlines()[:2]
        assert first.startswith("StallError: no progress on any host for 20 s"), failure
        assert "rank 3 on algo-2" in first and "train.py:15" in first, failure
        assert second == "ExitCode 7"
        others = [line for line in failure.splitlines() if "rank 0 on algo-1" in line]
        assert others and "all_reduce" in others[0], failure
    assert "rank 3 on algo-2" in out and "time.sleep(3600)" not in out  # py-spy names the line, no source


@pytest.mark.netns
@pytest.mark.skipif(NETNS is not None and LOOPBACK is not None, reason=f"{NETNS}; {LOOPBACK}")
@pytest.mark.parametrize("hosts", [1, 2])
def test_torchrun_restarts_from_the_checkpoint(tmp_path: Path, hosts: int) -> None:
    """Rank 1 dies at step 3 on attempt 1; attempt 2 resumes at step 3 (the checkpoint of step 2) and
    finishes; the attempts are named in the log."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(RESUMING)
    per_host = 2 if hosts == 1 else 1
    command = [
        SMC, "local", str(source), "--entry-point", "train.py", "--hosts", str(hosts), "--adapter", "pytorch",
        "--job-name", "resume", "-p", "sagemaker_torch_distributed_enabled=true",
        "-p", f"sagemaker_mpi_num_of_processes_per_host={per_host}", "-p", "sagemaker_max_restarts=1",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=200
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "rank 1 dies at step 3" in out
    assert "smc: attempt 1: rank 1 on" in out and "torchrun restarts the workers" in out
    assert "rank 0 attempt 2 starts at step 3" in out and "rank 1 attempt 2 starts at step 3" in out
    assert "rank 1 finished on attempt 2" in out
