"""How a Keras job spans hosts, on each backend's own engine.

===========================================  =======  ==============================================
switch (framework parameter)                 backend  what smc-keras does
===========================================  =======  ==============================================
``sagemaker_keras_jax_distributed_enabled``  jax      one process per host; ``KERAS_DISTRIBUTION_*``
                                                      for ``keras.distribution.initialize()``
``sagemaker_multi_worker_mirrored_strategy_  tensorflow  one process per host; ``TF_CONFIG``, every
enabled``                                             host a worker on port 8890
``sagemaker_torch_distributed_enabled``      torch    ``python -m torch.distributed.run`` (torchrun)
                                                      on every host: ``MASTER_ADDR``, ``RANK`` ...
===========================================  =======  ==============================================

A switch that does not fit the chosen backend fails at start (exit 2). Plain functions, no framework
import: each works on a :class:`smc_core.TrainingEnv`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smc_core import (
    ConfigError,
    EntryKind,
    Setting,
    TrainingEnv,
    UserCode,
    is_true,
    multi_worker_tf_config,
    python_executable,
    rendezvous_host,
    tf_config_json,
)

JAX_SWITCH = "sagemaker_keras_jax_distributed_enabled"
TF_SWITCH = "sagemaker_multi_worker_mirrored_strategy_enabled"
TORCH_SWITCH = "sagemaker_torch_distributed_enabled"

SWITCH_BACKENDS: Mapping[str, str] = {JAX_SWITCH: "jax", TF_SWITCH: "tensorflow", TORCH_SWITCH: "torch"}
"""Each distribution switch smc-keras claims, and the only backend it fits."""

DISTRIBUTION_SWITCHES = tuple(SWITCH_BACKENDS)

DEFAULT_PORTS: Mapping[str, int] = {"jax": 7777, "torch": 7777}
"""The first host's rendezvous port: JAX's coordinator, torchrun's store (the contract's 7777).
TensorFlow's workers use the contract's 8890 on every host (the core's ``multi_worker_tf_config``)."""

RENDEZVOUS_PORT = Setting.integer(
    "SMC_KERAS_RENDEZVOUS_PORT",
    None,
    "the first host's rendezvous port for the jax coordinator and torchrun (default 7777); "
    "TensorFlow workers keep the contract's 8890",
    minimum=1,
    maximum=65535,
    owner="smc-keras",
)


def distribution_switch(training_env: TrainingEnv, backend: str) -> str | None:
    """The distribution switch that is on, or None; raises for a switch that does not fit ``backend``.

    :raises ConfigError: more than one switch is on, or the switch belongs to another backend.
    """
    params = training_env.additional_framework_parameters
    on = [switch for switch in DISTRIBUTION_SWITCHES if is_true(params.get(switch, False))]
    if len(on) > 1:
        raise ConfigError(
            f"hyperparameters.json turns on {' and '.join(on)}: a Keras job runs on one backend's "
            "engine; keep only the switch of its backend."
        )
    if not on:
        return None
    switch = on[0]
    if SWITCH_BACKENDS[switch] != backend:
        fitting = next(s for s, b in SWITCH_BACKENDS.items() if b == backend)
        raise ConfigError(
            f"hyperparameters.json: {switch} is on, which distributes the {SWITCH_BACKENDS[switch]} "
            f"backend, but this job runs Keras on {backend}: set sagemaker_keras_backend to "
            f'"{SWITCH_BACKENDS[switch]}", or use {fitting} for {backend}.'
        )
    return switch


def job_hosts(training_env: TrainingEnv) -> list[str]:
    """The hosts that train together (the distribution hosts), this host among them."""
    hosts = list(training_env.distribution_hosts or training_env.hosts)
    if training_env.current_host not in hosts:
        raise ConfigError(
            f"resourceconfig.json: current_host {training_env.current_host!r} is not among the distribution "
            f"hosts {hosts}: check sagemaker_distribution_instance_groups."
        )
    return hosts


def rendezvous_address(training_env: TrainingEnv) -> str:
    """The first host's name, or ``127.0.0.1`` for a one-host job whose name does not resolve
    (``smc local`` calls the machine ``algo-1``): smc's :func:`~smc_core.rendezvous_host`."""
    job_hosts(training_env)  # the current host must be among the distribution hosts
    return rendezvous_host(training_env)


def rendezvous_port(training_env: TrainingEnv, backend: str) -> int:
    """``$SMC_KERAS_RENDEZVOUS_PORT``, else the backend's default (:data:`DEFAULT_PORTS`)."""
    return training_env.settings[RENDEZVOUS_PORT] or DEFAULT_PORTS.get(backend, 7777)


def jax_env(training_env: TrainingEnv) -> dict[str, str]:
    """What ``keras.distribution.initialize()`` reads: every host's address (the first is JAX's
    coordinator), the process count and this process's id; and gloo for CPU collectives."""
    hosts = job_hosts(training_env)
    port = rendezvous_port(training_env, "jax")
    first = rendezvous_address(training_env)
    addresses = [f"{first}:{port}", *(f"{host}:{port}" for host in hosts[1:])]
    variables = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": ",".join(addresses),
        "KERAS_DISTRIBUTION_NUM_PROCESSES": str(len(hosts)),
        "KERAS_DISTRIBUTION_PROCESS_ID": str(hosts.index(training_env.current_host)),
    }
    if not training_env.num_gpus:
        # gloo: jax's cross-process collectives on CPU (the default in jax 0.10; older jax needed it named)
        variables["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    return variables


def tensorflow_env(training_env: TrainingEnv) -> dict[str, str]:
    """``TF_CONFIG`` for MultiWorkerMirroredStrategy (every host a worker on port 8890)."""
    config = multi_worker_tf_config(job_hosts(training_env), training_env.current_host)
    return {"TF_CONFIG": tf_config_json(config)}


def torch_env(training_env: TrainingEnv, *, function_mode: bool) -> dict[str, str]:
    """torch.distributed's rendezvous: ``MASTER_ADDR``, ``MASTER_PORT``; in function mode (one
    process per host, no torchrun) also ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` ... of this host."""
    hosts = job_hosts(training_env)
    variables = {
        "MASTER_ADDR": rendezvous_address(training_env),
        "MASTER_PORT": str(rendezvous_port(training_env, "torch")),
    }
    if function_mode:
        rank = str(hosts.index(training_env.current_host))
        variables.update(
            RANK=rank, GROUP_RANK=rank, WORLD_SIZE=str(len(hosts)), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1"
        )
    return variables


def processes_per_host(training_env: TrainingEnv) -> int:
    """torchrun's processes per host: what the job asks (``sagemaker_mpi_num_of_processes_per_host``,
    ``training_env.processes_per_host``), else one per GPU, else per Neuron core, else 1."""
    return training_env.processes_per_host or training_env.default_processes_per_host


def torchrun_command(training_env: TrainingEnv, user_code: UserCode, args: list[str]) -> list[str]:
    """``python -m torch.distributed.run --nnodes N --nproc_per_node P --node_rank i --master_addr M
    --master_port 7777 ... <entry point> <args>`` for this host."""
    hosts = job_hosts(training_env)
    entry = user_code.entry_point
    if not entry:
        raise ConfigError(
            "No entry point: the job names none. Set the hyperparameter sagemaker_program "
            '(e.g. "train.py") or the environment variable SAGEMAKER_PROGRAM.'
        )
    command = [
        python_executable(), "-m", "torch.distributed.run",
        "--nnodes", str(len(hosts)),
        "--nproc_per_node", str(processes_per_host(training_env)),
        "--node_rank", str(hosts.index(training_env.current_host)),
        "--master_addr", rendezvous_address(training_env),
        "--master_port", str(rendezvous_port(training_env, "torch")),
        "--max-restarts", "0",
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


def distribution_env(
    training_env: TrainingEnv, backend: str, switch: str | None, *, function_mode: bool
) -> dict[str, str]:
    """The variables this host's processes get for ``switch`` (none when it is None)."""
    if switch is None:
        return {}
    if backend == "jax":
        return jax_env(training_env)
    if backend == "tensorflow":
        return tensorflow_env(training_env)
    return torch_env(training_env, function_mode=function_mode)
