"""The core's supervision policy on smc-keras's launch on each backend's distributed path (jax and
tensorflow run the entry point once, torch runs torchrun): a stop signal gets the job's grace period,
and the wait for peer hosts is the job's host-wait bound; smc-keras passes none of them by hand (its
torchrun and its wait for peers had dropped them)."""

from __future__ import annotations

import signal
import time

import pytest
from keras_helpers import needs

from smc_core.testing import RunningJob

GRACE = 2.0
MARGIN = 3.0
"""Seconds beyond the grace period for smc's own teardown and report."""

IGNORES_SIGTERM = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(os.environ["SM_MODEL_DIR"], f"ready-{os.environ.get('RANK', '0')}"), "w").close()
time.sleep(120)
"""

PATHS = {
    "jax": ({"sagemaker_keras_jax_distributed_enabled": True, "sagemaker_keras_backend": "jax"}, 1),
    "tensorflow": (
        {"sagemaker_multi_worker_mirrored_strategy_enabled": True, "sagemaker_keras_backend": "tensorflow"},
        1,
    ),
    "torch": (
        {
            "sagemaker_torch_distributed_enabled": True,
            "sagemaker_keras_backend": "torch",
            "sagemaker_mpi_num_of_processes_per_host": 2,
        },
        2,
    ),
}


def wait_for_files(job: RunningJob, count: int, timeout: float = 120) -> None:
    """Until every rank has written its ready file; a job that ends first fails at once, showing why."""
    directory = job.job_dir / "model"
    deadline = time.monotonic() + timeout
    while len(list(directory.glob("ready-*"))) < count:
        if job.process.poll() is not None:
            pytest.fail(f"the job ended before its {count} ranks were ready:\n{job.wait().describe()}")
        if time.monotonic() > deadline:
            ready = sorted(p.name for p in directory.glob("ready-*"))
            pytest.fail(f"only {ready} after {timeout:g} s:\n{job.wait(0).describe()}")
        time.sleep(0.1)


@pytest.mark.parametrize("backend", [pytest.param(b, marks=needs(b)) for b in PATHS])
def test_each_distributed_path_obeys_the_jobs_policy(smc_job, backend) -> None:
    hyperparameters, ranks = PATHS[backend]
    job = smc_job.start(
        code={"train.py": IGNORES_SIGTERM},
        entry_point="train.py",
        hyperparameters=hyperparameters,
        env={"SMC_GRACE_PERIOD": str(GRACE)},
    )
    wait_for_files(job, ranks)
    sent = job.signal(signal.SIGTERM)
    outcome = job.wait(timeout=60)
    assert outcome.ended is not None and outcome.ended - sent < GRACE + MARGIN, outcome.describe()
    # A stop is a stop: 143 and JobStopped, the SIGKILL after the grace period told below
    failure = outcome.assert_failure(143)
    assert failure.startswith("JobStopped: the job was stopped by SIGTERM"), failure
    assert "SMC_GRACE_PERIOD" in failure[:1024] and f"{GRACE:g} s" in failure, failure
    assert "killed by SIGKILL, sent by smc" in failure, failure
    # Across hosts, each path first waits for its peers: bounded by the job's SMC_HOST_WAIT_TIMEOUT.
    waited = smc_job(  # algo-2 never comes up (neither name resolves on this machine)
        code={"train.py": "pass\n"},
        entry_point="train.py",
        hyperparameters=hyperparameters,
        hosts=("algo-1", "algo-2"),
        env={"SMC_HOST_WAIT_TIMEOUT": "2"},
    )
    failure = waited.assert_failure(6)
    assert "did not resolve within 2 s" in failure and "SMC_HOST_WAIT_TIMEOUT" in failure, failure
