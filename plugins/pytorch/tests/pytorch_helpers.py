"""The PyTorch adapter's test scripts; jobs run through ``smc_core.testing``'s ``smc_job`` fixture."""

from __future__ import annotations

import socket

DDP_SCRIPT = r"""
import argparse, gc, json, os, sys
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
del model, opt, loss  # before the group: torch 2.13 CPU can abort at exit otherwise (examples/pytorch)
gc.collect()
dist.destroy_process_group()
"""


def free_port() -> int:
    """A free TCP port on loopback (single-host jobs: two jobs on one machine must not share 7777)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
