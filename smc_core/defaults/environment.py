"""Default ``load_environment`` for SageMaker: the job directory as the container contract lays it out.

Every platform reader asks :func:`~smc_core.job.platforms.detect.chosen_platform` (``SMC_PLATFORM``,
else recognised from the environment) and answers only for its own platform; this one is the default
when nothing else matches. The readers for Kubeflow and Vertex AI are the sibling default plugins
:mod:`smc_core.defaults.kubeflow` and :mod:`smc_core.defaults.vertex`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.base.settings import Settings
from smc_core.job.environment import TrainingEnv, create_environment
from smc_core.job.platforms.detect import chosen_platform
from smc_core.job.platforms.sagemaker import sagemaker_facts


@hookimpl(trylast=True)
def load_environment(base_dir: Path, environ: Mapping[str, str], settings: Settings) -> TrainingEnv | None:
    """On SageMaker (the default platform): read ``base_dir/input/config`` and ``environ``.

    Hyperparameters JSON-decoded with reserved keys split off, hosts and instance groups checked,
    channel directories checked, CPUs (affinity, cgroup quota), GPUs (``nvidia-smi``) and Neuron
    cores counted. Bad input raises :class:`~smc_core.errors.ConfigError`. None on another platform.
    """
    platform, reason = chosen_platform(base_dir, environ, settings)
    if platform != "sagemaker":
        return None
    logger.info("Platform: SageMaker (%s).", reason)
    facts = sagemaker_facts(base_dir, environ, settings)
    job = facts.model_trainer
    if job is not None:
        logger.info(
            "A SageMaker Python SDK v3 ModelTrainer layout (%s exists): %s.",
            job.source_code_file,
            job.describe(),
        )
    return create_environment(base_dir, environ, settings=settings, platform=facts)
