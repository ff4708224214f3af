"""How a PyTorch job spans processes and hosts: the switches, the counts, the variables, the command.

Plain functions, no torch import: each works on a :class:`smc_core.TrainingEnv`.
"""

from __future__ import annotations

from pathlib import Path

from smc_core import (
    ConfigError,
    EntryKind,
    Setting,
    TrainingEnv,
    UserCode,
    entry_command,
    interface_exists,
    is_true,
    logger,
    python_executable,
    rendezvous_host,
    route_interface,
)

DISTRIBUTION_SWITCHES = (
    "sagemaker_torch_distributed_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
)
"""Hyperparameters that turn on a torchrun launch (the SageMaker SDK's ``distribution=``); the PyTorch/XLA
one on the runtime the installed torch_xla uses (:mod:`smc_pytorch.xla`)."""

DEFAULT_MASTER_PORT = 7777
"""The contract's rendezvous port."""

# The adapter's settings (declared with register_settings, read from training_env.settings).
PROCESSES_PER_HOST = Setting.integer(
    "SMC_PYTORCH_PROCESSES_PER_HOST",
    None,
    "processes per host for torchrun jobs when the job does not say "
    "(sagemaker_mpi_num_of_processes_per_host); default: the GPU count, else the Neuron core count, "
    "else 1 (e.g. 2 runs two gloo processes on a CPU host)",
    minimum=1,
    owner="smc-pytorch",
)
MASTER_PORT = Setting.integer(
    "SMC_PYTORCH_MASTER_PORT",
    DEFAULT_MASTER_PORT,
    "the rendezvous port (MASTER_PORT and torchrun's --master_port) instead of the contract's 7777, "
    "e.g. for two jobs on one machine",
    minimum=1,
    maximum=65535,
    owner="smc-pytorch",
)
RENDEZVOUS_TIMEOUT = Setting.seconds(
    "SMC_PYTORCH_RENDEZVOUS_TIMEOUT",
    600.0,
    "seconds torchrun's agents wait for each other at the start",
    positive=True,
    owner="smc-pytorch",
)
NEURON_PARALLEL_COMPILE = Setting.switch(
    "RUN_NEURON_PARALLEL_COMPILE",
    False,
    "the reference toolkit's switch: run torchrun under neuron_parallel_compile (torch-neuronx), which "
    "extracts the job's XLA graphs from a short trial run and compiles them in parallel into the Neuron "
    "cache (a pre-compile job; the next job finds them there)",
    owner="smc-pytorch",
)
SETTINGS = (PROCESSES_PER_HOST, MASTER_PORT, RENDEZVOUS_TIMEOUT, NEURON_PARALLEL_COMPILE)
"""Every setting smc-pytorch reads."""


def distribution_switch(training_env: TrainingEnv) -> str | None:
    """The distribution switch that is on (``sagemaker_torch_distributed_enabled`` ...), else what on
    another platform asks for a distributed launch (``training_env.distributed_by``), or None."""
    params = training_env.additional_framework_parameters
    switch = next((key for key in DISTRIBUTION_SWITCHES if is_true(params.get(key))), None)
    # Off SageMaker (Kubeflow's PET_* variables ...) the platform's own request stands for the switch.
    return switch or training_env.distributed_by


def processes_per_host(training_env: TrainingEnv) -> int:
    """Worker processes per host: what the job asks (``training_env.processes_per_host``: the
    platform's ``PET_NPROC_PER_NODE``, else ``sagemaker_mpi_num_of_processes_per_host``), else
    ``SMC_PYTORCH_PROCESSES_PER_HOST`` (``training_env.settings``), else one per GPU, else per Neuron
    core, else 1 (``training_env.default_processes_per_host``)."""
    configured: int | None = training_env.settings[PROCESSES_PER_HOST]
    return training_env.processes_per_host or configured or training_env.default_processes_per_host


def master_port(training_env: TrainingEnv) -> int:
    """The rendezvous port: ``SMC_PYTORCH_MASTER_PORT`` (``training_env.settings``), else 7777.

    The one source of the port: both the exported ``MASTER_PORT`` and torchrun's ``--master_port``."""
    port: int = training_env.settings[MASTER_PORT]
    return port


def master_addr(training_env: TrainingEnv) -> str:
    """The rendezvous host: the first host (``training_env.master_hostname``), or ``127.0.0.1`` in a
    one-host job whose name does not resolve (``smc local``, the test kit): smc's
    :func:`~smc_core.rendezvous_host`."""
    return rendezvous_host(training_env)


def rendezvous_env(training_env: TrainingEnv) -> dict[str, str]:
    """The variables every PyTorch process gets: ``MASTER_ADDR``, ``MASTER_PORT``, the socket
    interfaces for NCCL and gloo, and ``NCCL_DEBUG=WARN`` unless the job's environment
    (``training_env.environ``) sets it.

    The interface is ``network_interface_name``, or, where the platform names none (Kubeflow, Vertex
    AI), the one on the route to the master. It is set only when this host has it: SDK local mode
    always writes ``eth0``, which a laptop may lack, and gloo fails on a missing interface. An
    interface the job's environment names is kept.
    """
    variables = {
        "MASTER_ADDR": master_addr(training_env),
        "MASTER_PORT": str(platform_port(training_env)),
    }
    interface = training_env.network_interface_name
    if "network_interface_name" not in training_env.resource_config:  # the platform names none
        interface = route_interface(variables["MASTER_ADDR"]) or interface
    if interface_exists(interface):
        for name in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"):
            if name in training_env.environ:
                logger.info("%s=%s: kept from the job's environment.", name, training_env.environ[name])
            else:
                variables[name] = interface
    else:
        logger.warning(
            "resourceconfig.json names the network interface %r, which this host does not have: "
            "NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME are left unset (the libraries pick one).",
            interface,
        )
    if "NCCL_DEBUG" not in training_env.environ:
        variables["NCCL_DEBUG"] = "WARN"
    return variables


def rendezvous_timeout(training_env: TrainingEnv) -> int:
    """Seconds torchrun's agents wait for each other: ``SMC_PYTORCH_RENDEZVOUS_TIMEOUT``
    (``training_env.settings``), else 600, rounded up to whole seconds."""
    import math

    return math.ceil(training_env.settings[RENDEZVOUS_TIMEOUT])


def torchrun_args(
    training_env: TrainingEnv,
    user_code: UserCode,
    args: list[str],
    *,
    nproc_per_host: int,
    port: int = DEFAULT_MASTER_PORT,
    timeout: int = 600,
    max_restarts: int = 0,
) -> list[str]:
    """torchrun's arguments for this host: ``--nnodes N --nproc_per_node P --node_rank i
    --master_addr M --master_port 7777 --max-restarts 0 ... <entry point> <args>``.

    With ``max_restarts`` (the job's ``SMC_MAX_RESTARTS``), torchrun's c10d rendezvous instead of
    the static one (``--rdzv-backend c10d --rdzv-endpoint M:7777 --local-addr <host>``, the master
    hosting the store): when one host's workers fail, its agent restarts them and every other host's
    agent sees it waiting and restarts its own, so all restart together (the static rendezvous would
    hand the next attempt's workers the dead ones' addresses). The hosts' group ranks then follow
    their sorted names (the master, ``algo-1``, first).

    A shell script or command runs as the default ``invoke_train`` runs it (:func:`smc_core.entry_command`:
    its ``#!`` line honoured, ``$0`` as ``./train.sh``), under ``--no-python``."""
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
    if max_restarts:
        is_host = int(training_env.current_host == hosts[0])
        local = training_env.current_host if len(hosts) > 1 else master_addr(training_env)
        command = [
            "--nnodes", str(len(hosts)),
            "--nproc_per_node", str(nproc_per_host),
            "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"{master_addr(training_env)}:{port}",
            "--rdzv-id", training_env.job_name or "smc",
            "--local-addr", local,
            "--max-restarts", str(max_restarts),
            "--rdzv-conf", f"timeout={timeout},is_host={is_host}",
        ]  # fmt: skip
    else:
        command = [
            "--nnodes", str(len(hosts)),
            "--nproc_per_node", str(nproc_per_host),
            "--node_rank", str(hosts.index(training_env.current_host)),
            "--master_addr", master_addr(training_env),
            "--master_port", str(port),
            "--max-restarts", str(max_restarts),
            "--rdzv-conf", f"timeout={timeout}",
        ]  # fmt: skip
    if user_code.kind is EntryKind.MODULE:
        command += ["--module", user_code.module_name or entry]
    elif user_code.kind in (EntryKind.SHELL, EntryKind.COMMAND):
        command += ["--no-python", *entry_command(user_code, [], training_env.environ)]
    else:
        command += [entry]
    return command + list(args)


def launcher_command(
    torchrun: list[str], *, report: Path, host: str, peer_stop_grace: float | None = None
) -> list[str]:
    """The command that runs torchrun with ``torchrun`` arguments under smc's launcher.

    :param peer_stop_grace: the grace this host's workers get when a peer failed (the job's
        ``SMC_PEER_STOP_GRACE``: ``training_env.supervision.peer_stop_grace``).
    """
    grace = [] if peer_stop_grace is None else ["--peer-stop-grace", f"{peer_stop_grace:g}"]
    launcher = [python_executable(), "-m", "smc_pytorch.launcher"]
    return [*launcher, "--report", str(report), "--host", host, *grace, "--", *torchrun]


def platform_port(training_env: TrainingEnv) -> int:
    """The rendezvous port the platform names (``PET_MASTER_PORT`` ...), else :func:`master_port`."""
    return training_env.master_port or master_port(training_env)
