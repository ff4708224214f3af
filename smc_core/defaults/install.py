"""Default ``prepare_training`` part one: install what the user's code needs.

A package (``setup.py`` / ``pyproject.toml``) is installed with its ``requirements.txt``; otherwise
``requirements.txt`` alone, when there is one. On a SageMaker SDK v3 ``ModelTrainer`` layout, the
requirements file ``sourcecode.json`` names, once: not again when the SDK's ``sm_train.sh`` installed
it before ``train`` started. See :mod:`smc_core.usercode.install` for the installer (uv or pip) and the
settings it honours.
"""

from __future__ import annotations

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.base.settings import INSTALL_TIMEOUT, INSTALLER
from smc_core.errors import ConfigError
from smc_core.job.environment import TrainingEnv
from smc_core.job.platforms.modeltrainer import ModelTrainerJob
from smc_core.usercode.describe import EntryKind, UserCode, is_package
from smc_core.usercode.install import install_package, install_requirements
from smc_core.usercode.warmpool import warm_pool


@hookimpl(trylast=True)
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> None:
    """Install the package, or ``requirements.txt``, from the code dir into this interpreter.

    The installer is ``training_env.settings[INSTALLER]`` (``SMC_INSTALLER``); the index settings
    (``PIP_*``, ``CA_REPOSITORY_ARN``) are read from ``training_env.environ``, the environment the job
    was loaded from, which the installer also runs with."""
    code_dir = user_code.code_dir
    installer = training_env.settings[INSTALLER]
    timeout = training_env.settings[INSTALL_TIMEOUT]
    package = False
    requirements: str | None = "requirements.txt"
    job = training_env.model_trainer
    if job is not None:
        requirements = model_trainer_requirements(job, user_code)
    elif user_code.kind is EntryKind.MODULE or (
        user_code.kind is EntryKind.FUNCTION and is_package(code_dir)
    ):
        package = True
    if not package and (requirements is None or not (code_dir / requirements).is_file()):
        return None
    environ = dict(training_env.environ)
    cache = warm_pool(training_env)
    if cache is not None:  # uv's and pip's caches kept for the next job on the warm pool
        environ.update(cache.installer_environ(environ))
        cache.forget_installers()  # sealed again only once the install succeeded
    if package:
        install_package(code_dir, environ=environ, installer=installer, timeout=timeout)
    else:
        assert requirements is not None
        install_requirements(
            code_dir, environ=environ, installer=installer, timeout=timeout, requirements=requirements
        )
    if cache is not None:
        cache.seal_installers()
    return None


def model_trainer_requirements(job: ModelTrainerJob, user_code: UserCode) -> str | None:
    """The requirements file smc installs for a ModelTrainer job: ``SourceCode.requirements``, unless
    the job names none (the SDK installs nothing then either) or ``sm_train.sh`` installed it already.

    :raises ConfigError: the file it names is not in the code dir.
    """
    if job.requirements is None:
        return None
    if job.sdk_script_ran:
        logger.info(
            "%s was installed by the SDK's sm_train.sh before train started: not installed again.",
            job.requirements,
        )
        return None
    if not (user_code.code_dir / job.requirements).is_file():
        raise ConfigError(
            f"{job.source_code_file}: 'requirements' is {job.requirements!r}, which is not a file in the "
            f"code dir {user_code.code_dir}. Give SourceCode(requirements=...) relative to the source dir, "
            "or leave it out."
        )
    return job.requirements
