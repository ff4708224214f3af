"""Default ``load_environment`` for Kubeflow pods: Trainer v2 TrainJobs, PyTorchJobs and TFJobs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.base.settings import PLATFORM, Settings
from smc_core.job.environment import TrainingEnv, create_environment
from smc_core.job.platforms.detect import chosen_platform, kubeflow_variables, require_pinned_variables
from smc_core.job.platforms.kubeflow import kubeflow_facts


@hookimpl(trylast=True)
def load_environment(base_dir: Path, environ: Mapping[str, str], settings: Settings) -> TrainingEnv | None:
    """On Kubeflow (``SMC_PLATFORM=kubeflow``, or its variables set): the pod's variables as a
    :class:`TrainingEnv`: :func:`~smc_core.job.platforms.kubeflow.kubeflow_facts`'s record, read by
    :func:`~smc_core.job.environment.create_environment`; None elsewhere.
    """
    platform, reason = chosen_platform(base_dir, environ, settings)
    if platform != "kubeflow":
        return None
    if settings[PLATFORM]:
        require_pinned_variables(
            "kubeflow",
            kubeflow_variables(environ),
            "PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR (Trainer v2), MASTER_ADDR, WORLD_SIZE, RANK "
            "(PyTorchJob), JAX_NUM_PROCESSES, JAX_PROCESS_ID, JAX_COORDINATOR_ADDRESS, or TF_CONFIG (TFJob)",
        )
    logger.info("Platform: Kubeflow (%s).", reason)
    facts = kubeflow_facts(base_dir, environ, settings)
    return create_environment(base_dir, environ, settings=settings, platform=facts)
