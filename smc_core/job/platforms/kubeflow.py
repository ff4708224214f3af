"""Kubeflow: Trainer v2 TrainJobs, Training Operator v1 PyTorchJobs and TFJobs, read into a TrainingEnv.

What each pod gets, and what smc makes of it (docs/platforms/kubeflow-trainer.md and
docs/platforms/kubeflow-pytorchjob.md have the full tables):

* **Trainer v2, torch runtime**: ``PET_NNODES``, ``PET_NPROC_PER_NODE`` (a number or ``auto``),
  ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` (``<job>-node-0-0.<job>``), ``PET_MASTER_PORT`` (29500). Hosts
  are ``<job>-node-0-<i>.<job>``; this host is the one at ``PET_NODE_RANK``. Model dir ``/workspace/model``
  and channel ``training`` = ``/workspace/dataset`` when the initializers' volume is at ``/workspace``.
* **Trainer v2, JAX runtime**: ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, ``JAX_COORDINATOR_ADDRESS``.
* **PyTorchJob**: ``MASTER_ADDR`` (``<job>-master-0``), ``MASTER_PORT`` (23456), ``WORLD_SIZE``, ``RANK``
  (the pod's index: master 0, worker ``i`` is ``i + 1``), and ``PET_NNODES``, ``PET_NODE_RANK``,
  ``PET_NPROC_PER_NODE`` when the operator sets them. Hosts are ``<job>-master-0``, ``<job>-worker-<i>``.
* **TFJob**: ``TF_CONFIG`` (chief, worker, ps, evaluator), as :func:`resource_config_from_tf_config`.

The torch variables are themselves the request for a torchrun launch (``distributed_by``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core.base.settings import Settings
from smc_core.errors import ConfigError
from smc_core.job.hardware import available_cpus, available_gpus
from smc_core.job.platforms.common import off_sagemaker, processes_from
from smc_core.job.platforms.facts import PlatformFacts
from smc_core.job.platforms.tf_config import resource_config_from_tf_config

__all__ = ["KubeflowJob", "kubeflow_facts", "read_kubeflow_job"]

TRAINER_MASTER_PORT = 29500
PYTORCHJOB_MASTER_PORT = 23456
WORKSPACE = Path("/workspace")
"""Trainer v2's initializers share a volume here: ``dataset/`` and ``model/``."""

_TRAINER_HOST = re.compile(r"^(?P<job>.+)-(?P<role>node-\d+)-0(?P<domain>\..+)?$")
_PYTORCHJOB_MASTER = re.compile(r"^(?P<job>.+)-master-0(?P<domain>\..+)?$")


class KubeflowJob:
    """What the pod's variables say: the hosts, this host, the rendezvous and how it was recognised."""

    def __init__(
        self,
        *,
        kind: str,
        hosts: list[str],
        current_host: str,
        job_name: str | None = None,
        master_port: int | None = None,
        processes: str | None = None,
        processes_variable: str = "PET_NPROC_PER_NODE",
        distributed_by: str | None = None,
    ) -> None:
        self.kind = kind
        self.hosts = hosts
        self.current_host = current_host
        self.job_name = job_name
        self.master_port = master_port
        self.processes = processes
        self.processes_variable = processes_variable
        self.distributed_by = distributed_by

    @property
    def resource_config(self) -> dict[str, Any]:
        """The resource config the contract defines (no interface: the route to the master decides)."""
        return {
            "current_host": self.current_host,
            "hosts": list(self.hosts),
            "current_instance_type": self.kind,
        }


def _integer(environ: Mapping[str, str], name: str, default: int | None = None, minimum: int = 0) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigError(f"{name} is not set, but the other Kubeflow variables are: the pod needs it.")
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{name} is {raw!r}: expected a whole number >= {minimum}.")
    return value


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    port = _integer(environ, name, default, minimum=1)
    if port > 65535:
        raise ConfigError(f"{name} is {port}: expected a TCP port, 1 to 65535.")
    return port


def _in_range(name: str, rank: int, count: int, count_name: str) -> None:
    if rank >= count:
        raise ConfigError(
            f"{name} is {rank}, but {count_name} says {count} node(s): expected 0 to {count - 1}."
        )


def _trainer_hosts(master: str, count: int, variable: str) -> tuple[list[str], str]:
    match = _TRAINER_HOST.match(master)
    if not match:
        raise ConfigError(
            f"{variable} is {master!r}, which is not a Trainer v2 pod name (<job>-node-0-0.<job>): smc names "
            "every host after it. Keep the runtime's default, or pin the hosts with SMC_PLATFORM=sagemaker "
            "and a resourceconfig.json."
        )
    job, role, domain = match["job"], match["role"], match["domain"] or ""
    return [f"{job}-{role}-{index}{domain}" for index in range(count)], job


def _trainer_torch(environ: Mapping[str, str]) -> KubeflowJob:
    count = _integer(environ, "PET_NNODES", minimum=1)
    rank = _integer(environ, "PET_NODE_RANK")
    _in_range("PET_NODE_RANK", rank, count, "PET_NNODES")
    master = environ.get("PET_MASTER_ADDR", "").strip()
    if not master:
        raise ConfigError("PET_MASTER_ADDR is not set, but PET_NNODES is: the pod needs both.")
    hosts, job = _trainer_hosts(master, count, "PET_MASTER_ADDR")
    return KubeflowJob(
        kind="kubeflow-trainjob",
        hosts=hosts,
        current_host=hosts[rank],
        job_name=job,
        master_port=_port(environ, "PET_MASTER_PORT", TRAINER_MASTER_PORT),
        processes=environ.get("PET_NPROC_PER_NODE") or None,
        distributed_by="Kubeflow Trainer's PET_* variables",
    )


def _trainer_jax(environ: Mapping[str, str]) -> KubeflowJob:
    count = _integer(environ, "JAX_NUM_PROCESSES", minimum=1)
    rank = _integer(environ, "JAX_PROCESS_ID")
    _in_range("JAX_PROCESS_ID", rank, count, "JAX_NUM_PROCESSES")
    coordinator = environ.get("JAX_COORDINATOR_ADDRESS", "").strip()
    if not coordinator:
        raise ConfigError("JAX_COORDINATOR_ADDRESS is not set, but JAX_NUM_PROCESSES is: the pod needs both.")
    host, _, port = coordinator.rpartition(":") if ":" in coordinator else (coordinator, "", "")
    hosts, job = _trainer_hosts(host, count, "JAX_COORDINATOR_ADDRESS")
    return KubeflowJob(
        kind="kubeflow-trainjob",
        hosts=hosts,
        current_host=hosts[rank],
        job_name=job,
        master_port=int(port) if port.isdigit() else None,
    )


def _pytorchjob(environ: Mapping[str, str]) -> KubeflowJob:
    master = environ["MASTER_ADDR"].strip()
    match = _PYTORCHJOB_MASTER.match(master)
    if not match:
        raise ConfigError(
            f"MASTER_ADDR is {master!r}, which is not a PyTorchJob master pod (<job>-master-0): smc names "
            "every host after it."
        )
    processes = environ.get("PET_NPROC_PER_NODE") or None
    per_node = int(processes) if processes and processes.strip().isdigit() else 1
    if environ.get("PET_NNODES", "").strip():
        count = _integer(environ, "PET_NNODES", minimum=1)
    else:  # older operators: WORLD_SIZE counts pods
        count = max(_integer(environ, "WORLD_SIZE", minimum=1) // per_node, 1)
    rank = _integer(environ, "PET_NODE_RANK") if environ.get("PET_NODE_RANK") else _integer(environ, "RANK")
    _in_range("RANK", rank, count, "PET_NNODES" if environ.get("PET_NNODES") else "WORLD_SIZE")
    job, domain = match["job"], match["domain"] or ""
    hosts = [master, *(f"{job}-worker-{index}{domain}" for index in range(count - 1))]
    return KubeflowJob(
        kind="kubeflow-pytorchjob",
        hosts=hosts,
        current_host=hosts[rank],
        job_name=job,
        master_port=_port(environ, "MASTER_PORT", PYTORCHJOB_MASTER_PORT),
        processes=processes,
        distributed_by="Kubeflow PyTorchJob's MASTER_ADDR, WORLD_SIZE and RANK",
    )


def read_kubeflow_job(environ: Mapping[str, str]) -> KubeflowJob:
    """The job as this pod's Kubeflow variables describe it (Trainer v2 torch or JAX, PyTorchJob, TFJob).

    :raises ConfigError: no Kubeflow variables, or one that is missing or malformed, naming it.
    """
    if environ.get("PET_MASTER_ADDR") or (environ.get("PET_NNODES") and not environ.get("MASTER_ADDR")):
        return _trainer_torch(environ)
    if environ.get("JAX_NUM_PROCESSES") or environ.get("JAX_COORDINATOR_ADDRESS"):
        return _trainer_jax(environ)
    if environ.get("MASTER_ADDR") and (environ.get("RANK") or environ.get("PET_NODE_RANK")):
        return _pytorchjob(environ)
    if environ.get("TF_CONFIG", "").strip():
        config = resource_config_from_tf_config(environ["TF_CONFIG"])
        return KubeflowJob(kind="kubeflow-tfjob", hosts=config["hosts"], current_host=config["current_host"])
    raise ConfigError(
        "No Kubeflow variables are set: expected PET_NNODES, PET_NODE_RANK and PET_MASTER_ADDR (Trainer "
        "v2 torch), JAX_NUM_PROCESSES, JAX_PROCESS_ID and JAX_COORDINATOR_ADDRESS (Trainer v2 JAX), "
        "MASTER_ADDR, WORLD_SIZE and RANK (PyTorchJob) or TF_CONFIG (TFJob)."
    )


def kubeflow_facts(base: Path, environ: Mapping[str, str], settings: Settings) -> PlatformFacts:
    """What a Kubeflow pod's variables say about the job (see the module docstring for the mapping),
    completed by :func:`~smc_core.job.platforms.common.off_sagemaker`.

    :raises ConfigError: a missing or malformed variable, naming it.
    """
    job = read_kubeflow_job(environ)
    processes = None
    if job.processes:
        processes = processes_from(
            job.processes, job.processes_variable, available_gpus(environ), available_cpus()
        )
    model_dir = channels = None
    if job.kind == "kubeflow-trainjob" and WORKSPACE.is_dir():
        model_dir = WORKSPACE / "model"
        if (WORKSPACE / "dataset").is_dir():
            channels = {"training": WORKSPACE / "dataset"}
    facts = PlatformFacts(
        name="kubeflow",
        resource_config=job.resource_config,
        model_dir=model_dir,
        channel_dirs=channels,
        master_port=job.master_port,
        processes_per_host=processes,
        distributed_by=job.distributed_by,
    )
    return off_sagemaker(facts, base, environ, settings, job_name=job.job_name)
