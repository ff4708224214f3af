"""The MPI launch (``sagemaker_mpi_enabled``): ``mpirun`` on the master host, over ssh to the others.

A default plugin, registered ``trylast`` and before the default ``invoke_train``: an adapter that
launches MPI jobs its own way answers first; a job without the switch, or in function mode, is left to
the default. The launch itself is :mod:`smc_core.mpi.launch`; the hosts talk over the job's channel,
which the core opens (:func:`smc_core.job_channel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.base.settings import Setting
from smc_core.cluster.job import job_channel
from smc_core.errors import ConfigError
from smc_core.job.accelerators import network_variables
from smc_core.job.environment import TrainingEnv
from smc_core.job.exports import user_args
from smc_core.job.hyperparameters import count_parameter, is_true
from smc_core.launch.result import TrainingResult
from smc_core.usercode.describe import EntryKind, UserCode
from smc_core.usercode.entry import entry_command

MPI_SWITCH = "sagemaker_mpi_enabled"
NUM_PROCESSES_KEY = "sagemaker_mpi_num_processes"
CUSTOM_OPTIONS_KEY = "sagemaker_mpi_custom_mpi_options"

WAIT_TIMEOUT = Setting.seconds(
    "SMC_MPI_WAIT_TIMEOUT",
    600.0,
    "MPI jobs: seconds the master waits for every worker's sshd to be ready, and a worker for the "
    "master's key",
    positive=True,
    policy=True,
)
REPLACED = {"SMC_MPI_MASTER_SILENCE_TIMEOUT": "SMC_LIVENESS_TIMEOUT"}
"""Settings MPI jobs no longer read, and what replaced them: one set is an error, never ignored."""
REPLACED_SETTINGS = tuple(
    Setting.text(old, None, f"MPI jobs: no longer read, replaced by {new}: set, an MPI job fails naming it")
    for old, new in REPLACED.items()
)
"""Declared (the job's settings read no undeclared name), so that :func:`mpi_job` can see one is set."""
SSH_PORT = Setting.integer(
    "SMC_MPI_SSH_PORT",
    22,
    "MPI jobs: the port of the job's sshd on the worker hosts",
    minimum=1,
    maximum=65535,
)
MPIRUN = Setting.text(
    "SMC_MPIRUN", None, "MPI jobs: the mpirun to run (default: beside the job's python, else on PATH)"
)
SSHD = Setting.text(
    "SMC_MPI_SSHD", None, "MPI jobs: the sshd to start on worker hosts (default: sshd, /usr/sbin)"
)

SETTINGS = (WAIT_TIMEOUT, SSH_PORT, MPIRUN, SSHD, *REPLACED_SETTINGS)


@hookimpl(trylast=True)
def register_settings() -> tuple[Setting[Any], ...]:
    """The MPI launch's settings."""
    return SETTINGS


@hookimpl(trylast=True)
def claim_switches() -> list[str]:
    """The core launches MPI jobs."""
    return [MPI_SWITCH]


def mpi_job(training_env: TrainingEnv, *, launcher: str = "mpi") -> Any:
    """The :class:`~smc_core.mpi.launch.MpiJob` of ``training_env`` (hyperparameters and settings).

    Processes per host as the reference's runner counts them: the job's
    ``sagemaker_mpi_num_of_processes_per_host`` (``training_env.processes_per_host``), else one per GPU,
    else per Neuron core, else 1. Every rank also gets the EFA and NCCL variables of ``launcher``
    (:func:`smc_core.network_variables`).
    """
    # MPI's launcher and sshd only for MPI jobs: every job's start imports this plugin.
    from smc_core.mpi.launch import MpiJob, parse_custom_options

    params = training_env.additional_framework_parameters
    hosts = tuple(training_env.distribution_hosts or training_env.hosts)
    per_host = training_env.processes_per_host or training_env.default_processes_per_host
    total = count_parameter(params, NUM_PROCESSES_KEY, training_env.paths.hyperparameters_file)
    total = total or per_host * len(hosts)
    options = params.get(CUSTOM_OPTIONS_KEY) or ""
    settings, policy = training_env.settings, training_env.supervision
    for old, new in REPLACED.items():
        if settings.is_set(old):
            raise ConfigError(
                f"The environment variable {old} is set, but smc no longer reads it: the job's channel now "
                f"keeps every host of every launch style alive, MPI's master included, within {new} "
                f"(seconds; default {policy.liveness_timeout:g}). Set {new} instead, and remove {old}."
            )
    return MpiJob(
        hosts=hosts,
        current_host=training_env.current_host,
        interface=training_env.network_interface_name,
        processes_per_host=per_host,
        num_processes=total,
        custom_options=parse_custom_options(str(options)),
        ssh_port=settings[SSH_PORT],
        wait_timeout=policy[WAIT_TIMEOUT],
        mpirun=settings[MPIRUN],
        sshd=settings[SSHD],
        variables=network_variables(training_env, launcher),
        supervision=policy,
    )


def rank_command(user_code: UserCode, args: list[str], process_env: Mapping[str, str]) -> list[str]:
    """The entry command each rank runs: as the default launcher runs it, with ``python -m mpi4py``
    in front of a Python entry point when mpi4py is installed (an uncaught exception then aborts
    the job instead of leaving the other ranks waiting)."""
    command = entry_command(user_code, args, process_env)
    if user_code.kind in (EntryKind.PYTHON, EntryKind.MODULE):
        from smc_core.mpi.launch import rank_python_args  # MPI jobs only (see mpi_job)

        command[1:1] = rank_python_args()
    return command


@hookimpl(trylast=True)
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult | None:
    """With ``sagemaker_mpi_enabled``: run mpirun on the master host, serve the job's sshd on the others."""
    if not is_true(training_env.additional_framework_parameters.get(MPI_SWITCH)):
        return None
    if user_code.kind is EntryKind.FUNCTION:
        logger.warning(
            "%s is on, but function mode runs train() in this process: mpirun is not used.", MPI_SWITCH
        )
        return None
    return launch(training_env, user_code, process_env, mpi_job(training_env))


def launch(
    training_env: TrainingEnv,
    user_code: UserCode,
    process_env: Mapping[str, str],
    job: Any,
    *,
    launcher: tuple[str, ...] = (),
    name: str = "MPI",
) -> TrainingResult | None:
    """Run the MPI ``job`` from this host: ``mpirun`` on the master (each rank's command behind
    ``launcher``, e.g. ``smddprun``), the job's sshd on the others. None on a host outside the job's
    hosts (a heterogeneous cluster's other group), which then runs the entry point on its own."""
    from smc_core.mpi.launch import run_master, run_worker  # MPI jobs only (see mpi_job)

    if training_env.current_host not in job.hosts:
        # Heterogeneous clusters: a group outside sagemaker_distribution_instance_groups runs the entry
        # point as a plain process (a data-loading group, say), as on SageMaker.
        logger.info(
            "%s: %s is not one of the distribution hosts (%s): it runs the entry point on its own.",
            name,
            training_env.current_host,
            ", ".join(job.hosts),
        )
        return None
    if training_env.current_host != job.master:
        logger.info("%s: %s is a worker; %s runs mpirun.", name, training_env.current_host, job.master)
        return run_worker(job, process_env, channel=job_channel())
    command = [*launcher, *rank_command(user_code, user_args(training_env), process_env)]
    return run_master(job, command, process_env, cwd=user_code.code_dir, channel=job_channel())
