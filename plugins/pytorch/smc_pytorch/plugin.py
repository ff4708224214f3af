"""The PyTorch adapter's hook implementations (torch is imported only inside functions).

* ``register_settings``: ``SMC_PYTORCH_PROCESSES_PER_HOST``, ``SMC_PYTORCH_MASTER_PORT``,
  ``SMC_PYTORCH_RENDEZVOUS_TIMEOUT``, ``RUN_NEURON_PARALLEL_COMPILE``
  (:data:`smc_pytorch.distribution.SETTINGS`).
* ``claim_switches``: ``sagemaker_torch_distributed_enabled``, ``sagemaker_pytorch_ddp_enabled``,
  ``sagemaker_pytorch_xla_multi_worker_enabled``.
* ``prepare_training``: waits until every host resolves (``wait_for_hosts``), then contributes
  ``MASTER_ADDR``, ``MASTER_PORT``, ``NCCL_SOCKET_IFNAME``, ``GLOO_SOCKET_IFNAME``, ``NCCL_DEBUG``.
* ``invoke_train``: with one of those switches, runs torchrun on this host (through
  :mod:`smc_pytorch.launcher`; under ``neuron_parallel_compile`` with ``RUN_NEURON_PARALLEL_COMPILE=1``)
  with the EFA and NCCL variables of :func:`smc_core.network_variables`, and reports the failing rank
  and host; PyTorch/XLA on the runtime the installed torch_xla uses (:mod:`smc_pytorch.xla`).
  Otherwise returns None: with ``sagemaker_mpi_enabled`` the core's MPI launcher runs the
  ranks (with this adapter's ``MASTER_ADDR``/``MASTER_PORT`` and the core's per-rank ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``), else the default runs one process.
* ``save_returned_module`` (an ``invoke_train`` wrapper): in function mode, saves an ``nn.Module``
  that ``train()`` returned into the model dir, on rank 0 only (:mod:`smc_pytorch.saving`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from smc_core import (
    ConfigError,
    EntryKind,
    RankFailure,
    Setting,
    TrainingEnv,
    TrainingResult,
    UserCode,
    hookimpl,
    is_true,
    logger,
    network_variables,
    python_executable,
    run_process,
    user_args,
    wait_for_hosts,
)
from smc_pytorch.distribution import (
    DISTRIBUTION_SWITCHES,
    NEURON_PARALLEL_COMPILE,
    SETTINGS,
    distribution_switch,
    launcher_command,
    platform_port,
    processes_per_host,
    rendezvous_env,
    rendezvous_timeout,
    torchrun_args,
)
from smc_pytorch.saving import is_module, is_rank_zero, save_model
from smc_pytorch.xla import XLA_SWITCH, installed_runtime, pjrt_env, xrt_command, xrt_env


@hookimpl
def register_settings() -> tuple[Setting[Any], ...]:
    """The environment variables this adapter reads (checked at start, listed in the settings reference)."""
    return SETTINGS


@hookimpl
def claim_switches() -> tuple[str, ...]:
    """The switches this adapter launches with torchrun."""
    return DISTRIBUTION_SWITCHES


@hookimpl
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> dict[str, str]:
    """Wait for peer hosts (bounded by the job's ``SMC_HOST_WAIT_TIMEOUT``; a one-host job's own name
    answers at once), then return the rendezvous variables."""
    wait_for_hosts(training_env)
    return rendezvous_env(training_env)


@hookimpl
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult | None:
    """Run torchrun on this host when a distribution switch is on; None otherwise."""
    switch = distribution_switch(training_env)
    if switch is None:
        if is_true(training_env.additional_framework_parameters.get("sagemaker_mpi_enabled")):
            logger.info(
                "sagemaker_mpi_enabled: the MPI launcher runs the ranks; each gets MASTER_ADDR=%s, "
                "MASTER_PORT=%s and its RANK, WORLD_SIZE, LOCAL_RANK for torch.distributed's env://.",
                process_env.get("MASTER_ADDR"),
                process_env.get("MASTER_PORT"),
            )
        return None
    if user_code.kind is EntryKind.FUNCTION:
        logger.warning(
            "%s is on, but function mode runs train() in this process: torchrun is not used.", switch
        )
        return None
    env = dict(process_env)
    launcher = "torchrun"
    if switch == XLA_SWITCH:
        xla = installed_runtime(python_executable())
        logger.info("%s: torch_xla %s, on its %s runtime.", switch, xla.version, xla.runtime)
        launcher = "xla"
        if xla.runtime == "XRT":
            return run_xrt(training_env, user_code, env)
        _set_defaults(env, pjrt_env(training_env, xla))
    _set_defaults(env, network_variables(training_env, launcher))
    nproc = processes_per_host(training_env)
    arguments = torchrun_args(
        training_env,
        user_code,
        user_args(training_env),
        nproc_per_host=nproc,
        port=platform_port(training_env),
        timeout=rendezvous_timeout(training_env),
        max_restarts=training_env.long_jobs.max_restarts,
    )
    prefix = neuron_parallel_compile(training_env, env)
    shown = [*(["neuron_parallel_compile"] if prefix else []), "torchrun", *arguments]
    logger.info("%s: torchrun with %d process(es) on this host: %s", switch, nproc, " ".join(shown))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="smc-pytorch-") as tmp:
        report_path = Path(tmp) / "report.json"
        command = launcher_command(
            arguments,
            report=report_path,
            host=training_env.current_host,
            peer_stop_grace=training_env.supervision.peer_stop_grace,
        )
        # Supervised under the job's policy (SMC_GRACE_PERIOD, SMC_LEFTOVER_GRACE), as every process is.
        result = run_process([*prefix, *command], env=env, cwd=user_code.code_dir)
        report = _read_report(report_path)
    result = dataclasses.replace(result, command=shown)
    if training_env.long_jobs.max_restarts:  # torchrun restarted (or not): the core adds no restart
        attempts = [str(a) for a in report.get("attempts") or ()]
        details = {**result.details, "restarted_by": "torchrun"}
        if attempts and result.succeeded:
            details["attempts"] = [*attempts, f"attempt {len(attempts) + 1}: succeeded"]
        elif attempts:
            details["attempts"] = attempts
        result = dataclasses.replace(result, details=details)
    if result.succeeded or not report.get("root_cause"):
        return result
    root = report["root_cause"]
    return dataclasses.replace(
        result,
        failure=failure_reason(root, training_env.current_host),
        details={
            **result.details,
            "rank": root["rank"],
            "local_rank": root["local_rank"],
            "host": root["host"],
            "failing_process": f"rank {root['rank']} on host {root['host']}",
        },
    )


def _set_defaults(env: dict[str, str], variables: Mapping[str, str]) -> None:
    """Add ``variables`` to ``env``, never replacing one already there (the job's, another plugin's)."""
    for name, value in variables.items():
        env.setdefault(name, value)


def neuron_parallel_compile(training_env: TrainingEnv, env: Mapping[str, str]) -> list[str]:
    """``[path of neuron_parallel_compile]`` with ``RUN_NEURON_PARALLEL_COMPILE=1`` (as the reference
    runs ``neuron_parallel_compile torchrun ...``), else ``[]``.

    :raises ConfigError: it is asked for but not on ``PATH`` (exit 2), saying what to install.
    """
    if not training_env.settings[NEURON_PARALLEL_COMPILE]:
        return []
    import shutil

    found = shutil.which("neuron_parallel_compile", path=env.get("PATH"))
    if found is None:
        raise ConfigError(
            "RUN_NEURON_PARALLEL_COMPILE=1 asks for neuron_parallel_compile, which is not on PATH: it comes "
            "with torch-neuronx (pip install torch-neuronx from the Neuron repository, "
            "pip.repos.neuron.amazonaws.com), as in the Neuron training images; or unset the variable."
        )
    logger.info("RUN_NEURON_PARALLEL_COMPILE=1: torchrun runs under %s (graphs to the Neuron cache).", found)
    return [found]


def run_xrt(training_env: TrainingEnv, user_code: UserCode, env: dict[str, str]) -> TrainingResult:
    """PyTorch/XLA on XRT (torch_xla before 2.0): the reference's variables and ``xla_spawn`` on each host."""
    if user_code.kind is not EntryKind.PYTHON or not user_code.entry_point:
        raise ConfigError(
            f"{XLA_SWITCH} with torch_xla's XRT runtime runs a Python script (train.py), as the reference "
            f"does; this job's entry point is {user_code.entry_point!r}: name a .py script."
        )
    _set_defaults(env, xrt_env(training_env))
    _set_defaults(env, network_variables(training_env, "xla"))
    command = xrt_command(training_env, python_executable(), user_code.entry_point, user_args(training_env))
    logger.info("%s: %s", XLA_SWITCH, " ".join(command))
    return run_process(command, env=env, cwd=user_code.code_dir)  # the job's policy applies


@hookimpl(specname="invoke_train", wrapper=True)
def save_returned_module(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> Generator[None, Any, Any]:
    """Function mode: save an ``nn.Module`` returned by ``train()`` to the model dir, on rank 0."""
    result = yield
    if result is not None and result.succeeded and is_module(result.model):
        if is_rank_zero(training_env):
            save_model(result.model, training_env.model_dir)
        else:
            logger.info(
                "Not rank 0: the returned module is saved by rank 0 on %s.", training_env.master_hostname
            )
        result = dataclasses.replace(result, model_handled_by="smc-pytorch")
    return result


def failure_reason(root: Mapping[str, Any], current_host: str) -> str:
    """The failure-file reason for a torchrun job: the core's failing-rank report (which rank on which
    host, then the end of its traceback) of the launcher's root cause."""
    failure = RankFailure(
        str(root["host"]),
        int(root["exitcode"]),
        str(root.get("traceback") or ""),
        rank=int(root["rank"]),
        local_rank=int(root["local_rank"]),
        collateral=bool(root.get("collateral")),
    )
    return failure.describe(current_host)


def _read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
