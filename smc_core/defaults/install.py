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
    package = user_code.kind is EntryKind.MODULE or (
        user_code.kind is EntryKind.FUNCTION and is_package(code_dir)
    )
    if not package and not (code_dir / "requirements.txt").is_file():
        return None
    environ = dict(training_env.environ)
    cache = warm_pool(training_env)
    if cache is not None:  # uv's and pip's caches kept for the next job on the warm pool
        environ.update(cache.installer_environ(environ))
        cache.forget_installers()  # sealed again only once the install succeeded
    if package:
        install_package(code_dir, environ=environ, installer=installer, timeout=timeout)
    else:
        install_requirements(code_dir, environ=environ, installer=installer, timeout=timeout)
    if cache is not None:
        cache.seal_installers()
    return None
