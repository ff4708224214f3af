"""smc-pytorch with ``sagemaker_mpi_enabled``: the core's MPI launcher runs the ranks, and
torch.distributed's ``env://`` finds the rendezvous variables it needs."""

from __future__ import annotations

import json

import pytest
import torch
from pytorch_helpers import DDP_SCRIPT, free_port, run_train, single_host

from smc_core.testing import make_job_dir
from smc_core.testing.mpi import mpi_leftovers, mpi_unavailable_reason

UNAVAILABLE = mpi_unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")


def test_mpi_job_gets_the_pytorch_rendezvous_variables(tmp_path):
    base = make_job_dir(
        tmp_path,
        hyperparameters={
            "sagemaker_mpi_enabled": True,
            "sagemaker_mpi_num_of_processes_per_host": 2,
            "steps": 2,
        },
        resource_config=single_host("lo"),
        code={"train.py": DDP_SCRIPT},
        entry_point="train.py",
    )
    port = str(free_port())
    run = run_train(base, timeout=180, SMC_PYTORCH_MASTER_PORT=port)
    assert run.returncode == 0, run.stderr[-4000:]
    model = base / "model"
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
