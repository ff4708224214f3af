"""The core's supervision policy on smc-tensorflow's launches: a MultiWorkerMirrored and a
parameter-server job on two hosts obey the job's grace period on every host, and the wait for peer
hosts is the job's host-wait bound; smc-tensorflow passes none of them by hand (its own fixed 5 s
stop grace is gone)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

GRACE = 2.0
MARGIN = 3.0
"""Seconds beyond the grace period for smc's own teardown and report."""

IGNORES_SIGTERM = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as TensorFlow's preemption handling can
open(os.path.join(os.environ["SM_MODEL_DIR"], f"ready-{os.environ['SM_CURRENT_HOST']}"), "w").close()
time.sleep(120)
"""


def wait_for_file(directory: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not list(directory.glob("ready-*")):
        assert time.monotonic() < deadline, f"nothing ready in {directory}"
        time.sleep(0.1)


def stop_on_two_hosts(switch: str) -> Callable[..., None]:
    def case(smc_job, request) -> None:
        cluster = request.getfixturevalue("netns_hosts")(2)
        jobs = smc_job.start_on_cluster(
            cluster,
            code={"train.py": IGNORES_SIGTERM},
            entry_point="train.py",
            hyperparameters={switch: True},
            env={"SMC_GRACE_PERIOD": str(GRACE), "SMC_HOST_WAIT_TIMEOUT": "60"},
        )
        for job in jobs:
            wait_for_file(job.job_dir / "model")
        sent = [job.signal(signal.SIGTERM) for job in jobs]
        for job, when in zip(jobs, sent, strict=True):
            outcome = job.wait(timeout=90)
            assert outcome.ended is not None and outcome.ended - when < GRACE + MARGIN, outcome.describe()
            # A stop is a stop on every host: 143 and JobStopped, whatever the code did in its grace
            failure = outcome.assert_failure(143)
            assert failure.startswith("JobStopped: the job was stopped by SIGTERM"), failure
            assert "SMC_GRACE_PERIOD" in failure[:1024] and f"{GRACE:g} s" in failure, failure

    return case


def the_wait_for_peers_is_the_jobs(smc_job, request) -> None:
    outcome = smc_job(  # algo-2 never comes up (neither name resolves on this machine)
        code={"train.py": "pass\n"},
        entry_point="train.py",
        hyperparameters={"sagemaker_multi_worker_mirrored_strategy_enabled": True},
        hosts=("algo-1", "algo-2"),
        env={"SMC_HOST_WAIT_TIMEOUT": "2"},
    )
    failure = outcome.assert_failure(6)
    assert "did not resolve within 2 s" in failure and "SMC_HOST_WAIT_TIMEOUT" in failure, failure


CASES: dict[str, Callable[..., None]] = {
    "MultiWorkerMirrored on two hosts: SIGTERM": stop_on_two_hosts(
        "sagemaker_multi_worker_mirrored_strategy_enabled"
    ),
    "parameter server on two hosts: SIGTERM": stop_on_two_hosts("sagemaker_parameter_server_enabled"),
    "waiting for peers": the_wait_for_peers_is_the_jobs,
}
NETNS = {case for case in CASES if "two hosts" in case}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.netns] if c in NETNS else []) for c in CASES]
)
def test_tensorflow_launches_obey_the_jobs_policy(smc_job, request, case) -> None:
    CASES[case](smc_job, request)
