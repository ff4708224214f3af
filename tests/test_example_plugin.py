"""The example plugin distribution, really installed, wins over the default fetch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import pip_install_target, run_smc

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "smc-code-from-dir"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    return pip_install_target(EXAMPLE, tmp_path_factory.mktemp("example-plugin"))


def test_example_is_small():
    code = [
        line
        for line in (EXAMPLE / "smc_code_from_dir.py").read_text().splitlines()
        if line.strip() and not line.strip().startswith(("#", '"""'))
    ]
    assert len(code) < 18  # the module, a declared setting, an explained error


def test_installed_example_is_listed_first_for_fetch_user_code(example_site):
    proc = run_smc("smc", "plugins", "--json", pythonpath=example_site)
    report = json.loads(proc.stdout)
    entry = next(p for p in report["plugins"] if p["name"] == "code-from-dir")
    assert (entry["distribution"], entry["version"]) == ("smc-code-from-dir", "0.1.0")
    plain = [name for name in report["hooks"]["fetch_user_code"] if not name.endswith("(wrapper)")]
    assert plain[0] == "code-from-dir"


def test_example_wins_over_the_default_fetch(example_site, job_dir, tmp_path):
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / "train.py").write_text("import sys\nprint('from the mounted dir', sys.argv[1:])\n")
    job = job_dir(hyperparameters={"lr": 0.5}, entry_point="train.py")
    proc = run_smc(
        "train",
        pythonpath=example_site,
        env={"SAGEMAKER_BASE_DIR": str(job), "SMC_CODE_FROM_DIR": str(mounted)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "from the mounted dir ['--lr', '0.5']" in proc.stdout
    assert (job / "code" / "train.py").exists()
