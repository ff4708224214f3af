"""Plugin discovery through really installed distributions: adapters, plugins, SMC_* switches."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from smc_core.errors import PluginError
from smc_core.host.plugins import hook_names, select_adapter

from .helpers import run_smc, write_fake_dist

ADAPTER_MODULE = """
from smc_core import hookimpl

@hookimpl
def prepare_training(training_env, user_code):
    return {{"FAKE_ADAPTER": "{name}"}}
"""


def fake_adapter(site: Path, name: str) -> Path:
    return write_fake_dist(
        site,
        f"smc-{name}",
        "9.8.7",
        {"smc.adapters": {name: f"smc_fake_{name}"}},
        {f"smc_fake_{name}": ADAPTER_MODULE.format(name=name)},
    )


def plugins_json(**kwargs) -> dict:
    proc = run_smc("smc", "plugins", "--json", **kwargs)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def first_impl(report: dict, hook: str) -> str:
    return next(name for name in report["hooks"][hook] if not name.endswith("(wrapper)"))


def entry_points_on(site: Path, group: str) -> list[metadata.EntryPoint]:
    return [
        ep
        for dist in metadata.distributions(path=[str(site)])
        for ep in dist.entry_points
        if ep.group == group
    ]


# --- adapter selection, every case -------------------------------------------------------------


def test_no_adapter_installed_means_core_alone(tmp_path):
    assert select_adapter(entry_points_on(tmp_path, "smc.adapters"), None) is None


def test_the_only_installed_adapter_is_loaded(tmp_path):
    chosen = select_adapter(entry_points_on(fake_adapter(tmp_path, "alpha"), "smc.adapters"), None)
    assert chosen is not None and chosen.name == "alpha"


def test_several_adapters_and_none_pinned_is_an_error_listing_them(tmp_path):
    fake_adapter(tmp_path, "alpha")
    fake_adapter(tmp_path, "beta")
    with pytest.raises(PluginError, match=r"Several adapters are installed \(alpha, beta\).*SMC_ADAPTER"):
        select_adapter(entry_points_on(tmp_path, "smc.adapters"), None)


def test_pinned_adapter_not_installed_lists_what_is(tmp_path):
    fake_adapter(tmp_path, "alpha")
    with pytest.raises(PluginError, match=r"SMC_ADAPTER='gamma'.*installed adapters: alpha"):
        select_adapter(entry_points_on(tmp_path, "smc.adapters"), "gamma")


def test_pinned_adapter_is_loaded_among_several_end_to_end(tmp_path):
    site = fake_adapter(fake_adapter(tmp_path, "alpha"), "beta")
    report = plugins_json(pythonpath=site, env={"SMC_ADAPTER": "beta"})
    adapters = [p for p in report["plugins"] if p["origin"] == "adapter"]
    assert adapters == [
        {
            "name": "beta",
            "origin": "adapter",
            "module": "smc_fake_beta",
            "distribution": "smc-beta",
            "version": "9.8.7",
        }
    ]
    assert first_impl(report, "prepare_training") == "beta"


def test_several_adapters_unpinned_fails_the_job_with_a_failure_file(tmp_path, job_dir):
    site = fake_adapter(fake_adapter(tmp_path / "site", "alpha"), "beta")
    base = job_dir(code={"train.py": "print('never')"}, entry_point="train.py")
    proc = run_smc("train", pythonpath=site, env={"SAGEMAKER_BASE_DIR": str(base)})
    assert proc.returncode == 3
    assert "never" not in proc.stdout
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("PluginError: Several adapters are installed")
    assert "alpha" in failure and "beta" in failure


def test_disabling_an_adapter_removes_it_from_the_choice(tmp_path):
    site = fake_adapter(tmp_path, "alpha")
    report = plugins_json(pythonpath=site, env={"SMC_DISABLE_PLUGINS": "alpha", "SMC_ADAPTER": ""})
    names = [p["name"] for p in report["plugins"] if p["origin"] == "adapter"]
    assert "alpha" not in names


# --- general plugins, SMC_PLUGINS, SMC_DISABLE_PLUGINS --------------------------------------------


def test_installed_plugin_is_listed_with_distribution_and_version(recorder_dist):
    report = plugins_json(pythonpath=recorder_dist)
    entry = next(p for p in report["plugins"] if p["name"] == "recorder")
    assert entry == {
        "name": "recorder",
        "origin": "plugin",
        "module": "smc_recorder",
        "distribution": "smc-recorder",
        "version": "1.2.3",
    }
    for hook in hook_names():
        impls = report["hooks"][hook]
        defaults = [i for i in impls if i.startswith("smc_core.defaults.") and "(wrapper)" not in i]
        assert "recorder" in impls
        if defaults:  # the plugin is called before the defaults
            assert impls.index("recorder") < impls.index(defaults[0])


def test_smc_disable_plugins_blocks_an_installed_plugin(recorder_dist):
    report = plugins_json(pythonpath=recorder_dist, env={"SMC_DISABLE_PLUGINS": "recorder"})
    assert "recorder" not in [p["name"] for p in report["plugins"]]


def test_smc_plugins_registers_a_module_without_packaging(tmp_path):
    (tmp_path / "my_override.py").write_text(ADAPTER_MODULE.format(name="mine"))
    report = plugins_json(pythonpath=tmp_path, env={"SMC_PLUGINS": "my_override"})
    entry = next(p for p in report["plugins"] if p["name"] == "my_override")
    assert entry["origin"] == "SMC_PLUGINS"
    assert first_impl(report, "prepare_training") == "my_override"


def test_smc_plugins_naming_a_missing_module_is_a_clear_error():
    proc = run_smc("smc", "plugins", env={"SMC_PLUGINS": "no_such_module_xyz"})
    assert proc.returncode == 3
    assert "SMC_PLUGINS names 'no_such_module_xyz', which failed to import" in proc.stderr


def test_a_misspelt_hook_name_fails_at_start_up(tmp_path, job_dir):
    (tmp_path / "typo_plugin.py").write_text(
        "from smc_core import hookimpl\n\n"
        "@hookimpl\ndef prepare_trainig(training_env, user_code):\n    return {}\n"
    )
    base = job_dir(code={"train.py": "print('never ran')"}, entry_point="train.py")
    proc = run_smc(
        "train", pythonpath=tmp_path, env={"SAGEMAKER_BASE_DIR": str(base), "SMC_PLUGINS": "typo_plugin"}
    )
    assert proc.returncode == 3
    assert "never ran" not in proc.stdout
    failure = (base / "output" / "failure").read_text()
    assert "prepare_trainig" in failure and "prepare_training" in failure


def test_a_plugin_that_fails_to_load_names_entry_point_distribution_and_version(tmp_path, job_dir):
    site = write_fake_dist(
        tmp_path,
        "smc-broken",
        "0.0.1",
        {"smc.plugins": {"broken": "smc_broken"}},
        {"smc_broken": "raise RuntimeError('cannot start')\n"},
    )
    base = job_dir(code={"train.py": "print('never ran')"}, entry_point="train.py")
    proc = run_smc("train", pythonpath=site, env={"SAGEMAKER_BASE_DIR": str(base)})
    assert proc.returncode == 3
    failure = (base / "output" / "failure").read_text()
    assert "'broken'" in failure and "smc-broken 0.0.1" in failure and "RuntimeError: cannot start" in failure
    assert "SMC_DISABLE_PLUGINS=broken" in failure


def test_a_hookimpl_with_wrong_argument_names_is_a_plugin_error(tmp_path, job_dir):
    (tmp_path / "bad_args.py").write_text(
        "from smc_core import hookimpl\n\n@hookimpl\ndef prepare_training(env, user_code):\n    return None\n"
    )
    base = job_dir(code={"train.py": "print('never ran')"}, entry_point="train.py")
    proc = run_smc(
        "train", pythonpath=tmp_path, env={"SAGEMAKER_BASE_DIR": str(base), "SMC_PLUGINS": "bad_args"}
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith(
        "PluginError: The plugin 'bad_args' (SMC_PLUGINS, from bad_args) cannot be registered"
    )
    assert "'env'" in failure


def test_a_plugin_named_twice_is_a_plugin_error(tmp_path):
    (tmp_path / "twice.py").write_text(ADAPTER_MODULE.format(name="twice"))
    proc = run_smc("smc", "plugins", pythonpath=tmp_path, env={"SMC_PLUGINS": "twice,twice"})
    assert proc.returncode == 3
    assert "The plugin 'twice' (SMC_PLUGINS, from twice) cannot be registered" in proc.stderr


def test_a_broken_smc_entry_points_file_names_the_file_and_line(tmp_path):
    site = write_fake_dist(tmp_path, "smc-garbled", "1.0", {"smc.plugins": {"ok": "os"}})
    entry_points = site / "smc_garbled-1.0.dist-info" / "entry_points.txt"
    entry_points.write_text(entry_points.read_text() + "no equals sign here\n")
    proc = run_smc("smc", "plugins", pythonpath=site)
    assert proc.returncode == 3
    assert f"{entry_points}: the line 'no equals sign here' under [smc.plugins]" in proc.stderr
