"""torchrun on two hosts, each a Linux network namespace: a host killed, its network cut, a stop to one
host's ``train`` (issue 29). Every host ends within the liveness bound and the grace period, naming
the lost host (exit 6) or the stop (exit 143); the checkpoint the user's handler wrote on SIGTERM stays."""

from __future__ import annotations

import pytest

from smc_core.testing.hostfaults import HOST_FAULTS, HostFaultTrial

pytestmark = pytest.mark.netns

LOOP = r"""
import os, signal, sys, time
import torch, torch.distributed as dist

host = os.environ["SM_CURRENT_HOST"]

def checkpoint(signum, frame):
    with open(os.path.join(os.environ["SM_MODEL_DIR"], f"checkpoint-{host}"), "w") as f:
        f.write("saved on SIGTERM")
    sys.exit(0)

signal.signal(signal.SIGTERM, checkpoint)
dist.init_process_group("gloo")
total = torch.ones(1)
for step in range(600):  # a collective every 0.1 s
    dist.all_reduce(total)
    print(f"{host} step {step}", flush=True)
    time.sleep(0.1)
"""


@pytest.mark.parametrize("fault", HOST_FAULTS)
def test_every_host_ends_when_one_is_lost_or_stopped(smc_job, netns_hosts, fault):
    trial = HostFaultTrial.start(
        smc_job,
        netns_hosts(2, interface="net0"),
        fault,
        code={"train.py": LOOP},
        entry_point="train.py",
        hyperparameters={"sagemaker_torch_distributed_enabled": True},
    )
    outcomes = trial.run()
    if fault.startswith("sigterm"):  # torchrun's agent passed SIGTERM on: each handler saved
        for outcome in outcomes:
            assert (outcome.model_dir / f"checkpoint-{outcome.host}").read_text() == "saved on SIGTERM"
