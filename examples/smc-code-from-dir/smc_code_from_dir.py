"""Overrides one step: the user's code comes from the directory named by $SMC_CODE_FROM_DIR."""

import shutil

from smc_core import Setting, describe_user_code, hookimpl

CODE_FROM_DIR = Setting.text("SMC_CODE_FROM_DIR", None, "the code's directory", owner="smc-code-from-dir")


@hookimpl
def register_settings():
    return [CODE_FROM_DIR]  # declared: listed by `smc --help`, read from the job's environment


@hookimpl
def fetch_user_code(training_env):
    source = training_env.settings[CODE_FROM_DIR]
    if not source:
        return None  # not ours: the default fetch runs as usual
    shutil.copytree(source, training_env.code_dir, dirs_exist_ok=True)
    return describe_user_code(training_env, source=source)
