"""The settings registry: declared once, parsed once from the runner's environ, documented from the
declarations, and a bad value of any setting stops the job with exit 2 naming it."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import pytest

from smc_core import (
    GRACE_PERIOD,
    ConfigError,
    PluginError,
    Setting,
    TrainingEnv,
    create_environment,
    hookimpl,
)
from smc_core.base.settings import (
    CORE_SETTINGS,
    DISABLE_PLUGINS,
    SettingsRegistry,
    parse_settings,
    settings_help,
    settings_table,
)
from smc_core.host.plugins import get_plugin_manager
from smc_core.host.runner import declared_settings, load_settings, main

from .helpers import failure_text, run_train

ROOT = Path(__file__).resolve().parents[1]
SMC = str(Path(sys.executable).with_name("smc"))


def installed_settings() -> list[Setting[Any]]:
    """The core's settings and those of every plugin installed here (smc-pytorch's in the dev venv)."""
    declared = declared_settings(get_plugin_manager(environ={}))
    return list({s.name: s for s in [*CORE_SETTINGS, *declared]}.values())


def bad_value(setting: Setting[Any]) -> str | None:
    """A value ``setting`` refuses (a negative number, a word for a switch, a name with a space ...),
    or None when it accepts any text."""
    for candidate in ("-5", "maybe", "not a name!", "70000", "step ("):  # the last: not a regex
        try:
            setting.parse(candidate)
        except (ValueError, TypeError):
            return candidate
    return None


def test_the_readme_table_is_the_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings table:[^\n]*-->\n(.*?)<!-- end of settings table -->", readme, re.S)
    assert match, "README.md lost its settings-table markers"
    assert match.group(1) == settings_table(CORE_SETTINGS), (
        "README.md's settings table differs from smc_core/base/settings.py: replace it with "
        "settings_table(CORE_SETTINGS)"
    )


def test_smc_help_lists_every_declared_setting() -> None:
    done = subprocess.run([SMC, "--help"], capture_output=True, text=True, timeout=60, check=True)
    settings = installed_settings()
    assert settings_help(settings) in done.stdout
    assert "exit codes:" in done.stdout


def test_the_help_text_has_each_setting_once_with_its_default() -> None:
    text = settings_help(CORE_SETTINGS)
    for setting in CORE_SETTINGS:
        assert text.count(f"  {setting.name}\n") == 1
        assert f"default {setting.default_text})" in " ".join(text.split())


@pytest.mark.parametrize("setting", installed_settings(), ids=lambda s: s.name)
def test_a_bad_value_exits_2_naming_the_setting(setting: Setting[Any], job_dir: Callable[..., Path]) -> None:
    value = bad_value(setting)
    if value is None:
        pytest.skip(f"{setting.name} accepts any text: no value is bad")
    base = job_dir(entry_point="train.py", code={"train.py": "print('RAN')\n"})
    done = run_train(base, env={setting.name: value})
    assert done.returncode == 2, done.stderr
    assert "RAN" not in done.stdout  # stopped at start, before any code ran
    text = failure_text(base)
    assert text.startswith("ConfigError: ")
    assert f"{setting.name} is {value!r}" in text and setting.accepted in text


@pytest.mark.parametrize("setting", CORE_SETTINGS, ids=lambda s: s.name)
def test_a_bad_value_is_refused_whether_or_not_the_job_uses_it(setting: Setting[Any]) -> None:
    value = bad_value(setting)
    if value is None:
        pytest.skip(f"{setting.name} accepts any text")
    with pytest.raises(ConfigError, match=re.escape(f"{setting.name} is {value!r}")):
        parse_settings({setting.name: value})


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"SMC_GRACE_PERIOD": "-1", "SMC_INSTALLER": "conda", "SMC_BOOL_FLAGS": "perhaps"})
    lines = info.value.message.splitlines()
    assert [line.split(" is ")[0].split()[-1] for line in lines] == [
        "SMC_INSTALLER",
        "SMC_BOOL_FLAGS",
        "SMC_GRACE_PERIOD",
    ]


def test_values_come_from_the_given_environ_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMC_GRACE_PERIOD", "not a number")
    assert parse_settings({"SMC_GRACE_PERIOD": "5"})["SMC_GRACE_PERIOD"] == 5.0
    assert parse_settings({})["SMC_GRACE_PERIOD"] == 100.0


def _reads_of_smc_variables(path: Path) -> list[str]:
    """``environ.get("SMC_...")``, ``os.getenv("SMC_...")`` and ``environ["SMC_..."]`` reads in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr in ("get", "getenv", "pop", "setdefault"):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith("SMC_"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} reads {key.value}")
    return found


def test_no_setting_is_read_past_the_registry() -> None:
    sources = [*ROOT.glob("smc_core/**/*.py"), *ROOT.glob("plugins/*/smc_*/**/*.py")]
    skipped = {ROOT / "smc_core" / "testing"}  # test helpers set and clear variables for the jobs they run
    reads = [
        read
        for path in sources
        if not any(s in path.parents for s in skipped)
        for read in _reads_of_smc_variables(path)
    ]
    assert not reads, "read these through training_env.settings[SETTING] instead: " + "; ".join(reads)


# --- the registry's discipline: one declaration per name, frozen once parsed, no undeclared read ------
class Declares:
    """A plugin that declares ``settings``; ``reads``, when given, is read in ``prepare_training``."""

    def __init__(self, name: str, *settings: Setting[Any], reads: Setting[Any] | None = None) -> None:
        self.__name__ = name
        self.settings = list(settings)
        self.reads = reads

    @hookimpl
    def register_settings(self) -> list[Setting[Any]]:
        return self.settings

    @hookimpl
    def prepare_training(self, training_env: Any, user_code: Any) -> None:
        if self.reads is not None:
            training_env.settings[self.reads]


WORKERS_A = Setting.integer("SMC_WORKERS", 1, "worker processes of plugin A", minimum=1, owner="smc-a")
WORKERS_B = Setting.integer("SMC_WORKERS", 2, "worker processes of plugin B", minimum=1, owner="smc-b")


def test_a_name_declared_twice_is_an_error_naming_both_owners() -> None:
    registry = SettingsRegistry({})
    registry.declare([WORKERS_A], by="a")
    with pytest.raises(PluginError) as info:
        registry.declare([WORKERS_B], by="b")
    message = info.value.message
    assert "SMC_WORKERS is declared twice: by smc-a (plugin a)" in message
    assert "and by smc-b (plugin b)" in message
    assert "worker processes of plugin A" in message and "worker processes of plugin B" in message
    with pytest.raises(PluginError, match="SMC_GRACE_PERIOD is declared twice: by smc-core"):
        parse_settings({}, [Setting.seconds("SMC_GRACE_PERIOD", 5.0, "mine", owner="smc-mine")])


def test_the_same_declaration_twice_is_one() -> None:
    settings = parse_settings({"SMC_WORKERS": "3"}, [WORKERS_A, WORKERS_A, GRACE_PERIOD])
    assert settings[WORKERS_A] == 3
    assert [s.name for s in settings.declared].count("SMC_WORKERS") == 1


def test_a_job_whose_plugins_declare_one_name_twice_exits_3_naming_both(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", code={"train.py": "print('RAN')\n"})
    plugins = [Declares("plugin_a", WORKERS_A), Declares("plugin_b", WORKERS_B)]
    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=plugins)
    assert main(pm, base=base, environ={"PATH": os.environ["PATH"]}) == 3
    text = failure_text(base)
    assert text.startswith("PluginError: The setting SMC_WORKERS is declared twice: by smc-")
    assert "(plugin plugin_a)" in text and "(plugin plugin_b)" in text


def test_reading_an_undeclared_setting_is_an_error() -> None:
    settings = parse_settings({"SMC_WORKERS": "3"})
    with pytest.raises(PluginError) as info:
        settings[WORKERS_A]  # in the environment, but declared by nobody: never parsed, never read
    assert "The setting SMC_WORKERS is read, but nothing declared it" in info.value.message
    assert "register_settings" in info.value.message
    with pytest.raises(PluginError, match=r"SMC_GRACE_PERIODS is read.* Did you mean 'SMC_GRACE_PERIOD'\?"):
        settings["SMC_GRACE_PERIODS"]
    with pytest.raises(PluginError, match="SMC_WORKERS is read"):
        settings.is_set(WORKERS_A)
    assert WORKERS_A not in settings and GRACE_PERIOD in settings and "SMC_GRACE_PERIOD" in settings
    other = Setting.seconds("SMC_GRACE_PERIOD", 1.0, "a look-alike", owner="smc-other")
    with pytest.raises(PluginError, match="read as declared by smc-other, but the job's settings declare it"):
        settings[other]


def test_a_plugin_reading_an_undeclared_setting_fails_the_job_naming_it(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", code={"train.py": "print('RAN')\n"})
    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=[Declares("reader", reads=WORKERS_A)])
    assert main(pm, base=base, environ={"PATH": os.environ["PATH"], "SMC_WORKERS": "3"}) == 3
    assert failure_text(base).startswith(
        "PluginError: The setting SMC_WORKERS is read, but nothing declared it"
    )


def test_the_registry_is_frozen_once_parsed() -> None:
    registry = SettingsRegistry({"SMC_WORKERS": "4"})
    registry.declare([WORKERS_A])
    settings = registry.freeze()
    assert settings[WORKERS_A] == 4 and registry.freeze() is settings
    with pytest.raises(PluginError, match="parsed and frozen: nothing more can be declared"):
        registry.declare([Setting.switch("SMC_LATE", False, "declared too late")])
    with pytest.raises(TypeError):
        settings["SMC_WORKERS"] = 5  # type: ignore[index]


def test_plugin_loading_reads_the_one_parse_and_reports_every_bad_value() -> None:
    registry = SettingsRegistry({"SMC_ADAPTER": "two words", "SMC_GRACE_PERIOD": "-1", "SMC_PLUGINS": ""})
    with pytest.raises(ConfigError) as info:
        get_plugin_manager(registry=registry, load_entrypoints=False)
    assert [line.split(" is ")[0].split()[-1] for line in info.value.message.splitlines()] == [
        "SMC_ADAPTER",
        "SMC_GRACE_PERIOD",
    ]
    good = SettingsRegistry({"SMC_DISABLE_PLUGINS": "smc_core.defaults.intermediate"})
    pm = get_plugin_manager(registry=good, load_entrypoints=False)
    assert pm.is_blocked("smc_core.defaults.intermediate")
    assert load_settings(pm, good)[DISABLE_PLUGINS] == ("smc_core.defaults.intermediate",)


def test_a_training_env_carries_the_settings_it_was_given(job_dir: Callable[..., Path]) -> None:
    assert "settings" in {
        f.name for f in dataclasses.fields(TrainingEnv) if f.kw_only and f.default is MISSING
    }
    base = job_dir(entry_point="train.py", code={"train.py": "print('RAN')\n"})

    class ForgetsSettings:
        @hookimpl
        def load_environment(self, base_dir: Path, environ: Any, settings: Any) -> Any:
            return create_environment(base_dir, environ)  # parses the core's alone: not the job's

    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=[ForgetsSettings()])
    assert main(pm, base=base, environ={"PATH": os.environ["PATH"]}) == 3
    text = failure_text(base)
    assert text.startswith("PluginError: A load_environment implementation returned a TrainingEnv without")
    assert "settings=settings" in text
