"""Helpers for MPI tests: mpi4py scripts, and what an MPI job may leave running.

Opt-in like the rest of :mod:`smc_core.testing`; needs Open MPI and mpi4py where the tests run.
"""

from __future__ import annotations

import shutil
import time

import psutil

__all__ = [
    "ALLREDUCE_SCRIPT",
    "GATHER_SCRIPT",
    "MPI_PROCESS_NAMES",
    "mpi_leftovers",
    "mpi_unavailable_reason",
    "ssh_unavailable_reason",
]

MPI_PROCESS_NAMES = ("mpirun", "orterun", "prterun", "orted", "prted")
"""Open MPI's launcher and daemons (4.x and 5.x names)."""

GATHER_SCRIPT = """
import json, os
from mpi4py import MPI

comm = MPI.COMM_WORLD
data = comm.gather({"rank": comm.Get_rank(), "size": comm.Get_size()}, root=0)
print(f"rank {comm.Get_rank()} of {comm.Get_size()} gathered", flush=True)
if comm.Get_rank() == 0:
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "result.json"), "w") as f:
        json.dump(data, f)
"""
"""Gathers ``{rank, size}`` to rank 0, which writes them to ``model/result.json``."""

ALLREDUCE_SCRIPT = """
import argparse, json, os, time
from mpi4py import MPI

parser = argparse.ArgumentParser()
parser.add_argument("--fail-host", default="")
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
host = os.environ["SM_CURRENT_HOST"]
if host == args.fail_host and os.environ["LOCAL_RANK"] == "0":
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "failed-at"), "w") as f:
        f.write(str(time.time()))
    raise ValueError(f"boom on rank {rank} on {host}")
time.sleep(args.sleep)
total = comm.allreduce(rank + 1, op=MPI.SUM)
print(f"rank {rank} of {size} on {host}: allreduce {total}", flush=True)
names = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "SM_CURRENT_HOST",
         "CURRENT_HOST", "SM_HPS", "SM_TRAINING_ENV", "PYTHONPATH", "SAGEMAKER_JOB_NAME", "MY_JOB_VARIABLE"]
with open(os.path.join(os.environ["SM_MODEL_DIR"], f"rank-{rank}.json"), "w") as f:
    json.dump({"rank": rank, "size": size, "sum": total, "env": {n: os.environ.get(n) for n in names}}, f)
"""
"""Each rank adds ``rank + 1`` with an allreduce and writes ``model/rank-<r>.json`` (its sum and variables);
``--fail-host H`` makes local rank 0 on host H raise first (writing the time to ``model/failed-at``),
``--sleep S`` waits S seconds first."""


def ssh_unavailable_reason() -> str | None:
    """Why MPI jobs across hosts cannot run here (no ``sshd``, ``ssh`` or ``ssh-keygen``: mpirun
    reaches the other hosts over ssh), or None."""
    from smc_core.errors import ConfigError
    from smc_core.mpi.sshd import find_program

    missing = []
    for name in ("sshd", "ssh", "ssh-keygen"):
        try:
            find_program(name)
        except ConfigError:
            missing.append(name)
    if missing:
        return (
            f"MPI jobs across hosts need OpenSSH ({', '.join(missing)} missing: apt-get install "
            "openssh-server openssh-client; `make test` installs them when run as root)"
        )
    return None


def mpi_unavailable_reason(*, hosts: int = 1) -> str | None:
    """Why MPI tests cannot run here (no mpirun, no mpi4py; with several ``hosts``, no OpenSSH), or
    None."""
    if shutil.which("mpirun") is None:
        return (
            "MPI tests need Open MPI's mpirun (apt-get install openmpi-bin libopenmpi-dev; `make test` "
            "installs it when run as root)"
        )
    if hosts > 1 and ssh_unavailable_reason() is not None:
        return ssh_unavailable_reason()
    try:
        import mpi4py  # noqa: F401  # optional: probed, not used
    except ImportError:
        return "MPI tests need mpi4py (pip install mpi4py)"
    return None


def mpi_leftovers(*markers: str, wait: float = 10.0) -> list[str]:
    """Live processes of an MPI job after it ended: Open MPI's launcher and daemons, the job's sshd,
    ranks (``smc_core.mpi.rank``) and any command line holding one of ``markers``.

    Polls up to ``wait`` seconds for them to go (they may be ending); returns what is still there.
    """
    deadline = time.monotonic() + wait
    while True:
        found = []
        for proc in psutil.process_iter(["name", "cmdline", "status"]):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            line = " ".join(proc.info["cmdline"] or [])
            if (
                proc.info["name"] in MPI_PROCESS_NAMES
                or "smc-mpi-" in line
                or "smc_core.mpi.rank" in line
                or any(marker in line for marker in markers)
            ):
                found.append(f"{proc.pid} {proc.info['name']}: {line}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
