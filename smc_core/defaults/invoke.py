"""Default ``invoke_train``: run the entry point as one supervised process."""

from __future__ import annotations

from collections.abc import Mapping

from smc_core import hookimpl
from smc_core.environment import TrainingEnv
from smc_core.errors import ConfigError
from smc_core.exports import user_args
from smc_core.process import TrainingResult, python_executable, run_process
from smc_core.usercode import EntryKind, UserCode


def entry_command(user_code: UserCode, args: list[str]) -> list[str]:
    """The command line that runs ``user_code``'s entry point with ``args``."""
    entry = user_code.entry_point
    if entry is None:
        raise ConfigError(
            "No entry point: the job names none. Set the hyperparameter sagemaker_program "
            '(e.g. "train.py") or the environment variable SAGEMAKER_PROGRAM.'
        )
    if user_code.kind is EntryKind.PYTHON:
        return [python_executable(), entry, *args]
    if user_code.kind is EntryKind.MODULE:
        return [python_executable(), "-m", user_code.module_name or entry, *args]
    if user_code.kind is EntryKind.SHELL:
        return ["/bin/sh", entry, *args]
    return [str(user_code.code_dir / entry), *args]


@hookimpl(trylast=True)
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult:
    """Run the entry point once with the hyperparameters as arguments."""
    return run_process(entry_command(user_code, user_args(training_env)), env=process_env, cwd=user_code.code_dir)
