"""GPUs: counting with a fake ``nvidia-smi`` on PATH, and a real NCCL job where a GPU exists."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from pytorch_helpers import DDP_SCRIPT, free_port


def available_gpus() -> int:
    """GPUs as the container contract counts them: ``nvidia-smi --list-gpus`` lines starting ``GPU ``."""
    try:
        listing = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$1" = "--list-gpus" ] || exit 1
echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000001)"
"""


def test_process_per_gpu_with_a_fake_nvidia_smi(smc_job, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    done = smc_job(
        hyperparameters={"steps": 1, "sagemaker_pytorch_ddp_enabled": True},
        code={"train.py": DDP_SCRIPT},
        entry_point="train.py",
        env={"PATH": path, "SMC_PYTORCH_MASTER_PORT": str(free_port())},
    )
    done.assert_success()
    assert "torchrun with 2 process(es)" in done.stderr
    env = json.loads((done.model_dir / "env-1.json").read_text())
    assert env["LOCAL_WORLD_SIZE"] == "2" and env["WORLD_SIZE"] == "2"


NCCL_SCRIPT = """
import os, torch, torch.distributed as dist
dist.init_process_group("nccl")
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
t = torch.ones(4, device="cuda") * (dist.get_rank() + 1)
dist.all_reduce(t)
assert t.tolist() == [float(sum(range(1, dist.get_world_size() + 1)))] * 4, t
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1).cuda())
model(torch.randn(2, 4, device="cuda")).sum().backward()
print("nccl ok", flush=True)
dist.destroy_process_group()
"""

NO_GPU = "nvidia-smi finds no GPU here (a real NCCL job needs one; the fake-nvidia-smi test covers counting)"


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("nvidia-smi") is None or available_gpus() == 0, reason=NO_GPU)
def test_real_one_gpu_nccl_job(smc_job):
    done = smc_job(
        hyperparameters={
            "sagemaker_torch_distributed_enabled": True,
            "sagemaker_mpi_num_of_processes_per_host": 1,
        },
        code={"train.py": NCCL_SCRIPT},
        entry_point="train.py",
        interface="lo",
        env={"SMC_PYTORCH_MASTER_PORT": str(free_port())},
    )
    done.assert_success()
    assert "nccl ok" in done.stdout
