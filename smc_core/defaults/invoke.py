"""Default ``invoke_train``: run the entry point as one supervised process, or call ``train()``.

The command line comes from :func:`smc_core.usercode.entry.entry_command` (by the entry point's kind;
never through a shell). In function mode (:mod:`smc_core.launch.functions`) ``train(...)`` is called
in this process and its return value becomes ``result.model``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.base.redact import redact, secret_values
from smc_core.job.environment import TrainingEnv
from smc_core.job.exports import user_args
from smc_core.launch.limits import check_exec_limits
from smc_core.launch.process import run_process
from smc_core.launch.result import TrainingResult
from smc_core.usercode.describe import EntryKind, UserCode
from smc_core.usercode.entry import entry_command, no_entry_error


@hookimpl(trylast=True)
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult:
    """Run the entry point once with the hyperparameters as arguments, or call ``train()``."""
    args = user_args(training_env)
    if user_code.kind is EntryKind.FUNCTION:
        if not user_code.module_name:
            raise no_entry_error(training_env)
        # function mode only: every job's start imports this plugin
        from smc_core.launch.functions import run_function

        return run_function(
            training_env,
            code_dir=user_code.code_dir,
            module_name=user_code.module_name,
            process_env=process_env,
            argv=args,
        )
    if not user_code.entry_point:
        raise no_entry_error(training_env)
    command = entry_command(user_code, args, process_env)
    check_exec_limits(command, process_env, training_env.hyperparameters)
    logger.info(
        "Running %s in %s",
        redact(shlex.join(command), secret_values(process_env)),
        user_code.code_dir,
    )
    return run_process(command, env=process_env, cwd=user_code.code_dir)  # the job's policy applies
