"""The core's supervision policy on smc-pytorch's launch: torchrun obeys the job's grace period on one host
and on two, what its workers leave running gets the leftover grace, and the wait for peer hosts is the
job's host-wait bound; smc-pytorch passes none of them by hand."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

GRACE = 2.0
MARGIN = 3.0
"""Seconds beyond a bound for smc's own teardown and report."""
TORCHRUN = {"sagemaker_torch_distributed_enabled": True}

IGNORES_SIGTERM = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(os.environ["SM_MODEL_DIR"], f"ready-{os.environ['RANK']}"), "w").close()
time.sleep(120)
"""

LEAVES_A_CHILD = """
import os, subprocess, sys, time
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "exited-at"), "w") as f:
    f.write(str(time.time()))
"""


def wait_for_files(directory: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(directory.glob("ready-*"))) < count:
        assert time.monotonic() < deadline, f"only {list(directory.glob('ready-*'))} in {directory}"
        time.sleep(0.1)


def stop_on_one_host(smc_job, request) -> None:
    job = smc_job.start(
        code={"train.py": IGNORES_SIGTERM},
        entry_point="train.py",
        hyperparameters={**TORCHRUN, "sagemaker_mpi_num_of_processes_per_host": 2},
        env={"SMC_GRACE_PERIOD": str(GRACE)},
    )
    wait_for_files(job.job_dir / "model", 2)
    sent = job.signal(signal.SIGTERM)
    check_stopped(job.wait(timeout=60), sent)


def stop_on_two_hosts(smc_job, request) -> None:
    cluster = request.getfixturevalue("netns_hosts")(2, interface="net0")
    jobs = smc_job.start_on_cluster(
        cluster,
        code={"train.py": IGNORES_SIGTERM},
        entry_point="train.py",
        hyperparameters=TORCHRUN,
        env={"SMC_GRACE_PERIOD": str(GRACE), "SMC_HOST_WAIT_TIMEOUT": "60"},
    )
    for job in jobs:
        wait_for_files(job.job_dir / "model", 1)
    sent = [job.signal(signal.SIGTERM) for job in jobs]
    for job, when in zip(jobs, sent, strict=True):
        check_stopped(job.wait(timeout=60), when)


def check_stopped(outcome, sent: float) -> None:
    assert outcome.ended is not None and outcome.ended - sent < GRACE + MARGIN, outcome.describe()
    # A stop is a stop: 143 and JobStopped, the SIGKILL after the grace period told below
    failure = outcome.assert_failure(143)
    assert failure.startswith("JobStopped: the job was stopped by SIGTERM"), failure
    assert "SMC_GRACE_PERIOD" in failure[:1024] and f"{GRACE:g} s" in failure, failure
    assert "killed by SIGKILL, sent by smc" in failure, failure


def leftovers_get_the_leftover_grace(smc_job, request) -> None:
    outcome = smc_job(
        code={"train.py": LEAVES_A_CHILD},
        entry_point="train.py",
        hyperparameters=TORCHRUN,
        env={"SMC_LEFTOVER_GRACE": "1"},
        timeout=120,
    )
    ended = time.time()
    outcome.assert_success()
    assert "left running by" in outcome.logs and "SIGKILL after 1 s" in outcome.logs, outcome.logs[-3000:]
    exited = float((outcome.model_dir / "exited-at").read_text())
    assert ended - exited < 1 + MARGIN + 2, outcome.describe()  # + torchrun's own end


def the_wait_for_peers_is_the_jobs(smc_job, request) -> None:
    outcome = smc_job(  # algo-2 never comes up (neither name resolves on this machine)
        code={"train.py": "pass\n"},
        entry_point="train.py",
        hyperparameters=TORCHRUN,
        hosts=("algo-1", "algo-2"),
        env={"SMC_HOST_WAIT_TIMEOUT": "2"},
    )
    failure = outcome.assert_failure(6)
    assert "did not resolve within 2 s" in failure and "SMC_HOST_WAIT_TIMEOUT" in failure, failure


CASES: dict[str, Callable[..., None]] = {
    "torchrun on one host: SIGTERM": stop_on_one_host,
    "torchrun on two hosts: SIGTERM": stop_on_two_hosts,
    "torchrun: leftovers": leftovers_get_the_leftover_grace,
    "torchrun: waiting for peers": the_wait_for_peers_is_the_jobs,
}
NETNS = {"torchrun on two hosts: SIGTERM"}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.netns] if c in NETNS else []) for c in CASES]
)
def test_torchrun_obeys_the_jobs_policy(smc_job, request, case) -> None:
    CASES[case](smc_job, request)
