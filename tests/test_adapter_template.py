"""``smc new-adapter`` renders the template (package data of smc-core) into a package that lints clean
and installs; ``tests/test_guide.py`` runs its tests from smc-core's wheel."""

from __future__ import annotations

import os
import subprocess
import sys

from .helpers import pip_install_target, run_smc


def test_rendered_adapter_installs_and_passes_its_tests(tmp_path):
    made = run_smc("smc", "new-adapter", "demo", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    package = tmp_path / "smc-demo"
    assert f"Wrote {package}" in made.stdout
    plugin = (package / "smc_demo" / "plugin.py").read_text()
    assert "$" not in plugin and '"sagemaker_demo_distributed_enabled"' in plugin
    ruff = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ruff"), "check", "--no-cache", str(package)],
        cwd=package,  # as its authors run it: smc_demo is theirs, smc_core a dependency
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout
    site = pip_install_target(package, tmp_path / "site")
    assert (site / "smc_demo" / "plugin.py").exists()

    listed = run_smc("smc", "plugins", env={"SMC_ADAPTER": "demo"}, pythonpath=site)
    assert "adapter: demo (smc-demo 0.1.0)" in listed.stdout, listed.stdout + listed.stderr
    # Its own tests (real jobs, one on two hosts) run from smc-core's wheel in a fresh virtualenv, as
    # the guide shows: tests/test_guide.py::test_following_the_adapter_guide_new_adapter_from_the_wheel.


def test_a_bad_name_or_an_existing_folder_is_refused(tmp_path):
    bad = run_smc("smc", "new-adapter", "My-FW", "--dir", str(tmp_path))
    assert bad.returncode == 2
    assert "'My-FW' is not a lower-case Python identifier" in bad.stderr
    (tmp_path / "smc-demo").mkdir()
    taken = run_smc("smc", "new-adapter", "demo", "--dir", str(tmp_path))
    assert taken.returncode == 2 and "already exists" in taken.stderr
