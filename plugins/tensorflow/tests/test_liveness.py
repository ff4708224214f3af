"""MultiWorkerMirrored and parameter-server jobs on two hosts, each a Linux network namespace: a host
killed, its network cut, a stop to one host's ``train`` (issue 29). Every host ends within the liveness
bound and the grace period, naming the lost host (exit 6) or the stop (exit 143): a stop TensorFlow's
preemption notifier catches is still a stop, never a success."""

from __future__ import annotations

import pytest

from smc_core.testing.hostfaults import HOST_FAULTS, HostFaultTrial

pytestmark = pytest.mark.netns

MWMS_LOOP = r"""
import os, time
import tensorflow as tf

host = os.environ["SM_CURRENT_HOST"]
strategy = tf.distribute.MultiWorkerMirroredStrategy()

@tf.function
def step():
    return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", tf.constant(1.0)))

for i in range(int(os.environ["SM_HP_STEPS"])):  # a collective every 0.1 s
    step()
    print(f"{host} step {i}", flush=True)
    time.sleep(0.1)
print(f"{host} finished its loop", flush=True)
"""

PS_LOOP = r"""
import json, os, time
import tensorflow as tf

host = os.environ["SM_CURRENT_HOST"]
tf_config = json.loads(os.environ["TF_CONFIG"])
cluster, task = tf_config["cluster"], tf_config["task"]
spec = tf.train.ClusterSpec({"chief": cluster["master"], "worker": cluster["worker"], "ps": cluster["ps"]})
if task["type"] == "worker":  # a TF2 worker serves the coordinator until the job is done
    server = tf.distribute.Server(spec, job_name="worker", task_index=task["index"], protocol="grpc")
    for i in range(4):
        print(f"{host} step {i}", flush=True)
    server.join()
resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
    spec, task_type="chief", task_id=0, rpc_layer="grpc"
)
strategy = tf.distribute.ParameterServerStrategy(resolver)
coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
with strategy.scope():
    total = tf.Variable(0.0)

@tf.function
def step():
    total.assign_add(1.0)

for i in range(300):  # a step on the worker, a variable on a parameter server, every 0.1 s
    coordinator.schedule(step)
    coordinator.join()
    print(f"{host} step {i}", flush=True)
    time.sleep(0.1)
"""

STYLES = {
    "mwms": (MWMS_LOOP, "sagemaker_multi_worker_mirrored_strategy_enabled"),
    "ps": (PS_LOOP, "sagemaker_parameter_server_enabled"),
}


@pytest.mark.parametrize("fault", HOST_FAULTS)
@pytest.mark.parametrize("style", STYLES)
def test_every_host_ends_when_one_is_lost_or_stopped(smc_job, netns_hosts, style, fault):
    script, switch = STYLES[style]
    stop = fault.startswith("sigterm")
    # MultiWorkerMirrored and a stop: TensorFlow's preemption notifier catches SIGTERM in the workers and
    # the loop (4 s) runs to its end within the grace period: both exit 0, and the job is still stopped.
    preempted = style == "mwms" and stop
    trial = HostFaultTrial.start(
        smc_job,
        netns_hosts(2, interface="net0"),
        fault,
        code={"train.py": script},
        entry_point="train.py",
        hyperparameters={switch: True, "steps": 40 if preempted else 300},
        env={"SMC_LIVENESS_TIMEOUT": "4", "SMC_GRACE_PERIOD": "10" if preempted else "3"},
    )
    outcomes = trial.run()
    if preempted:
        assert "SIGTERM caught" in trial.logs()  # TensorFlow's notifier took the signal
        for outcome in outcomes:
            assert f"{outcome.host} finished its loop" in outcome.logs, outcome.describe()
            assert "it exited 0 (it handled the stop itself" in (outcome.failure or ""), outcome.describe()
