"""SageMaker: the job directory as the container contract lays it out (the default platform)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smc_core.base.settings import PLATFORM, SCRIPT_ARGS, Settings
from smc_core.errors import ConfigError
from smc_core.job.paths import JobPaths
from smc_core.job.platforms.detect import sagemaker_job_files
from smc_core.job.platforms.facts import PlatformFacts

__all__ = ["sagemaker_facts"]


def sagemaker_facts(base: Path, environ: Mapping[str, str], settings: Settings) -> PlatformFacts:
    """SageMaker's record: the job directory ``base/input/config`` says everything, so the record adds
    nothing to it (:func:`~smc_core.job.environment.create_environment` reads the job directory).

    SageMaker runs plain ``train``: the script's arguments come from ``hyperparameters.json``, so
    arguments given to ``train`` are refused. With ``SMC_PLATFORM=sagemaker`` the job directory must
    hold ``hyperparameters.json`` or ``resourceconfig.json``.

    :param environ: the process environment (the same for every reader; SageMaker's layout needs none of it).
    :raises ConfigError: arguments given to ``train``, or a pinned SageMaker without its job directory.
    """
    args = settings[SCRIPT_ARGS]
    if args:
        raise ConfigError(
            f"train got the arguments {list(args)}, which it does not define. On SageMaker the platform runs "
            "plain `train` and the script's arguments come from hyperparameters.json (the estimator's "
            "hyperparameters=). On Kubernetes or Vertex AI the container's arguments go to the script: set "
            "SMC_PLATFORM=kubeflow or vertex if this is one. See `train --help`."
        )
    if settings[PLATFORM] == "sagemaker" and not sagemaker_job_files(base):
        paths = JobPaths(base)
        raise ConfigError(
            f"SMC_PLATFORM=sagemaker, but the job directory has neither {paths.hyperparameters_file} nor "
            f"{paths.resource_config_file}. Set SAGEMAKER_BASE_DIR to the job directory, or unset "
            "SMC_PLATFORM to recognise the platform."
        )
    return PlatformFacts(name="sagemaker")
