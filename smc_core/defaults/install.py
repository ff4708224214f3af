"""Default ``prepare_training`` part one: install what the user's code needs.

A package (``setup.py`` / ``pyproject.toml``) is installed with its ``requirements.txt``; otherwise
``requirements.txt`` alone, when there is one. See :mod:`smc_core.usercode.install` for the installer (uv or
pip) and the settings it honours.
"""

from __future__ import annotations

from smc_core import hookimpl
from smc_core.base.settings import INSTALL_TIMEOUT, INSTALLER
from smc_core.job.environment import TrainingEnv
from smc_core.usercode.describe import EntryKind, UserCode, is_package
from smc_core.usercode.install import install_package, install_requirements


@hookimpl(trylast=True)
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> None:
    """Install the package, or ``requirements.txt``, from the code dir into this interpreter.

    The installer is ``training_env.settings[INSTALLER]`` (``SMC_INSTALLER``); the index settings
    (``PIP_*``, ``CA_REPOSITORY_ARN``) are read from ``training_env.environ``, the environment the job
    was loaded from, which the installer also runs with."""
    code_dir = user_code.code_dir
    installer = training_env.settings[INSTALLER]
    timeout = training_env.settings[INSTALL_TIMEOUT]
    if user_code.kind is EntryKind.MODULE or (user_code.kind is EntryKind.FUNCTION and is_package(code_dir)):
        install_package(code_dir, environ=training_env.environ, installer=installer, timeout=timeout)
    else:
        install_requirements(code_dir, environ=training_env.environ, installer=installer, timeout=timeout)
    return None
