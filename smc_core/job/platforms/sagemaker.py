"""SageMaker: the job directory as the container contract lays it out (the default platform), and the
SageMaker Python SDK v3's ``ModelTrainer`` layouts in it (:mod:`smc_core.job.platforms.modeltrainer`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smc_core.base.settings import PLATFORM, SCRIPT_ARGS, Settings
from smc_core.errors import ConfigError
from smc_core.job.hyperparameters import load_hyperparameters
from smc_core.job.paths import JobPaths, job_paths
from smc_core.job.platforms.detect import sagemaker_job_files
from smc_core.job.platforms.facts import PlatformFacts
from smc_core.job.platforms.modeltrainer import (
    ModelTrainerJob,
    merged_framework_parameters,
    read_model_trainer_job,
)

__all__ = ["model_trainer_facts", "sagemaker_facts"]


def sagemaker_facts(base: Path, environ: Mapping[str, str], settings: Settings) -> PlatformFacts:
    """SageMaker's record: the job directory ``base/input/config`` says everything, so the record adds
    nothing to it (:func:`~smc_core.job.environment.create_environment` reads the job directory); a
    ModelTrainer layout (an ``sm_drivers`` channel holding ``sourcecode.json``) adds what
    :func:`model_trainer_facts` reads.

    SageMaker runs plain ``train``: the script's arguments come from ``hyperparameters.json``, so
    arguments given to ``train`` are refused, except on a ModelTrainer layout, where they are
    ``SourceCode(command="train", args=[...])``'s. With ``SMC_PLATFORM=sagemaker`` the job directory
    must hold ``hyperparameters.json`` or ``resourceconfig.json``.

    :raises ConfigError: arguments given to ``train``, a pinned SageMaker without its job directory,
        or a ModelTrainer layout that cannot run.
    """
    paths = job_paths(base, environ)
    job = read_model_trainer_job(paths, environ)
    args = settings[SCRIPT_ARGS]
    if args and job is None:
        raise ConfigError(
            f"train got the arguments {list(args)}, which it does not define. On SageMaker the platform runs "
            "plain `train` and the script's arguments come from hyperparameters.json (the estimator's "
            "hyperparameters=). On Kubernetes or Vertex AI the container's arguments go to the script: set "
            "SMC_PLATFORM=kubeflow or vertex if this is one. See `train --help`."
        )
    if settings[PLATFORM] == "sagemaker" and not sagemaker_job_files(base):
        raise ConfigError(
            f"SMC_PLATFORM=sagemaker, but the job directory has neither {paths.hyperparameters_file} nor "
            f"{paths.resource_config_file}. Set SAGEMAKER_BASE_DIR to the job directory, or unset "
            "SMC_PLATFORM to recognise the platform."
        )
    if job is not None:
        return model_trainer_facts(paths, environ, settings, job)
    return PlatformFacts(name="sagemaker")


def model_trainer_facts(
    paths: JobPaths, environ: Mapping[str, str], settings: Settings, job: ModelTrainerJob
) -> PlatformFacts:
    """The record of a ModelTrainer job: the code in the ``code`` channel (tuning jobs: fetched from
    ``sagemaker_submit_directory`` as usual), the entry point from ``sourcecode.json``,
    ``distributed.json`` as the launch switch it stands for, ``train``'s arguments (``SourceCode.args``)
    as the script's.

    :raises ConfigError: the layout names no entry point, or asks for two launches at once.
    """
    hyperparameters = merged_framework_parameters(job, load_hyperparameters(paths.base_dir))
    if not (environ.get("SAGEMAKER_PROGRAM") or job.entry_script or hyperparameters.get("sagemaker_program")):
        raise ConfigError(
            f"{job.source_code_file}: 'entry_script' is null, so smc has no script to run: "
            f"SourceCode(command={job.source_code.get('command')!r}) ran train, which runs SourceCode's "
            'entry_script. Give it too: SourceCode(source_dir=..., entry_script="train.py", command="train") '
            "(the SDK warns that command wins; it does, and train runs the entry script)."
        )
    args = settings[SCRIPT_ARGS]
    return PlatformFacts(
        name="sagemaker",
        hyperparameters=hyperparameters,
        code_dir=job.code_channel,
        entry_point=job.entry_script,
        model_trainer=job,
        script_args=tuple(args) if args else None,
    )
