"""An unclaimed switch names what to do from what the plugins declare; the core keeps no list of adapters.

Installed but not loaded: the distribution's ``smc.switches`` entry points name it (a real job through
``train`` with fake distributions on the path). Not installed: the data table of well-known switches.
Unknown: a generic hint. And every installed adapter declares exactly what it claims.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from smc_core import create_environment, hookimpl
from smc_core.host import switches
from smc_core.host.entrypoints import find_entry_points
from smc_core.host.plugins import get_plugin_manager
from smc_core.host.switches import (
    SWITCH_GROUP,
    WELL_KNOWN_SWITCHES,
    check_switches,
    claimed_switches,
    unclaimed_switch_fix,
)

from .helpers import failure_text, run_smc, write_fake_dist

ROOT = Path(__file__).resolve().parents[1]
SWITCH = "sagemaker_fakefw_distributed_enabled"

FAKE_FW = f"""
from smc_core import create_environment, hookimpl

@hookimpl
def claim_switches():
    return [{SWITCH!r}]
"""


def fake_fw(site: Path) -> Path:
    """An adapter that launches ``SWITCH`` and says so in its metadata, as the real adapters do."""
    return write_fake_dist(
        site,
        "smc-fakefw",
        "9.8.7",
        {"smc.adapters": {"fakefw": "smc_fake_fw"}, SWITCH_GROUP: {SWITCH: "smc_fake_fw"}},
        {"smc_fake_fw": FAKE_FW},
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),  # pinned: it launches the job
        (
            {"SMC_ADAPTER": "other"},
            "smc-fakefw 9.8.7 (installed) launches it, but the adapter other is loaded instead: "
            "set SMC_ADAPTER=fakefw",
        ),
        (
            {"SMC_DISABLE_PLUGINS": "fakefw", "SMC_ADAPTER": "other"},
            "smc-fakefw 9.8.7 launches it with its plugin fakefw, which SMC_DISABLE_PLUGINS blocks: "
            "unblock it",
        ),
    ],
    ids=["loaded", "another-adapter-pinned", "blocked"],
)
def test_an_installed_plugin_that_is_not_loaded_is_named(tmp_path, job_dir, env, expected):
    site = fake_fw(tmp_path / "site")
    write_fake_dist(
        site, "smc-other", "1.0", {"smc.adapters": {"other": "smc_fake_other"}}, {"smc_fake_other": ""}
    )
    base = job_dir(
        entry_point="train.py", hyperparameters={SWITCH: True}, code={"train.py": "print('RAN')\n"}
    )
    pinned = {"SMC_ADAPTER": "fakefw", **env}  # other adapters may be installed where the tests run
    proc = run_smc("train", pythonpath=site, env={"SAGEMAKER_BASE_DIR": str(base), **pinned})
    if expected is None:
        assert proc.returncode == 0, proc.stderr
        assert "RAN" in proc.stdout
        return
    assert proc.returncode == 2, proc.stderr
    text = failure_text(base)
    assert text.startswith(f"ConfigError: {SWITCH} is on, but no loaded adapter handles it: {expected}.")
    assert "RAN" not in proc.stdout


def test_a_well_known_switch_that_nothing_installed_declares_names_what_to_install():
    fix = unclaimed_switch_fix("sagemaker_parameter_server_enabled")  # no plugin manager: nothing installed
    assert fix == (
        "it asks for TensorFlow parameter servers, which no installed plugin declares: pip install "
        "smc-tensorflow, and pin the adapter with SMC_ADAPTER if several are installed"
    )
    fix = unclaimed_switch_fix("sagemaker_torch_distributed_enabled")
    assert "pip install smc-pytorch (or smc-keras)" in fix


def test_an_unknown_switch_gets_the_generic_hint(job_dir):
    class Claims:
        @hookimpl
        def claim_switches(self):
            return ["sagemaker_other_enabled"]

    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=[Claims()])
    switches = {"sagemaker_nobody_enabled": True, "sagemaker_other_enabled": True}
    training_env = create_environment(job_dir(hyperparameters=switches), {})
    with pytest.raises(Exception, match="no plugin known to smc launches it: remove the switch") as info:
        check_switches(training_env, claimed_switches(pm), pm)
    assert info.value.message.startswith("sagemaker_nobody_enabled is on, but no loaded adapter handles it")


def test_every_installed_plugin_declares_exactly_the_switches_it_claims():
    found = find_entry_points(SWITCH_GROUP, "smc.adapters", "smc.plugins")
    declared: dict[str, set[str]] = {}
    for ep in found[SWITCH_GROUP]:
        declared.setdefault(ep.value, set()).add(ep.name)
    core = {"smc_core.mpi.plugin", "smc_core.mpi.smddp"}
    modules = {ep.value for ep in [*found["smc.adapters"], *found["smc.plugins"]]} | core
    for module in sorted(modules):
        claim = getattr(importlib.import_module(module), "claim_switches", None)
        claimed = set(claim() or ()) if claim is not None else set()
        assert claimed == declared.get(module, set()), (
            f"{module} claims {sorted(claimed)}, but its distribution declares "
            f'{sorted(declared.get(module, ()))} in [project.entry-points."{SWITCH_GROUP}"]: make them one'
        )
    assert declared["smc_core.mpi.plugin"] == {"sagemaker_mpi_enabled"}
    assert declared["smc_core.mpi.smddp"] == {"sagemaker_distributed_dataparallel_enabled"}


def test_the_repositorys_adapters_are_in_the_well_known_table():
    """Each adapter of this repository is named for every switch its pyproject.toml declares."""
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        text = pyproject.read_text()
        dist = re.search(r'^name = "([^"]+)"', text, re.M).group(1)
        section = text.split(f'[project.entry-points."{SWITCH_GROUP}"]', 1)[1].split("\n[", 1)[0]
        declared = re.findall(r"^(sagemaker_\w+) = ", section, re.M)
        assert declared, f"{pyproject} declares no switch"
        for switch in declared:
            assert dist in WELL_KNOWN_SWITCHES[switch].install, f"{switch}: add {dist} to WELL_KNOWN_SWITCHES"


def test_no_code_path_of_the_core_names_an_adapter():
    """The core's code (its string constants and comments aside) names no adapter distribution: the
    well-known table is data, read only to write a message."""
    names = {dist for known in WELL_KNOWN_SWITCHES.values() for dist in known.install}
    for path in sorted((ROOT / "smc_core").rglob("*.py")):
        if path.parent.name == "testing":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):  # switch == "smc-pytorch", name in ("keras", ...)
                for constant in ast.walk(node):
                    if isinstance(constant, ast.Constant) and isinstance(constant.value, str):
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        assert constant.value not in names | {n.removeprefix("smc-") for n in names}, (
                            f"{where} compares with {constant.value!r}, an adapter's name"
                        )
    assert "SWITCH_PROVIDERS" not in vars(switches)
