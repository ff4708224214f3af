"""Helpers for the PyTorch adapter's tests: user scripts, and running ``train`` on a job directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

TRAIN = str(Path(sys.executable).with_name("train"))

DDP_SCRIPT = r"""
import argparse, json, os, sys
import torch
import torch.distributed as dist

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--fail-rank", type=int, default=-1)
parser.add_argument("--fail-before-init", type=int, default=0)
args = parser.parse_args()
if args.fail_before_init and int(os.environ["RANK"]) == args.fail_rank:
    raise RuntimeError(f"cannot start rank {os.environ['RANK']}")

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
names = ["MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
         "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG", "SM_CURRENT_HOST"]
model_dir = os.environ["SM_MODEL_DIR"]
with open(os.path.join(model_dir, f"env-{rank}.json"), "w") as f:
    json.dump({n: os.environ.get(n) for n in names}, f)

torch.manual_seed(rank)  # different data per rank; DDP keeps the weights equal
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(args.steps):
    if rank == args.fail_rank and step == 1:
        raise ValueError(f"boom on rank {rank}")
    x = torch.randn(8, 4)
    loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
torch.save(model.module.state_dict(), os.path.join(model_dir, f"weights-{rank}.pt"))
print(f"rank {rank} of {world} done", flush=True)
dist.barrier()
dist.destroy_process_group()
"""


def free_port() -> int:
    """A free TCP port on loopback (single-host jobs: two jobs on one machine must not share 7777)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_env(base: Path, **extra: str) -> dict[str, str]:
    """The environment ``train`` runs with for the job directory ``base``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SMC_ADAPTER": "pytorch", **extra})
    return env


def run_train(base: Path, *, timeout: float = 240, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``train`` (a real subprocess, in its own process group) on ``base``; return how it ended.

    At the timeout the whole group is killed (torchrun's workers too) and TimeoutExpired raised.
    """
    with subprocess.Popen(
        [TRAIN],
        env=train_env(base, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess([TRAIN], process.returncode, out, err)


def single_host(interface: str = "lo") -> Mapping[str, object]:
    """A one-host resource config on loopback (never the machine's own network)."""
    return {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": interface}
