"""ModelTrainer jobs built by the real SageMaker Python SDK v3, run through smc on one host.

Each job is laid out from the request the SDK sent (``conftest.lay_out``) and started as the platform
starts it: the SDK's ``sm_train.sh`` when the request says so, else the image's ``train``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    HYPERPARAMETERS,
    assert_sees,
    entry_command,
    job_env,
    lay_out,
    sdk_environment,
    sdk_missing,
)

pytestmark = sdk_missing

VENV_BIN = str(Path(sys.executable).parent)


def run(
    command: list[str], env: dict[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_basic_job_sees_what_the_sdks_environment_py_gives_it(
    sdk_jobs: dict[str, Any],
    s3_server: Any,
    tmp_path: Path,
    scratch_python: Path,
    offline_wheels: dict[str, str],
) -> None:
    """Typed hyperparameters and a channel, the job started as ``train`` on the layout: every variable
    of the SDK's environment.py, and the arguments of its basic_script_driver, are what the script
    sees; the requirements are installed once, by smc; the job ends with output/success, which the
    SDK's own drivers never write."""
    request = sdk_jobs["basic"]
    path = os.pathsep.join([str(scratch_python), VENV_BIN, os.environ["PATH"]])
    sdk_base = lay_out(request, tmp_path / "sdk", s3_server.client())
    sdk = run(
        entry_command(request, sdk_base, []), job_env(request, sdk_base, path, **offline_wheels), tmp_path
    )
    assert sdk.returncode == 0 and "probe done" in sdk.stdout, sdk.stdout + sdk.stderr
    assert not (sdk_base / "output" / "success").exists()  # the SDK's basic_script_driver

    base = lay_out(request, tmp_path / "job", s3_server.client())
    env = job_env(request, base, path, **offline_wheels)
    expected_env, expected_argv = sdk_environment(base, env)
    done = run([str(scratch_python / "train")], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (base / "output" / "success").exists()
    assert "A SageMaker Python SDK v3 ModelTrainer layout" in done.stderr
    assert done.stderr.count("Installing ") == 1, done.stderr  # smc's one install

    record = json.loads((base / "model" / "probe.json").read_text())
    assert record["tinydep"] == "from the wheel" and record["points"] == "1,2\n3,4\n"
    assert record["cwd"] == str(base / "input" / "data" / "code")
    assert record["argv"] == expected_argv
    assert record["argv"][:4] == ["--epochs", "3", "--learning-rate", "0.1"]
    assert "--ratio" in record["argv"] and record["argv"][record["argv"].index("--ratio") + 1] == "1.5"
    seen = record["env"]
    assert_sees(seen, expected_env)
    assert seen["SM_HP_LEARNING_RATE"] == "0.1" and seen["SM_HP_LEARNING-RATE"] == "0.1"
    assert seen["SM_USER_ARGS"] == json.dumps(expected_argv, separators=(",", ":"), ensure_ascii=True)
    assert set(expected_env) >= {"SM_SOURCE_DIR", "SM_ENTRY_SCRIPT", "SM_MASTER_PORT", "SM_OUTPUT_FAILURE"}
    assert json.loads(expected_env["SM_HPS"])["opt"] == HYPERPARAMETERS["opt"]


def test_command_train_installs_once_and_reports_the_users_exception(
    sdk_jobs: dict[str, Any],
    s3_server: Any,
    tmp_path: Path,
    scratch_python: Path,
    offline_wheels: dict[str, str],
) -> None:
    """SourceCode(command="train") through the SDK's own sm_train.sh: its install ran, smc's does not
    run again; the script's ValueError and traceback are in the failure file, not the driver's."""
    request = sdk_jobs["command-train"]
    base = lay_out(request, tmp_path / "job", s3_server.client())
    path = os.pathsep.join([str(scratch_python), VENV_BIN, os.environ["PATH"]])
    command = entry_command(request, base, [])
    assert command[:2] == ["/bin/bash", "-c"] and "sm_train.sh" in command[2]

    done = run(command, job_env(request, base, path, **offline_wheels), tmp_path)
    logs = done.stdout + done.stderr
    assert done.returncode == 1, logs
    assert logs.count("Successfully installed tinydep-1.0") == 1, logs  # by the SDK's install_requirements.py
    assert "smc INFO: Installing" not in logs, logs
    assert "requirements.txt was installed by the SDK's sm_train.sh before train started" in logs
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("UserCodeError"), failure
    assert "ValueError: no such dataset: s3://nowhere" in failure
    assert 'in load\n    raise ValueError(f"no such dataset: {path}")' in failure
    assert "CalledProcessError" not in failure
    assert not (base / "output" / "success").exists()


def test_the_sdks_own_driver_reports_itself_not_the_users_exception(
    sdk_jobs: dict[str, Any],
    s3_server: Any,
    tmp_path: Path,
    scratch_python: Path,
    offline_wheels: dict[str, str],
) -> None:
    """What the side-by-side in the docs says of the SDK's drivers: on a failing script the failure
    file holds the driver's CalledProcessError traceback, not the script's ValueError."""
    request = sdk_jobs["failing"]
    base = lay_out(request, tmp_path / "job", s3_server.client())
    path = os.pathsep.join([str(scratch_python), VENV_BIN, os.environ["PATH"]])
    done = run(entry_command(request, base, []), job_env(request, base, path, **offline_wheels), tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    failure = (base / "output" / "failure").read_text()
    assert "subprocess.CalledProcessError" in failure and "ValueError" not in failure, failure


def test_smcs_distributed_config_hands_the_job_to_train(
    sdk_jobs: dict[str, Any],
    s3_server: Any,
    tmp_path: Path,
    scratch_python: Path,
    offline_wheels: dict[str, str],
) -> None:
    """ModelTrainer(distributed=Smc()) keeps the user's source_code: sm_train.sh runs smc's driver,
    which hands over to train; the script runs once with its hyperparameters; output/success."""
    request = sdk_jobs["smc-config"]
    base = lay_out(request, tmp_path / "job", s3_server.client())
    drivers = base / "input" / "data" / "sm_drivers"
    assert (drivers / "distributed_drivers" / "smc_driver.py").is_file()
    assert json.loads((drivers / "distributed.json").read_text()) == {
        "driver": "smc",
        "launch": None,
        "process_count_per_node": None,
        "mpi_additional_options": None,
    }
    path = os.pathsep.join([str(scratch_python), VENV_BIN, os.environ["PATH"]])
    done = run(entry_command(request, base, []), job_env(request, base, path, **offline_wheels), tmp_path)
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs
    assert "smc_modeltrainer: handing the job over to" in logs
    assert logs.count("Successfully installed tinydep-1.0") == 1, logs  # by the SDK, not again by smc
    assert "requirements.txt was installed by the SDK's sm_train.sh" in logs
    assert (base / "output" / "success").exists()
    record = json.loads((base / "model" / "probe.json").read_text())
    assert record["argv"] == ["--epochs", "2"]
    assert json.loads(record["env"]["SM_DISTRIBUTED_CONFIG"])["driver"] == "smc"


@pytest.mark.timeout(300)
def test_a_tuning_job_honours_distributed_json(
    sdk_jobs: dict[str, Any], s3_server: Any, tmp_path: Path
) -> None:
    """The v3 tuner runs the image's train with sm_drivers attached and the code in
    sagemaker_submit_directory: distributed.json's Torchrun 2 processes per host runs as torchrun
    (what #5508 reports broken with the framework images); static hyperparameters as str(value)."""
    request = sdk_jobs["tuning-torchrun"]
    hyperparameters = request["StaticHyperParameters"]
    assert hyperparameters["flag"] == "False" and hyperparameters["sagemaker_program"] == "train.py"
    assert hyperparameters["sagemaker_submit_directory"].startswith("s3://")
    base = lay_out(request, tmp_path / "job", s3_server.client(), tuned={"lr": "0.15"})
    assert not (base / "input" / "data" / "code").exists()
    path = os.pathsep.join([VENV_BIN, os.environ["PATH"]])
    env = job_env(request, base, path, **s3_server.env)
    expected_env, _ = sdk_environment(base, env)
    command = entry_command(request, base, [str(Path(VENV_BIN) / "train")])
    done = run(command, env, tmp_path, timeout=240)
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs
    assert "torchrun with 2 process(es) on this host" in logs
    records = [json.loads((base / "model" / f"rank-{rank}.json").read_text()) for rank in range(2)]
    for record in records:
        assert record["size"] == 2 and record["sum"] == 3.0
        assert record["argv"] == ["--epochs", "2", "--flag", "False", "--lr", "0.15"]
        assert record["cwd"] == str(base / "code")
        # the SDK names the code channel, which a tuning job does not have: smc names the code dir
        assert_sees(record["env"], expected_env, apart={"SM_SOURCE_DIR": str(base / "code")})
        assert json.loads(record["env"]["SM_DISTRIBUTED_CONFIG"]) == {
            "process_count_per_node": 2,
            "smp": None,
        }
    assert (base / "output" / "success").exists()


def test_the_smc_config_checks_itself_and_its_driver_needs_train(tmp_path: Path) -> None:
    """Smc refuses what smc would refuse later (on the user's machine, before any job starts); its
    driver, in an image without smc, fails the job with a failure file saying so."""
    from .conftest import SDK_PYTHON

    check = (
        "from smc_modeltrainer import Smc\n"
        "for kwargs in ({'process_count_per_node': 2}, {'launch': 'horovod'},\n"
        "               {'launch': 'torchrun', 'mpi_additional_options': ['-x', 'A=1']},\n"
        "               {'launch': 'mpi', 'process_count_per_node': 0}):\n"
        "    try:\n"
        "        Smc(**kwargs)\n"
        "    except ValueError as error:\n"
        "        print('refused', kwargs)\n"
        "print(Smc(launch='mpi', process_count_per_node=2).model_dump())\n"
        "import os, smc_modeltrainer as m\n"
        "print(os.path.join(m.DRIVER_DIR, m.DRIVER_SCRIPT))\n"
    )
    done = subprocess.run([SDK_PYTHON, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused") == 4, done.stdout
    assert "'driver': 'smc', 'launch': 'mpi', 'process_count_per_node': 2" in done.stdout

    driver = done.stdout.strip().splitlines()[-1]
    (tmp_path / "output").mkdir()
    env = {"PATH": "/usr/bin:/bin", "SAGEMAKER_BASE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, driver], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "the image has no `train` command on PATH" in (tmp_path / "output" / "failure").read_text()
