"""Conformance: ``smc env`` prints the resolved environment; ``smc exec`` runs a command with it."""

from __future__ import annotations

import json
import subprocess

from smc_core.job.exports import TRAINING_ENV_KEYS

from .conftest import clean_environ, console_script


def smc(*args: str, base, env=None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    full_env = clean_environ({"SAGEMAKER_BASE_DIR": str(base), **(env or {})})
    return subprocess.run(
        [console_script("smc"), *args], env=full_env, capture_output=True, text=True, timeout=60
    )


def test_smc_env_prints_the_training_env(job_dir) -> None:
    base = job_dir(hyperparameters={"epochs": 3}, channels=["train"], entry_point="train.py")
    done = smc("env", base=base)
    assert done.returncode == 0, done.stderr
    training_env = json.loads(done.stdout)
    assert set(TRAINING_ENV_KEYS) <= set(training_env)
    assert training_env["hyperparameters"] == {"epochs": 3}
    assert training_env["channel_input_dirs"] == {"train": str(base / "input" / "data" / "train")}


def test_smc_env_export_prints_shell_lines(job_dir) -> None:
    base = job_dir(hyperparameters={"shell": "a b'c"}, entry_point="train.py")
    done = smc("env", "--export", base=base)
    assert done.returncode == 0, done.stderr
    # the lines are valid shell: sourcing them gives back the exact values
    script = done.stdout + '\nprintf %s "$SM_HP_SHELL"'
    assert subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True).stdout == "a b'c"
    assert "export SM_USER_ENTRY_POINT=train.py" in done.stdout.splitlines()
    assert "export PYTHONUNBUFFERED=1" in done.stdout.splitlines()


def test_smc_exec_runs_a_command_with_the_variables(job_dir) -> None:
    base = job_dir(
        hyperparameters={"epochs": 3}, channels=["train"], hosts=["algo-1", "algo-2"], entry_point="train.py"
    )
    done = smc("exec", "--", "env", base=base, env={"TRAINING_JOB_NAME": "j"})
    assert done.returncode == 0, done.stderr
    seen = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert seen["SM_HP_EPOCHS"] == "3"
    assert seen["SM_CHANNEL_TRAIN"] == str(base / "input" / "data" / "train")
    assert seen["SM_HOSTS"] == '["algo-1","algo-2"]'
    assert seen["CURRENT_HOST"] == "algo-1"
    assert seen["SAGEMAKER_JOB_NAME"] == "j"
    assert json.loads(seen["SM_USER_ARGS"]) == ["--epochs", "3"]


def test_smc_env_reports_bad_configuration(job_dir) -> None:
    base = job_dir()
    (base / "input" / "config" / "resourceconfig.json").write_text('{"hosts": []}')
    done = smc("env", base=base)
    assert done.returncode == 2
    assert "resourceconfig.json: 'hosts' is []" in done.stderr


def test_smc_env_says_what_it_leaves_out(job_dir) -> None:
    base = job_dir(entry_point="train.py")
    exported = smc("env", "--export", base=base)
    assert exported.returncode == 0, exported.stderr
    last = exported.stdout.splitlines()[-1]
    assert last.startswith("# Not shown: what plugins add when the job runs") and "MASTER_ADDR" in last
    policy = exported.stdout.splitlines()[-2]
    assert policy.startswith("# Supervision (every launch obeys it): SMC_GRACE_PERIOD=100 s")
    shown = smc("env", base=base)
    assert "Not shown: what plugins add" in shown.stderr
    assert "SMC_HOST_WAIT_TIMEOUT=600 s" in shown.stderr
    help_text = smc("env", "--help", base=base).stdout
    assert "not plugins' additions" in help_text and "every variable" not in help_text
