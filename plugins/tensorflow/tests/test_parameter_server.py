"""Parameter-server jobs on two hosts, each a Linux network namespace running ``train``."""

from __future__ import annotations

import json
import subprocess

import pytest
from tensorflow_helpers import PS_SCRIPT, TRAIN, train_env

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
    for host, run in zip(cluster.hosts, runs):
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
    assert sorted(result["devices"]) == ["/job:ps/replica:0/task:0/device:CPU:0", "/job:ps/replica:0/task:1/device:CPU:0"]
    assert "[algo-2 ps] parameter server ps:1 serving at algo-2:2223" in runs[1].output
    assert "worker 0 serving on algo-2" in runs[1].output
