"""How a PyTorch job spans processes and hosts: the switches, the counts, the variables, the command.

Plain functions, no torch import: each works on a :class:`smc_core.TrainingEnv`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core import (
    ConfigError,
    EntryKind,
    TrainingEnv,
    UserCode,
    interface_exists,
    is_true,
    logger,
    python_executable,
    resolve_host,
    route_interface,
)

DISTRIBUTION_SWITCHES = ("sagemaker_torch_distributed_enabled", "sagemaker_pytorch_ddp_enabled")
"""Hyperparameters that turn on a torchrun launch (the SageMaker SDK's ``distribution=``)."""

PROCESSES_PER_HOST_KEY = "sagemaker_mpi_num_of_processes_per_host"
PROCESSES_PER_HOST_VAR = "SMC_PYTORCH_PROCESSES_PER_HOST"
"""smc option (environment variable): processes per host when the job does not say (CPU jobs)."""
MASTER_PORT = 7777
MASTER_PORT_VAR = "SMC_PYTORCH_MASTER_PORT"
"""smc option: another rendezvous port than the contract's 7777 (e.g. two jobs on one machine)."""
RENDEZVOUS_TIMEOUT_VAR = "SMC_PYTORCH_RENDEZVOUS_TIMEOUT"
"""smc option: seconds torchrun's agents wait for each other at the start (default 600)."""


def distribution_switch(training_env: TrainingEnv) -> str | None:
    """The distribution switch that is on (``sagemaker_torch_distributed_enabled`` ...), else what on
    another platform asks for a distributed launch (``training_env.distributed_by``), or None."""
    params = training_env.additional_framework_parameters
    switch = next((key for key in DISTRIBUTION_SWITCHES if is_true(params.get(key))), None)
    # Off SageMaker (Kubeflow's PET_* variables ...) the platform's own request stands for the switch.
    return switch or training_env.distributed_by


def _positive_int(value: Any, where: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(
            f"{where} is {json.dumps(value)}, which is not a whole number of processes: give e.g. 2."
        )
    return number


def processes_per_host(training_env: TrainingEnv, environ: Mapping[str, str] | None = None) -> int:
    """Worker processes per host: the job's ``sagemaker_mpi_num_of_processes_per_host``, else
    ``$SMC_PYTORCH_PROCESSES_PER_HOST``, else the GPU count, else 1."""
    environ = os.environ if environ is None else environ
    params = training_env.additional_framework_parameters
    if params.get(PROCESSES_PER_HOST_KEY) not in (None, ""):
        return _positive_int(
            params[PROCESSES_PER_HOST_KEY], f"hyperparameters.json: {PROCESSES_PER_HOST_KEY!r}"
        )
    if environ.get(PROCESSES_PER_HOST_VAR, "").strip():
        return _positive_int(
            environ[PROCESSES_PER_HOST_VAR], f"The environment variable {PROCESSES_PER_HOST_VAR}"
        )
    return training_env.num_gpus or 1


def master_port(environ: Mapping[str, str] | None = None) -> int:
    """The rendezvous port: 7777, or ``$SMC_PYTORCH_MASTER_PORT``."""
    environ = os.environ if environ is None else environ
    raw = environ.get(MASTER_PORT_VAR, "").strip()
    if not raw:
        return MASTER_PORT
    port = _positive_int(raw, f"The environment variable {MASTER_PORT_VAR}")
    if port > 65535:
        raise ConfigError(
            f"The environment variable {MASTER_PORT_VAR} is {raw}: give a TCP port, 1 to 65535."
        )
    return port


def master_addr(training_env: TrainingEnv) -> str:
    """The rendezvous host: the first host (``training_env.master_hostname``).

    A one-host job whose name does not resolve (``smc local`` calls the machine ``algo-1``) uses
    ``127.0.0.1`` instead: every process is on this machine, and an unresolvable name would leave
    torchrun waiting until its rendezvous timeout.
    """
    hosts = training_env.distribution_hosts or training_env.hosts
    if len(hosts) == 1 and resolve_host(training_env.master_hostname) is None:
        logger.info(
            "%s does not resolve; this one-host job meets on 127.0.0.1.", training_env.master_hostname
        )
        return "127.0.0.1"
    return training_env.master_hostname


def rendezvous_env(training_env: TrainingEnv, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables every PyTorch process gets: ``MASTER_ADDR``, ``MASTER_PORT``, the socket
    interfaces for NCCL and gloo, and ``NCCL_DEBUG=WARN`` unless set.

    The interface is ``network_interface_name``, or, where the platform names none (Kubeflow, Vertex
    AI), the one on the route to the master. It is set only when this host has it: SDK local mode
    always writes ``eth0``, which a laptop may lack, and gloo fails on a missing interface.
    """
    environ = os.environ if environ is None else environ
    variables = {
        "MASTER_ADDR": master_addr(training_env),
        "MASTER_PORT": str(platform_port(training_env, environ)),
    }
    interface = training_env.network_interface_name
    if "network_interface_name" not in training_env.resource_config:  # the platform names none
        interface = route_interface(variables["MASTER_ADDR"]) or interface
    if interface_exists(interface):
        variables["NCCL_SOCKET_IFNAME"] = interface
        variables["GLOO_SOCKET_IFNAME"] = interface
    else:
        logger.warning(
            "resourceconfig.json names the network interface %r, which this host does not have: "
            "NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME are left unset (the libraries pick one).",
            interface,
        )
    if "NCCL_DEBUG" not in environ:
        variables["NCCL_DEBUG"] = "WARN"
    return variables


def rendezvous_timeout(environ: Mapping[str, str] | None = None) -> int:
    """Seconds torchrun's agents wait for each other: ``$SMC_PYTORCH_RENDEZVOUS_TIMEOUT``, else 600."""
    environ = os.environ if environ is None else environ
    raw = environ.get(RENDEZVOUS_TIMEOUT_VAR, "").strip()
    return _positive_int(raw, f"The environment variable {RENDEZVOUS_TIMEOUT_VAR}") if raw else 600


def torchrun_args(
    training_env: TrainingEnv,
    user_code: UserCode,
    args: list[str],
    *,
    nproc_per_host: int,
    port: int = MASTER_PORT,
    timeout: int = 600,
) -> list[str]:
    """torchrun's arguments for this host: ``--nnodes N --nproc_per_node P --node_rank i
    --master_addr M --master_port 7777 --max-restarts 0 ... <entry point> <args>``."""
    hosts = list(training_env.distribution_hosts or training_env.hosts)
    if training_env.current_host not in hosts:
        raise ConfigError(
            f"resourceconfig.json: current_host {training_env.current_host!r} is not among the distribution "
            f"hosts {hosts}: check sagemaker_distribution_instance_groups."
        )
    entry = user_code.entry_point
    if entry is None:
        raise ConfigError(
            "No entry point: the job names none. Set the hyperparameter sagemaker_program "
            '(e.g. "train.py") or the environment variable SAGEMAKER_PROGRAM.'
        )
    command = [
        "--nnodes", str(len(hosts)),
        "--nproc_per_node", str(nproc_per_host),
        "--node_rank", str(hosts.index(training_env.current_host)),
        "--master_addr", master_addr(training_env),
        "--master_port", str(port),
        "--max-restarts", "0",
        "--rdzv-conf", f"timeout={timeout}",
    ]  # fmt: skip
    if user_code.kind is EntryKind.MODULE:
        command += ["--module", user_code.module_name or entry]
    elif user_code.kind is EntryKind.SHELL:
        command += ["--no-python", "/bin/sh", entry]
    elif user_code.kind is EntryKind.COMMAND:
        command += ["--no-python", str(Path(user_code.code_dir) / entry)]
    else:
        command += [entry]
    return command + list(args)


def launcher_command(torchrun: list[str], *, report: Path, host: str) -> list[str]:
    """The command that runs torchrun with ``torchrun`` arguments under smc's launcher."""
    return [
        python_executable(),
        "-m",
        "smc_pytorch.launcher",
        "--report",
        str(report),
        "--host",
        host,
        "--",
        *torchrun,
    ]


def platform_port(training_env: TrainingEnv, environ: Mapping[str, str] | None = None) -> int:
    """The rendezvous port the platform names (``PET_MASTER_PORT`` ...), else :func:`master_port`."""
    return training_env.master_port or master_port(environ)


def platform_processes(training_env: TrainingEnv, environ: Mapping[str, str] | None = None) -> int:
    """Processes per host the platform asks for (``PET_NPROC_PER_NODE``), else
    :func:`processes_per_host`."""
    return training_env.processes_per_host or processes_per_host(training_env, environ)
