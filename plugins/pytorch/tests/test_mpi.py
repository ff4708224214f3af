"""smc-pytorch with ``sagemaker_mpi_enabled``: the core's MPI launcher runs the ranks, and
torch.distributed's ``env://`` finds the rendezvous variables it needs."""

from __future__ import annotations

import json

import pytest
import torch
from pytorch_helpers import DDP_SCRIPT, free_port

from smc_core.testing.mpi import mpi_leftovers, mpi_unavailable_reason

UNAVAILABLE = mpi_unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")


def test_mpi_job_gets_the_pytorch_rendezvous_variables(smc_job):
    port = str(free_port())
    run = smc_job(
        hyperparameters={
            "sagemaker_mpi_enabled": True,
            "sagemaker_mpi_num_of_processes_per_host": 2,
            "steps": 2,
        },
        code={"train.py": DDP_SCRIPT},
        entry_point="train.py",
        env={"SMC_PYTORCH_MASTER_PORT": port},
        timeout=180,
    )
    run.assert_success()
    model = run.model_dir
    for rank in (0, 1):
        env = json.loads((model / f"env-{rank}.json").read_text())
        assert env["MASTER_ADDR"] in ("algo-1", "127.0.0.1") and env["MASTER_PORT"] == port
        assert env["RANK"] == str(rank) and env["WORLD_SIZE"] == "2"
        assert env["LOCAL_RANK"] == str(rank) and env["LOCAL_WORLD_SIZE"] == "2"
        assert env["GLOO_SOCKET_IFNAME"] == "lo"
    w0, w1 = torch.load(model / "weights-0.pt"), torch.load(model / "weights-1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # DDP kept the ranks in step
    assert "[algo-1 rank 1] rank 1 of 2 done" in run.stdout
    assert "mpirun --host localhost:2 -np 2" in run.stderr and "torchrun" not in run.stderr
    assert mpi_leftovers() == []
