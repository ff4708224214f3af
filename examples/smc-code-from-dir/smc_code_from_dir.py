"""Overrides one step: the user's code comes from the directory named by $SMC_CODE_FROM_DIR."""

import os
import shutil

from smc_core import describe_user_code, hookimpl


@hookimpl
def fetch_user_code(training_env):
    source = os.environ.get("SMC_CODE_FROM_DIR")
    if not source:
        return None  # not ours: the default fetch runs as usual
    shutil.copytree(source, training_env.code_dir, dirs_exist_ok=True)
    return describe_user_code(training_env, source=source)
