"""Each hook overridden by an installed plugin (the smc-recorder fixture distribution), end to end."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smc_core import hookspecs
from smc_core.host.plugins import hook_names

from .helpers import run_smc

SCRIPT = "import os, sys\nprint('user script', sys.argv[1:], os.environ.get('RECORDER_PREPARED'))\n"


def run_with_recorder(recorder_dist: Path, job: Path, tmp_path: Path, override: str = ""):
    log = tmp_path / "calls.jsonl"
    proc = run_smc(
        "train",
        pythonpath=recorder_dist,
        env={"SAGEMAKER_BASE_DIR": str(job), "SMC_RECORDER_LOG": str(log), "SMC_RECORDER_OVERRIDE": override},
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def test_recorded_hook_order_through_train(recorder_dist, job_dir, tmp_path):
    job = job_dir(hyperparameters={"epochs": 2}, code={"train.py": SCRIPT}, entry_point="train.py")
    proc, calls = run_with_recorder(recorder_dist, job, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [c["hook"] for c in calls] == hook_names()
    assert "user script ['--epochs', '2'] None" in proc.stdout


def test_override_register_settings(recorder_dist, job_dir, tmp_path):
    job = job_dir(code={"train.py": SCRIPT}, entry_point="train.py")
    log = tmp_path / "calls.jsonl"
    env = {
        "SAGEMAKER_BASE_DIR": str(job),
        "SMC_RECORDER_LOG": str(log),
        "SMC_RECORDER_OVERRIDE": "register_settings",
    }
    # the plugin's setting is parsed at start like the core's: a bad value stops the job with exit 2
    proc = run_smc("train", pythonpath=recorder_dist, env={**env, "SMC_RECORDER_LEVEL": "0"})
    assert proc.returncode == 2, proc.stderr
    assert "SMC_RECORDER_LEVEL is '0'" in proc.stderr and "a whole number >= 1" in proc.stderr
    assert "SMC_RECORDER_LEVEL is '0'" in (job / "output" / "failure").read_text()
    proc = run_smc("train", pythonpath=recorder_dist, env={**env, "SMC_RECORDER_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr


def test_override_claim_switches(recorder_dist, job_dir, tmp_path):
    job = job_dir(
        hyperparameters={"sagemaker_recorder_enabled": True},
        code={"train.py": SCRIPT},
        entry_point="train.py",
    )
    proc, _ = run_with_recorder(recorder_dist, job, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "sagemaker_recorder_enabled is on, but no loaded adapter handles it" in proc.stderr
    assert not (job / "output" / "success").exists()
    proc, _ = run_with_recorder(recorder_dist, job, tmp_path, "claim_switches")
    assert proc.returncode == 0, proc.stderr


def test_override_claim_hyperparameters(recorder_dist, job_dir, tmp_path):
    script = (
        "import json, os, sys\n"
        "print('argv', sys.argv[1:], json.loads(os.environ['SM_HPS']),\n"
        "      os.environ.get('SM_HP_RECORDER_REPO'), json.loads(os.environ['SM_FRAMEWORK_PARAMS']))\n"
    )
    repo = "https://git.example/x.git"
    hyperparameters = {"epochs": 2, "recorder_repo": repo, "sagemaker_recorder_level": 3}
    job = job_dir(hyperparameters=hyperparameters, code={"train.py": script}, entry_point="train.py")
    proc, calls = run_with_recorder(recorder_dist, job, tmp_path)
    assert proc.returncode == 0, proc.stderr
    # unclaimed: the reference passes a plain name to the script, and keeps sagemaker_* names apart
    assert "argv ['--epochs', '2', '--recorder_repo', 'https://git.example/x.git']" in proc.stdout
    proc, calls = run_with_recorder(recorder_dist, job, tmp_path, "claim_hyperparameters")
    assert proc.returncode == 0, proc.stderr
    # claimed: the plugin has them, the script never sees the plain one; sagemaker_* stays a framework param
    assert "argv ['--epochs', '2'] {'epochs': 2} None {'sagemaker_recorder_level': 3}" in proc.stdout
    fetch = [c for c in calls if c["hook"] == "fetch_user_code"][-1]  # this run's (the log is shared)
    assert fetch["owned"] == {"recorder_repo": "https://git.example/x.git", "sagemaker_recorder_level": 3}
    assert fetch["framework"] == {"sagemaker_recorder_level": 3}


def test_override_load_environment(recorder_dist, job_dir, tmp_path):
    job = job_dir(hyperparameters={"epochs": 2}, code={"train.py": SCRIPT}, entry_point="train.py")
    proc, _ = run_with_recorder(recorder_dist, job, tmp_path, "load_environment")
    assert proc.returncode == 0, proc.stderr
    assert "user script ['--from-recorder', 'yes'] None" in proc.stdout


def test_override_fetch_user_code(recorder_dist, job_dir, tmp_path):
    job = job_dir(hyperparameters={"epochs": 2}, code={"train.py": SCRIPT}, entry_point="train.py")
    proc, calls = run_with_recorder(recorder_dist, job, tmp_path, "fetch_user_code")
    assert proc.returncode == 0, proc.stderr
    assert "recorder code ['--epochs', '2']" in proc.stdout
    assert {"hook": "prepare_training", "entry_point": "recorded.py"} in calls


def test_override_prepare_training(recorder_dist, job_dir, tmp_path):
    script = "import os\nprint('prepared', os.environ['RECORDER_PREPARED'], os.environ['SM_MODEL_DIR'])\n"
    job = job_dir(code={"train.py": script}, entry_point="train.py")
    proc, calls = run_with_recorder(recorder_dist, job, tmp_path, "prepare_training")
    assert proc.returncode == 0, proc.stderr
    # the plugin's variables win over the defaults' for the same name
    assert "prepared 1 /recorder/wins" in proc.stdout
    assert calls[-1] == {"hook": "invoke_train", "prepared": "1"}


def test_override_invoke_train(recorder_dist, job_dir, tmp_path):
    job = job_dir(code={"train.py": "raise SystemExit('must not run')"}, entry_point="train.py")
    proc, _ = run_with_recorder(recorder_dist, job, tmp_path, "invoke_train")
    assert proc.returncode == 0, proc.stderr
    assert (job / "output" / "success").exists()


# --- meta-tests: the contract stays honest ------------------------------------------------------

SPECS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "smc_spec")]


def test_the_runner_order_names_every_hookspec():
    assert sorted(hook_names()) == sorted(SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_every_hookspec_is_documented(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert len(doc.splitlines()[0]) > 20, f"{name}: first line of the docstring says what the hook is for"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name}: document the argument {param}"
    assert ":return:" in doc and "Example" in doc, f"{name}: document the result and give an example"
    assert ("first non-None result wins" in doc or "first result wins" in doc.lower()) == bool(
        fn.smc_spec["firstresult"]
    ) or "Every plugin contributes" in doc
    assert fn.__annotations__.get("return"), f"{name}: type the return value"


@pytest.mark.parametrize("name", SPECS)
def test_every_hookspec_has_an_override_test(name):
    assert f"def test_override_{name}(" in Path(__file__).read_text()


def test_cli_commands_do_not_import_frameworks_or_boto3(job_dir):
    job = job_dir(code={"train.py": "print()"}, entry_point="train.py")
    code = (
        "import sys\n"
        "from smc_core.cli.main import main\n"
        "for args in (['plugins'], ['env'], ['env', '--export']):\n"
        "    assert main(args) == 0\n"
        "names = ('torch', 'tensorflow', 'keras', 'boto3', 'botocore')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"SAGEMAKER_BASE_DIR": str(job), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^HEAVY \[\]$", proc.stdout, re.M), proc.stdout
