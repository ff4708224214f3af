"""The settings registry: declared once, parsed once from the runner's environ, documented from the
declarations, and a bad value of any setting stops the job with exit 2 naming it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smc_core import ConfigError, Setting
from smc_core.base.settings import CORE_SETTINGS, parse_settings, settings_help, settings_table
from smc_core.host.plugins import get_plugin_manager
from smc_core.host.runner import declared_settings

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
    for candidate in ("-5", "maybe", "not a name!", "70000"):
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
