"""A PyTorch training script for smc: a small regression model on data it generates itself.

Runs unchanged in SageMaker's PyTorch containers and through ``smc local``:

    smc local examples/pytorch --entry-point train.py --hyperparameter epochs=3

Under ``torchrun`` (``sagemaker_torch_distributed_enabled``) it trains with DistributedDataParallel
on the gloo backend; alone, as one process.
"""

import argparse
import gc
import json
import os

import torch
from torch import nn


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """y = sin(3 x0) + x1^2 - 0.5 x2, plus noise: nothing to download."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 2 - 1
    y = torch.sin(3 * x[:, :1]) + x[:, 1:2] ** 2 - 0.5 * x[:, 2:3] + 0.01 * torch.randn(n, 1, generator=g)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    args = parser.parse_args()

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    torch.manual_seed(0)

    x, y = make_data(args.samples)
    x, y = x[rank::world], y[rank::world]  # each rank its own shard
    model = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1))
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss()

    for epoch in range(args.epochs):
        permutation = torch.randperm(len(x))
        total = 0.0
        for start in range(0, len(x), args.batch_size):
            idx = permutation[start : start + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{args.epochs} rank {rank} loss {total / len(x):.4f}", flush=True)

    if rank == 0:
        os.makedirs(args.model_dir, exist_ok=True)
        plain = model.module if distributed else model
        torch.save(plain.state_dict(), os.path.join(args.model_dir, "model.pt"))
        test_x, test_y = make_data(512, seed=1)
        with torch.no_grad():
            test_loss = loss_fn(plain(test_x), test_y).item()
        with open(os.path.join(args.model_dir, "metrics.json"), "w") as f:
            json.dump({"test_mse": test_loss, "epochs": args.epochs}, f)
        print(f"saved model to {args.model_dir}/model.pt (test mse {test_loss:.4f})")
    if distributed:
        # DDP's reducer holds gloo's pending work; left to the interpreter's exit, torch 2.13 on CPU
        # aborts there now and then ("terminate called without an active exception", about 1 run in
        # 20 here). Drop it while the process group is alive, then destroy the group.
        del model, optimizer
        gc.collect()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
