"""The supervision policy the core applies: built once from the settings, obeyed by every launch style
of the core (a plain script, function mode, MPI on one host and across hosts) without any of them
passing a bound by hand."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from smc_core import GRACE_PERIOD, Setting, Supervision, create_environment
from smc_core.base.settings import parse_settings
from smc_core.testing.mpi import mpi_unavailable_reason

GRACE = 2.0
MARGIN = 3.0
"""Seconds from SIGTERM to ``train``'s end beyond the grace period: smc's teardown and report."""

IGNORES_SIGTERM = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
name = f"ready-{os.environ.get('RANK', os.environ['SM_CURRENT_HOST'])}"
open(os.path.join(os.environ["SM_MODEL_DIR"], name), "w").close()
time.sleep(120)
"""
"""A script that ignores SIGTERM (in the one process that it is, or in every MPI rank)."""

IGNORES_IN_TRAIN = """
import os, signal, time

def train(model_dir):
    signal.signal(signal.SIGTERM, lambda *_: print("train() ignores SIGTERM", flush=True))
    open(os.path.join(model_dir, "ready-algo-1"), "w").close()
    time.sleep(120)
"""
"""Function mode: ``train()`` replaces smc's SIGTERM handler with one that ignores it."""

MPI = mpi_unavailable_reason()


def wait_for_files(directory: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(directory.glob("ready-*"))) < count:
        assert time.monotonic() < deadline, f"only {list(directory.glob('ready-*'))} in {directory}"
        time.sleep(0.1)


def test_the_policy_is_built_once_from_the_settings(job_dir) -> None:
    mine = Setting.seconds("SMC_MINE_WAIT", 30.0, "a plugin's own bound", owner="smc-mine", policy=True)
    other = Setting.seconds("SMC_MINE_OTHER", 1.0, "not a bound of the policy", owner="smc-mine")
    environ = {"SMC_GRACE_PERIOD": "7", "SMC_MINE_WAIT": "12", "SMC_HOST_WAIT_TIMEOUT": "9"}
    env = create_environment(job_dir(), environ, settings=parse_settings(environ, [mine, other]))
    policy = env.supervision
    assert policy is env.supervision
    assert (policy.grace_period, policy.host_wait_timeout, policy.leftover_grace) == (7.0, 9.0, 5.0)
    assert policy[GRACE_PERIOD] == 7.0 and policy[mine] == 12.0
    with pytest.raises(KeyError, match="SMC_MINE_OTHER is not a field of the job's supervision policy"):
        policy[other]
    assert "SMC_GRACE_PERIOD=7 s" in policy.describe() and "SMC_MINE_WAIT=12 s" in policy.describe()
    assert Supervision() == Supervision.from_settings(parse_settings({}))


STYLES = {
    "plain script": ({"train.py": IGNORES_SIGTERM}, "train.py", {}, {}, 1),
    "function mode": ({"train.py": IGNORES_IN_TRAIN}, "train.py", {}, {"SMC_FUNCTION_MODE": "1"}, 1),
    "MPI, one host": (
        {"train.py": IGNORES_SIGTERM},
        "train.py",
        {"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2},
        {},
        2,
    ),
}


@pytest.mark.parametrize("style", list(STYLES))
def test_a_stop_signal_gets_the_grace_period_and_no_more(smc_job, style) -> None:
    if style.startswith("MPI") and MPI:
        pytest.skip(MPI)
    code, entry, hyperparameters, env, ready = STYLES[style]
    job = smc_job.start(
        code=code,
        entry_point=entry,
        hyperparameters=hyperparameters,
        env={"SMC_GRACE_PERIOD": str(GRACE), "SMC_DISABLE_PLUGINS": "pytorch", **env},
    )
    wait_for_files(job.job_dir / "model", ready)
    sent = job.signal(signal.SIGTERM)
    outcome = job.wait(timeout=60)
    # A stop is a stop: 143 and JobStopped, the SIGKILL after the grace period told below
    assert outcome.exit_code == 143, outcome.describe()
    assert outcome.ended is not None and outcome.ended - sent < GRACE + MARGIN, outcome.describe()
    failure = outcome.assert_failure(143)
    assert failure.startswith("JobStopped: the job was stopped by SIGTERM while the user's code ran"), failure
    assert "SMC_GRACE_PERIOD" in failure[:1024] and f"{GRACE:g} s" in failure, failure
    assert f"Supervision (every launch obeys it): SMC_GRACE_PERIOD={GRACE:g} s" in outcome.logs


@pytest.mark.netns
@pytest.mark.skipif(MPI is not None, reason=MPI or "")
def test_mpi_across_hosts_obeys_the_policy_on_every_host(smc_job, netns_hosts) -> None:
    cluster = netns_hosts(2)
    settings = {
        "SMC_GRACE_PERIOD": str(GRACE),
        "SMC_DISABLE_PLUGINS": "pytorch",
        "SMC_HOST_WAIT_TIMEOUT": "60",
    }
    jobs = smc_job.start_on_cluster(
        cluster,
        code={"train.py": IGNORES_SIGTERM},
        entry_point="train.py",
        hyperparameters={"sagemaker_mpi_enabled": True},
        env=settings,
    )
    wait_for_files(cluster.hosts[0].job_dir / "model", 2)  # both ranks (mpirun passes algo-1's paths)
    sent = [job.signal(signal.SIGTERM) for job in jobs]
    for job, when in zip(jobs, sent, strict=True):
        outcome = job.wait(timeout=60)
        assert outcome.exit_code == 143, outcome.describe()
        assert outcome.ended is not None and outcome.ended - when < GRACE + MARGIN, outcome.describe()
        failure = outcome.assert_failure()
        assert failure.startswith("JobStopped: the job was stopped by SIGTERM"), failure
        assert "SMC_GRACE_PERIOD" in failure[:1024], failure
    # A worker whose master never comes: bounded by SMC_HOST_WAIT_TIMEOUT, which names itself.
    cluster = netns_hosts(2)
    (alone,) = smc_job.start_on_cluster(
        cluster,
        hosts=["algo-2"],
        code={"train.py": IGNORES_SIGTERM},
        entry_point="train.py",
        hyperparameters={"sagemaker_mpi_enabled": True},
        env={**settings, "SMC_HOST_WAIT_TIMEOUT": "3"},
    )
    outcome = alone.wait(timeout=60)
    failure = outcome.assert_failure(6)
    assert "algo-2 could not join the job's channel on the master algo-1" in failure, failure
    assert "within 3 s" in failure and "SMC_HOST_WAIT_TIMEOUT" in failure, failure
    assert outcome.duration < 3 + 10, outcome.describe()  # the bound, plus train's own start
