"""The SMDDP launch (``sagemaker_distributed_dataparallel_enabled``): SageMaker's distributed data
parallel library, run as the reference toolkit runs it (``sagemaker_training/smdataparallel.py``). A
default plugin beside the MPI launch it builds on, with the same rule: the public API only.

The master host runs ``mpirun`` over ssh to the others (the MPI launch, :mod:`smc_core.mpi.launch`)
with the reference SMDDP runner's options (``--oversubscribe``, ``-mca plm_rsh_num_concurrent
<hosts>``), its variables (``SMDATAPARALLEL_USE_SINGLENODE=1`` on one host;
``SMDATAPARALLEL_USE_HOMOGENEOUS=1``, ``SMDATAPARALLEL_SERVER_ADDR``/``_PORT`` and
``SAGEMAKER_INSTANCE_TYPE`` on several; the EFA and NCCL ones of :func:`smc_core.network_variables`
for ``smddp``) and ``smddprun`` in front of each rank's command: ``mpirun ... smddprun python -m mpi4py
train.py ARGS``. Processes per host as for MPI (one per GPU by default).
``sagemaker_distributed_dataparallel_custom_mpi_options`` adds mpirun options; its
``--NCCL_DEBUG LEVEL`` sets ``NCCL_DEBUG`` (default ``INFO``), as the reference reads it.

Where the library is not installed (no ``smddprun`` on ``PATH``), the job stops with exit 2 saying what
to install: the reference would run the ranks without it, and a job that asked for SMDDP would train
without the library it was written for.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
from collections.abc import Mapping
from typing import Any

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.errors import ConfigError
from smc_core.job.environment import TrainingEnv
from smc_core.job.hyperparameters import is_true
from smc_core.launch.result import TrainingResult
from smc_core.usercode.describe import EntryKind, UserCode

SMDDP_SWITCH = "sagemaker_distributed_dataparallel_enabled"
CUSTOM_OPTIONS_KEY = "sagemaker_distributed_dataparallel_custom_mpi_options"
INSTANCE_TYPE_KEY = "sagemaker_instance_type"
SERVER_PORT = 7592
"""The port of SMDDP's server on the master (multi-host jobs), as the reference sets it."""
LAUNCHER = "smddprun"
MISSING = (
    f"{SMDDP_SWITCH} is on, but SageMaker's distributed data parallel library "
    f"(smdistributed-dataparallel, which provides {LAUNCHER}) is not installed here: {LAUNCHER} is not "
    "on PATH. Run the job in a SageMaker PyTorch training image that ships it "
    "(aws/deep-learning-containers), or install the library's wheel for this image's torch and CUDA "
    "(the SageMaker developer guide lists them under 'data parallelism library'), or turn "
    f"{SMDDP_SWITCH} off and use sagemaker_torch_distributed_enabled (torchrun)."
)


@hookimpl(trylast=True)
def claim_switches() -> list[str]:
    """The core launches SMDDP jobs (over its MPI launch)."""
    return [SMDDP_SWITCH]


def split_custom_options(text: str) -> tuple[str | None, str]:
    """``--NCCL_DEBUG LEVEL`` (or ``--NCCL_DEBUG=LEVEL``) taken out of the SMDDP custom options, as the
    reference's parser does: (the level or None, the rest of the options)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(
            f"hyperparameters.json: {CUSTOM_OPTIONS_KEY} is {text!r}, which cannot be split into options "
            f'({exc}): quote values the way a shell would, e.g. "-x NCCL_ALGO=Ring".'
        ) from None
    level: str | None = None
    rest: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("--NCCL_DEBUG="):
            level = word.split("=", 1)[1]
        elif word == "--NCCL_DEBUG":
            if index + 1 >= len(words):
                raise ConfigError(
                    f"hyperparameters.json: {CUSTOM_OPTIONS_KEY} ends with --NCCL_DEBUG and no level: "
                    'give one, e.g. "--NCCL_DEBUG WARN".'
                )
            level = words[index + 1]
            index += 1
        else:
            rest.append(word)
        index += 1
    return level, shlex.join(rest)


def smddp_variables(training_env: TrainingEnv, hosts: tuple[str, ...]) -> dict[str, str]:
    """SMDDP's own variables for every rank, as the reference sets them (see the module docstring)."""
    if len(hosts) == 1:
        return {"SMDATAPARALLEL_USE_SINGLENODE": "1"}
    params = training_env.additional_framework_parameters
    instance_type = params.get(INSTANCE_TYPE_KEY) or training_env.current_instance_type
    return {
        "SMDATAPARALLEL_USE_HOMOGENEOUS": "1",
        "SMDATAPARALLEL_SERVER_ADDR": hosts[0],
        "SMDATAPARALLEL_SERVER_PORT": str(SERVER_PORT),
        "SAGEMAKER_INSTANCE_TYPE": str(instance_type),
    }


def smddp_job(training_env: TrainingEnv) -> Any:
    """The :class:`~smc_core.mpi.launch.MpiJob` of an SMDDP job: the MPI job of ``training_env`` with
    the reference SMDDP runner's options and variables, every host running ``processes_per_host``."""
    from smc_core.mpi.launch import parse_custom_options
    from smc_core.mpi.plugin import mpi_job

    job = mpi_job(training_env, launcher="smddp")
    level, options = split_custom_options(
        str(training_env.additional_framework_parameters.get(CUSTOM_OPTIONS_KEY) or "")
    )
    variables = {**job.variables, **smddp_variables(training_env, job.hosts)}
    if level is not None:
        variables["NCCL_DEBUG"] = level
    return dataclasses.replace(
        job,
        num_processes=job.processes_per_host * len(job.hosts),
        custom_options=parse_custom_options(options),
        variables=variables,
        style="smddp",
    )


@hookimpl(trylast=True)
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult | None:
    """With ``sagemaker_distributed_dataparallel_enabled``: mpirun with ``smddprun`` on the master,
    the job's sshd on the others; exit 2 where ``smddprun`` is not installed."""
    if not is_true(training_env.additional_framework_parameters.get(SMDDP_SWITCH)):
        return None
    if user_code.kind is EntryKind.FUNCTION:
        logger.warning(
            "%s is on, but function mode runs train() in this process: mpirun is not used.", SMDDP_SWITCH
        )
        return None
    launcher = shutil.which(LAUNCHER, path=process_env.get("PATH"))
    if launcher is None:
        raise ConfigError(MISSING)
    from smc_core.mpi.plugin import launch

    job = smddp_job(training_env)
    env = dict(process_env)
    if "NCCL_DEBUG" in job.variables:  # --NCCL_DEBUG in the job's options: what the job asked for wins
        env["NCCL_DEBUG"] = job.variables["NCCL_DEBUG"]
    return launch(training_env, user_code, env, job, launcher=(launcher,), name="SMDDP")
