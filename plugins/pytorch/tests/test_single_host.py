"""torchrun on one host through ``train``: two real gloo processes train a model."""

from __future__ import annotations

import json

import torch
from pytorch_helpers import DDP_SCRIPT, free_port


def test_two_process_ddp_ends_with_identical_weights(smc_job):
    port = free_port()
    done = smc_job(
        hyperparameters={
            "steps": 3,
            "sagemaker_torch_distributed_enabled": True,
            "sagemaker_mpi_num_of_processes_per_host": 2,
        },
        code={"train.py": DDP_SCRIPT},
        entry_point="train.py",
        env={"SMC_PYTORCH_MASTER_PORT": str(port)},
    )
    done.assert_success()
    w0 = torch.load(done.model_dir / "weights-0.pt")
    w1 = torch.load(done.model_dir / "weights-1.pt")
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    envs = [json.loads((done.model_dir / f"env-{r}.json").read_text()) for r in (0, 1)]
    for rank, env in enumerate(envs):
        assert env["RANK"] == str(rank) and env["LOCAL_RANK"] == str(rank)
        assert env["WORLD_SIZE"] == "2" and env["LOCAL_WORLD_SIZE"] == "2" and env["GROUP_RANK"] == "0"
        assert env["MASTER_ADDR"] == "127.0.0.1" and env["MASTER_PORT"] == str(port)
        assert env["GLOO_SOCKET_IFNAME"] == "lo" == env["NCCL_SOCKET_IFNAME"]
        assert env["NCCL_DEBUG"] == "WARN"
    # every line of the workers' output is prefixed with host and rank
    assert "[algo-1 rank 1]: rank 1 of 2 done" in done.stdout
