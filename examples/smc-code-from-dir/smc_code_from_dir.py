"""Overrides one step: the user's code comes from the directory named by $SMC_CODE_FROM_DIR."""

import os
import shutil

from smc_core import FetchError, Setting, describe_user_code, hookimpl

SOURCE_DIR = Setting.text("SMC_CODE_FROM_DIR", None, "the code's source directory", owner="smc-code-from-dir")


@hookimpl
def register_settings():
    return [SOURCE_DIR]  # declared: checked at start, listed in the settings reference


@hookimpl
def fetch_user_code(training_env):
    source = training_env.settings[SOURCE_DIR]
    if source is None:
        return None  # not ours: the default fetch runs as usual
    if not os.path.isdir(source):
        raise FetchError(f"SMC_CODE_FROM_DIR is {source!r}, which is not a directory: mount the code there.")
    shutil.copytree(source, training_env.code_dir, dirs_exist_ok=True)
    return describe_user_code(training_env, source=source)
