"""The runner calls the four hooks in order, reports the outcome, and names a hook nobody answered."""

from __future__ import annotations

import pytest

from smc_core import hookimpl
from smc_core.errors import PluginError
from smc_core.host.plugins import get_plugin_manager
from smc_core.host.runner import main, merge_process_env, run_training

HELLO = "import sys\nprint('hello', sys.argv[1:])\n"


class Recorder:
    """Records every hook call, as a wrapper around all the other implementations."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    @hookimpl(wrapper=True)
    def load_environment(self, base_dir, environ):
        self.calls.append(("load_environment", {"base_dir": base_dir}))
        return (yield)

    @hookimpl(wrapper=True)
    def fetch_user_code(self, training_env):
        self.calls.append(("fetch_user_code", {"training_env": training_env}))
        return (yield)

    @hookimpl(wrapper=True)
    def prepare_training(self, training_env, user_code):
        self.calls.append(("prepare_training", {"training_env": training_env, "user_code": user_code}))
        return (yield)

    @hookimpl(wrapper=True)
    def invoke_train(self, training_env, user_code, process_env):
        self.calls.append(("invoke_train", {"user_code": user_code, "process_env": process_env}))
        return (yield)


def test_hooks_are_called_once_each_in_order_with_each_result_passed_on(job_dir):
    base = job_dir(code={"train.py": HELLO}, entry_point="train.py")
    recorder = Recorder()
    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=[recorder])
    result = run_training(pm, base=base, environ={"PATH": "/usr/bin:/bin"})
    assert [name for name, _ in recorder.calls] == [
        "load_environment",
        "fetch_user_code",
        "prepare_training",
        "invoke_train",
    ]
    assert result.exit_code == 0
    calls = dict(recorder.calls)
    training_env = calls["fetch_user_code"]["training_env"]
    assert calls["load_environment"]["base_dir"] == base
    assert calls["prepare_training"]["training_env"] is training_env
    assert calls["invoke_train"]["user_code"] is calls["prepare_training"]["user_code"]
    assert calls["invoke_train"]["process_env"]["SM_MODEL_DIR"] == str(base / "model")


def test_main_writes_success_and_returns_zero(job_dir):
    base = job_dir(code={"train.py": HELLO}, entry_point="train.py")
    pm = get_plugin_manager(environ={}, load_entrypoints=False)
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin"}) == 0
    assert (base / "output" / "success").exists()
    assert not (base / "output" / "failure").exists()


def test_main_keeps_the_user_exit_code_and_writes_failure(job_dir):
    base = job_dir(
        code={"train.py": "import sys\nprint('boom', file=sys.stderr)\nsys.exit(7)\n"}, entry_point="train.py"
    )
    pm = get_plugin_manager(environ={}, load_entrypoints=False)
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin"}) == 7
    failure = (base / "output" / "failure").read_text()
    assert "ExitCode 7" in failure
    assert not (base / "output" / "success").exists()


class Silent:
    @hookimpl(tryfirst=True)
    def fetch_user_code(self, training_env):
        return None


def test_a_required_hook_that_nobody_answers_is_named(job_dir):
    base = job_dir(code={"train.py": HELLO}, entry_point="train.py")
    pm = get_plugin_manager(
        environ={"SMC_DISABLE_PLUGINS": "smc_core.defaults.usercode"},
        load_entrypoints=False,
        plugins=[Silent()],
    )
    with pytest.raises(PluginError, match=r"No plugin answered fetch_user_code.*asked: .*Silent"):
        run_training(pm, base=base, environ={})
    assert main(pm, base=base, environ={}) == 3
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("PluginError: No plugin answered fetch_user_code")


def test_prepare_training_contributions_first_called_plugin_wins():
    # pluggy returns results in call order: plugins first, defaults (trylast) last.
    merged = merge_process_env(
        [{"A": "plugin"}, None, {"A": "default", "B": "default"}], {"B": "os", "C": "os"}
    )
    assert merged == {"A": "plugin", "B": "default", "C": "os"}


def test_failure_written_by_the_user_is_kept(job_dir):
    script = (
        "import os, sys\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DATA_DIR'], '..', 'failure'), 'w').write('my reason')\n"
        "sys.exit(3)\n"
    )
    base = job_dir(code={"train.py": script}, entry_point="train.py")
    pm = get_plugin_manager(environ={}, load_entrypoints=False)
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin"}) == 3
    assert (base / "output" / "failure").read_text() == "my reason"


def test_stale_failure_from_an_earlier_job_is_replaced(job_dir):
    base = job_dir(code={"train.py": "raise SystemExit(4)\n"}, entry_point="train.py")
    stale = base / "output" / "failure"
    stale.write_text("old")  # just now: a stale file is told apart by its content, not its age
    pm = get_plugin_manager(environ={}, load_entrypoints=False)
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin"}) == 4
    assert "ExitCode 4" in stale.read_text()


class IntContribution:
    @hookimpl
    def prepare_training(self, training_env, user_code):
        return {"MASTER_PORT": 7777}


def test_a_non_string_contribution_is_named(job_dir):
    base = job_dir(code={"train.py": HELLO}, entry_point="train.py")
    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=[IntContribution()])
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin"}) == 3
    failure = (base / "output" / "failure").read_text()
    assert "returned 'MASTER_PORT'=7777 (int)" in failure and "return str(value)" in failure


def test_outcome_files_of_an_earlier_run_do_not_survive_a_rerun(job_dir):
    base = job_dir(
        code={"train.py": "import os, sys\nsys.exit(int(os.environ.get('CODE', '0')))\n"},
        entry_point="train.py",
    )
    pm = get_plugin_manager(environ={}, load_entrypoints=False)
    output = base / "output"
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin", "CODE": "5"}) == 5
    assert (output / "failure").exists() and not (output / "success").exists()
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin"}) == 0
    assert (output / "success").exists() and not (output / "failure").exists()
    assert main(pm, base=base, environ={"PATH": "/usr/bin:/bin", "CODE": "6"}) == 6
    assert not (output / "success").exists() and "ExitCode 6" in (output / "failure").read_text()
