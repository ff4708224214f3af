"""MultiWorkerMirroredStrategy on two hosts, each a Linux network namespace running ``train``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorflow_helpers import MWMS_SCRIPT

pytestmark = pytest.mark.netns

INTERFACE = "net0"
SWITCH = "sagemaker_multi_worker_mirrored_strategy_enabled"


def start_job(smc_job, netns_hosts, hyperparameters, timeout=180, **extra):
    cluster = netns_hosts(2, interface=INTERFACE)
    runs = smc_job.on_cluster(
        cluster,
        hyperparameters={SWITCH: True, **hyperparameters},
        code={"train.py": MWMS_SCRIPT},
        entry_point="train.py",
        env={"SMC_HOST_WAIT_TIMEOUT": "60", **extra},
        timeout=timeout,
    )
    return runs, runs[0].duration


def test_two_workers_train_together(smc_job, netns_hosts):
    runs, _ = start_job(smc_job, netns_hosts, {"steps": 3})
    for run in runs:
        run.assert_success()
    one, two = (run.model_dir for run in runs)
    for index, model_dir in enumerate((one, two)):
        assert json.loads((model_dir / f"tf_config-{index}.json").read_text()) == {
            "cluster": {"worker": ["algo-1:8890", "algo-2:8890"]},
            "environment": "cloud",
            "task": {"index": index, "type": "worker"},
        }
        assert (model_dir / f"allreduce-{index}.txt").read_text() == "3.0"  # 1 + 2
    w0, w1 = np.load(one / "weights-0.npy"), np.load(two / "weights-1.npy")
    assert np.abs(w0).sum() > 0 and np.array_equal(w0, w1)
    assert (one / "1" / "saved_model.pb").exists()  # the chief's model
    assert "worker 1 done: all-reduce 3.0" in runs[1].stdout


def test_a_failing_worker_ends_both_hosts(smc_job, netns_hosts):
    runs, elapsed = start_job(smc_job, netns_hosts, {"steps": 50, "fail-host": "algo-2"}, timeout=120)
    for run in runs:
        assert not run.timed_out, f"{run.host} still ran at the timeout:\n{run.stdout[-4000:]}"
        failure = run.assert_failure(1)
        assert failure.startswith("UserCodeError: ValueError: boom on algo-2"), failure
        assert "the worker on host algo-2 failed with exit code 1" in failure[:1024], failure
        assert "Traceback (most recent call last)" in failure[:1024], failure
    master_failure = (runs[0].failure or "")[:1024]
    # algo-1's worker is stopped, unless TensorFlow ended it first (a collective with a dead peer)
    assert (
        "algo-1 stopped its own processes because of it" in master_failure
        or "the worker on host algo-1 failed with exit code" in master_failure
    ), master_failure
    print(f"both hosts ended {elapsed:.1f} s after the start")
    assert elapsed < 30 + 25, runs[0].stdout[-3000:]  # 30 s from the failure, plus TensorFlow's start


def test_keras3_fit_under_mwms_gets_the_hint(smc_job, netns_hosts):
    runs, _ = start_job(smc_job, netns_hosts, {"keras-fit": 1}, timeout=150)
    failures = []
    for run in runs:
        failures.append(run.assert_failure())
    for text in failures:
        head = text[:1024]
        assert head.startswith("UserCodeError: ValueError: Attempt to convert a value (PerReplica"), text
        assert "keras-team/keras#20585" in head and "TF_USE_LEGACY_KERAS=1" in head, text


def test_the_hints_fix_tf_keras_trains_under_mwms(smc_job, netns_hosts):
    runs, _ = start_job(smc_job, netns_hosts, {"keras-fit": 1}, timeout=150, TF_USE_LEGACY_KERAS="1")
    for run in runs:
        run.assert_success()
