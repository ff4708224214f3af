"""Overrides one step: the user's code comes from the directory named by $SMC_CODE_FROM_DIR."""

import os
import shutil

from smc_core import hookimpl
from smc_core.usercode import UserCode, entry_kind, module_name


@hookimpl
def fetch_user_code(training_env):
    source = os.environ.get("SMC_CODE_FROM_DIR")
    if not source:
        return None  # not ours: the default fetch runs as usual
    shutil.copytree(source, training_env.code_dir, dirs_exist_ok=True)
    entry = training_env.user_entry_point
    kind = entry_kind(training_env.code_dir, entry)
    return UserCode(training_env.code_dir, entry, kind, module_name(entry), source=source)
