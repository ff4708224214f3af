"""A job's log says what ran (plugins, host layout, command, the user's environment) and never a secret;
an exception a plugin raises is the plugin's failure (exit 3), one smc raises is smc's (exit 1)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smc_core import UserCode, hookimpl
from smc_core.host.plugins import get_plugin_manager
from smc_core.host.runner import main

from .helpers import failure_text, run_train

SECRET_KEY = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token-0123456789"
HP_SECRET = "hp-secret-98765"
PLUGIN_TOKEN = "tok-abcdef-123456"

LOUD_PLUGIN = f"""
from smc_core import hookimpl

@hookimpl
def prepare_training(training_env, user_code):
    return {{"EXTRA_VAR": "visible", "MY_SERVICE_TOKEN": {PLUGIN_TOKEN!r}}}
"""


def test_a_successful_job_says_what_ran_and_no_secret(job_dir: Callable[..., Path], tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "loud_plugin.py").write_text(LOUD_PLUGIN)
    base = job_dir(
        entry_point="train.py",
        hyperparameters={"epochs": 2, "api_key": HP_SECRET},
        code={"train.py": "print('trained')\n"},
    )
    env = {
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "SMC_PLUGINS": "loud_plugin",
        "PYTHONPATH": str(plugins),
    }
    done = run_train(base, env=env)
    assert done.returncode == 0, done.stderr
    log = done.stderr
    # the adapter and plugins, with where they come from
    assert "Adapter: " in log and "loud_plugin (SMC_PLUGINS, loud_plugin)" in log
    # the host layout
    assert "Host algo-1 (rank 0 of 1; hosts algo-1; master algo-1)" in log
    # the exact command line, before and after the run
    command = f"{sys.executable} train.py --api_key <redacted> --epochs 2"
    assert f"Running {command} in {base / 'code'}" in log
    assert f"Ran command: {command}" in log
    # the environment the user's process got: SM_* and the plugins' additions
    assert f"SM_MODEL_DIR={base / 'model'}" in log
    assert "SM_USER_ARGS=" in log and "EXTRA_VAR=visible" in log
    assert "MY_SERVICE_TOKEN=<redacted>" in log and "SM_HP_API_KEY=<redacted>" in log
    # never a secret, wherever it would appear
    for secret in (SECRET_KEY, SESSION_TOKEN, HP_SECRET, PLUGIN_TOKEN):
        assert secret not in log, secret
    assert "AWS_SECRET_ACCESS_KEY" not in log  # inherited, not set by smc: counted, not listed
    assert "inherited from smc's own environment" in log


class Crashes:
    @hookimpl
    def prepare_training(self, training_env: Any, user_code: Any) -> None:
        raise RuntimeError("the plugin's own bug")


def test_an_exception_a_plugin_raises_exits_3_naming_it(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", code={"train.py": "print('trained')\n"})
    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=[Crashes()])
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin"}) == 3
    text = failure_text(base)
    assert text.startswith("PluginError: The plugin Crashes-0 raised RuntimeError: the plugin's own bug")
    assert "ExitCode 3" in text


class BadUserCode:
    """Answers fetch_user_code with a code dir that is not a Path: smc's own code then fails on it."""

    @hookimpl
    def fetch_user_code(self, training_env: Any) -> UserCode:
        return UserCode(code_dir=str(training_env.code_dir), entry_point="train.py", kind="python")  # type: ignore[arg-type]


def test_an_exception_raised_in_smcs_own_code_exits_1(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", code={"train.py": "print('trained')\n"})
    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=[BadUserCode()])
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin"}) == 1
    assert failure_text(base).startswith("InternalError: internal error in smc or a plugin: TypeError")


def test_secrets_are_scrubbed_also_where_json_escapes_them() -> None:
    from smc_core.host.summary import environment_lines

    secret = 'pa"ss\\word-123'
    process_env = {"DB_PASSWORD": secret, "SM_HPS": '{"db":"pa\\"ss\\\\word-123"}', "HOME": "/root"}
    lines = environment_lines(process_env, {"HOME": "/root"})
    assert lines == ["DB_PASSWORD=<redacted>", 'SM_HPS={"db":"<redacted>"}']
