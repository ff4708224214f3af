"""Parameter-server jobs on two hosts, each a Linux network namespace running ``train``."""

from __future__ import annotations

import json
import subprocess

import pytest
from tensorflow_helpers import PS_LIFECYCLE_SCRIPT, PS_SCRIPT

pytestmark = pytest.mark.netns

SWITCH = "sagemaker_parameter_server_enabled"
CLUSTER = {"master": ["algo-1:2222"], "ps": ["algo-1:2223", "algo-2:2223"], "worker": ["algo-2:2222"]}


def namespace_pids(host):
    out = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True).stdout
    return out.split()


def test_parameter_servers_beside_the_workers(smc_job, netns_hosts):
    cluster = netns_hosts(2)
    runs = smc_job.on_cluster(
        cluster,
        hyperparameters={SWITCH: True, "steps": 5},
        code={"train.py": PS_SCRIPT},
        entry_point="train.py",
        env={"SMC_HOST_WAIT_TIMEOUT": "60"},
        timeout=180,
    )
    for host, run in zip(cluster.hosts, runs, strict=True):
        run.assert_success()
        assert not namespace_pids(host), f"processes left on {host.name}"
    one, two = (run.model_dir for run in runs)
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
    assert "[algo-2 ps] parameter server ps:1 serving at algo-2:2223" in runs[1].stdout
    assert "worker 0 serving on algo-2" in runs[1].stdout


def start_job(smc_job, netns_hosts, hyperparameters, timeout=120, **extra):
    cluster = netns_hosts(2)
    runs = smc_job.on_cluster(
        cluster,
        hyperparameters={SWITCH: True, **hyperparameters},
        code={"train.py": PS_LIFECYCLE_SCRIPT},
        entry_point="train.py",
        env={"SMC_HOST_WAIT_TIMEOUT": "60", **extra},
        timeout=timeout,
    )
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert not run.timed_out, f"{host.name} still ran at the timeout:\n{run.stdout[-4000:]}"
        assert not namespace_pids(host), f"processes left on {host.name}"
    return runs, runs[0].duration


def test_a_worker_that_ends_keeps_its_parameter_server_until_the_master_is_done(smc_job, netns_hosts):
    runs, _ = start_job(smc_job, netns_hosts, {"master_seconds": 8})
    for run in runs:
        assert run.exit_code == 0, run.stdout[-4000:]
    master_model = runs[0].model_dir
    assert json.loads((master_model / "ps2-listening.json").read_text()) is True
    log = runs[1].stdout
    assert "its parameter server keeps serving until the master host algo-1 is done" in log
    assert "The master host algo-1 is done: stopping the parameter server on algo-2" in log


def test_the_wait_for_the_master_is_bounded(smc_job, netns_hosts):
    runs, _ = start_job(smc_job, netns_hosts, {"master_seconds": 12}, SMC_TF_PS_WAIT_TIMEOUT="2")
    failure = runs[1].assert_failure(1)
    assert "the master host algo-1 was not done 2 s after the worker on algo-2 ended" in failure, failure
    assert "SMC_TF_PS_WAIT_TIMEOUT" in failure
    assert runs[0].exit_code == 0, runs[0].stdout[-4000:]


def test_a_dead_parameter_server_ends_both_hosts(smc_job, netns_hosts):
    runs, elapsed = start_job(smc_job, netns_hosts, {"action": "kill-ps", "master_seconds": 120})
    for run in runs:
        failure = run.assert_failure(137)
        # the first line names the process that died of SIGKILL, never this host's worker that smc
        # stopped, and never the out-of-memory killer (issue 29)
        assert failure.startswith(
            "UserCodeError: the parameter server on host algo-2 failed with exit code 137 (SIGKILL)"
        ), failure
    master_failure = runs[0].failure or ""
    assert "algo-1 stopped its own processes because of it" in master_failure
    assert elapsed < 60, f"{elapsed:.0f} s"
