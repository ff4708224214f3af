"""Parameter-server jobs on two hosts, each a Linux network namespace running ``train``."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from tensorflow_helpers import PS_LIFECYCLE_SCRIPT, PS_SCRIPT, TRAIN, train_env

from smc_core.testing import make_job_dir

pytestmark = pytest.mark.netns

SWITCH = "sagemaker_parameter_server_enabled"
CLUSTER = {"master": ["algo-1:2222"], "ps": ["algo-1:2223", "algo-2:2223"], "worker": ["algo-2:2222"]}


def namespace_pids(host):
    out = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True).stdout
    return out.split()


def test_parameter_servers_beside_the_workers(netns_hosts):
    cluster = netns_hosts(2)
    for host in cluster.hosts:
        make_job_dir(
            host.job_dir,
            hyperparameters={SWITCH: True, "steps": 5},
            resource_config=host.resource_config(cluster.host_names),
            code={"train.py": PS_SCRIPT},
            entry_point="train.py",
        )
    runs = cluster.run_all(
        lambda host: [TRAIN],
        env_for=lambda host: train_env(host.job_dir, SMC_HOST_WAIT_TIMEOUT="60"),
        timeout=180,
    )
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode == 0, run.output[-4000:]
        assert (host.job_dir / "output" / "success").exists()
        assert not namespace_pids(host), f"processes left on {host.name}"
    one, two = (host.job_dir / "model" for host in cluster.hosts)
    assert json.loads((one / "tf_config-algo-1.json").read_text()) == {
        "cluster": CLUSTER,
        "environment": "cloud",
        "task": {"index": 0, "type": "master"},
    }
    assert json.loads((two / "tf_config-algo-2.json").read_text()) == {
        "cluster": CLUSTER,
        "environment": "cloud",
        "task": {"index": 0, "type": "worker"},
    }
    assert json.loads((one / "ps-listening.json").read_text()) == {"algo-1:2223": True, "algo-2:2223": True}
    result = json.loads((one / "result.json").read_text())
    assert result["a"] == 5.0 and result["b"] == 10.0, result
    assert sorted(result["devices"]) == [
        "/job:ps/replica:0/task:0/device:CPU:0",
        "/job:ps/replica:0/task:1/device:CPU:0",
    ]
    assert "[algo-2 ps] parameter server ps:1 serving at algo-2:2223" in runs[1].output
    assert "worker 0 serving on algo-2" in runs[1].output


def run_job(netns_hosts, hyperparameters, timeout=120, **extra):
    cluster = netns_hosts(2)
    for host in cluster.hosts:
        make_job_dir(
            host.job_dir,
            hyperparameters={SWITCH: True, **hyperparameters},
            resource_config=host.resource_config(cluster.host_names),
            code={"train.py": PS_LIFECYCLE_SCRIPT},
            entry_point="train.py",
        )
    started = time.monotonic()
    runs = cluster.run_all(
        lambda host: [TRAIN],
        env_for=lambda host: train_env(host.job_dir, SMC_HOST_WAIT_TIMEOUT="60", **extra),
        timeout=timeout,
    )
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode is not None, f"{host.name} still ran at the timeout:\n{run.output[-4000:]}"
        assert not namespace_pids(host), f"processes left on {host.name}"
    return cluster, runs, time.monotonic() - started


def test_a_worker_that_ends_keeps_its_parameter_server_until_the_master_is_done(netns_hosts):
    cluster, runs, _ = run_job(netns_hosts, {"master_seconds": 8})
    for run in runs:
        assert run.returncode == 0, run.output[-4000:]
    master_model = cluster.hosts[0].job_dir / "model"
    assert json.loads((master_model / "ps2-listening.json").read_text()) is True
    log = runs[1].output
    assert "its parameter server keeps serving until the master host algo-1 is done" in log
    assert "The master host algo-1 is done: stopping the parameter server on algo-2" in log


def test_the_wait_for_the_master_is_bounded(netns_hosts):
    cluster, runs, _ = run_job(netns_hosts, {"master_seconds": 12}, SMC_TF_PS_WAIT_TIMEOUT="2")
    assert runs[1].returncode == 1, runs[1].output[-4000:]
    failure = (cluster.hosts[1].job_dir / "output" / "failure").read_text()
    assert "the master host algo-1 was not done 2 s after the worker on algo-2 ended" in failure, failure
    assert "SMC_TF_PS_WAIT_TIMEOUT" in failure
    assert runs[0].returncode == 0, runs[0].output[-4000:]


def test_a_dead_parameter_server_ends_both_hosts(netns_hosts):
    cluster, runs, elapsed = run_job(netns_hosts, {"action": "kill-ps", "master_seconds": 120})
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode == 137, run.output[-4000:]
        failure = (host.job_dir / "output" / "failure").read_text()
        assert "the parameter server on host algo-2 failed with exit code 137" in failure[:1024], failure
    master_failure = (cluster.hosts[0].job_dir / "output" / "failure").read_text()
    assert "algo-1 stopped its own processes because of it" in master_failure
    assert elapsed < 60, f"{elapsed:.0f} s"
