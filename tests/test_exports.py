"""Rendering a TrainingEnv for the user's process: SM_* variables, argv, the process-wide variables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from smc_core import PlatformFacts
from smc_core.errors import ConfigError
from smc_core.job.environment import TrainingEnv, create_environment
from smc_core.job.exports import (
    TRAINING_ENV_KEYS,
    cmd_args,
    encode_value,
    env_vars,
    exported_vars,
    render_arg,
    training_env_dict,
    user_args,
)
from smc_core.usercode.describe import EntryKind, UserCode


def env_for(base: Path, **environ: str) -> TrainingEnv:
    return create_environment(base, environ, platform=PlatformFacts(num_cpus=2, num_gpus=1, num_neurons=0))


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("héllo", "héllo"),
        (None, ""),
        (True, "true"),
        (10, "10"),
        (0.5, "0.5"),
        ([64, 32], "[64,32]"),
        ({"b": 1, "a": "é"}, '{"a":"\\u00e9","b":1}'),
        (Path("/opt/ml/model"), "/opt/ml/model"),
    ],
)
def test_encode_value(value: object, encoded: str) -> None:
    assert encode_value(value) == encoded


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (True, "True"),
        (None, ""),
        ([64, 32], "[64, 32]"),
        ([1, [2, 3], {"k": "v"}], "[1, [2, 3], {'k': 'v'}]"),
        (["a", "b c"], "['a', 'b c']"),
        ({"outer": {"inner": 1}, "list": [1, 2]}, "list=[1, 2],outer={'inner': 1}"),
        ("007", "007"),
        (1e-05, "1e-05"),
    ],
)
def test_render_arg_is_python_str(value: object, rendered: str) -> None:
    assert render_arg(value) == rendered


def test_cmd_args_sorted_with_one_letter_keys() -> None:
    assert cmd_args({"lr": 0.1, "b": 2, "Zeta": "z", "spaced": "a b"}) == [
        "--Zeta",
        "z",
        "-b",
        "2",
        "--lr",
        "0.1",
        "--spaced",
        "a b",
    ]


def test_cmd_args_booleans_as_flags() -> None:
    hps = {"amp": True, "debug": False, "n": 1}
    assert cmd_args(hps) == ["--amp", "True", "--debug", "False", "-n", "1"]
    assert cmd_args(hps, booleans_as_flags=True) == ["--amp", "-n", "1"]


def test_env_vars_names_keep_hyphens_and_dots(job_dir) -> None:
    base = job_dir(
        hyperparameters={"learning-rate": 0.1, "optim.momentum": 0.9, "greeting": "héllo"},
        channels=["tr-ain"],
    )
    out = env_vars(env_for(base))
    assert out["SM_HP_LEARNING-RATE"] == "0.1"
    assert out["SM_HP_OPTIM.MOMENTUM"] == "0.9"
    assert out["SM_HP_GREETING"] == "héllo"
    assert '"greeting":"h\\u00e9llo"' in out["SM_HPS"]
    assert out["SM_CHANNEL_TR-AIN"] == str(base / "input/data/tr-ain")
    assert out["SM_NUM_GPUS"] == "1"
    assert all(isinstance(v, str) for v in out.values())


def test_training_env_dict_has_the_contract_keys(job_dir) -> None:
    document = training_env_dict(env_for(job_dir()))
    assert set(TRAINING_ENV_KEYS) <= set(document)
    assert json.loads(json.dumps(document)) == document
    assert document["module_dir"] == document["input_dir"].rsplit("/", 1)[0] + "/code"


def test_user_code_entry_point_is_reported(job_dir) -> None:
    base = job_dir(entry_point="train.py")
    env = env_for(base)
    user_code = UserCode(code_dir=env.code_dir, entry_point="run.sh", kind=EntryKind.SHELL, module_name="run")
    out = env_vars(env, user_code)
    assert out["SM_USER_ENTRY_POINT"] == "run.sh"
    assert out["SM_MODULE_NAME"] == "run.sh"  # as the reference: only ".py" is stripped
    assert json.loads(out["SM_TRAINING_ENV"])["user_entry_point"] == "run.sh"


def test_user_args_follow_the_switch(job_dir) -> None:
    base = job_dir(hyperparameters={"amp": True, "epochs": 2})
    assert user_args(env_for(base)) == ["--amp", "True", "--epochs", "2"]
    flagged = env_for(base, SMC_BOOL_FLAGS="1")
    assert user_args(flagged) == ["--amp", "--epochs", "2"]
    assert json.loads(env_vars(flagged)["SM_USER_ARGS"]) == ["--amp", "--epochs", "2"]


def test_exported_vars_process_wide(job_dir) -> None:
    base = job_dir(
        hyperparameters={"sagemaker_region": "us-east-2"}, hosts=["algo-1", "algo-2"], current_host="algo-2"
    )
    out = exported_vars(env_for(base, PYTHONPATH=f"/lib{os.pathsep}{base / 'code'}", TRAINING_JOB_NAME="j"))
    assert out["PYTHONPATH"] == f"{base / 'code'}{os.pathsep}/lib"
    assert out["PYTHONUNBUFFERED"] == "1"
    assert (out["CURRENT_HOST"], out["SAGEMAKER_JOB_NAME"], out["SAGEMAKER_REGION"]) == (
        "algo-2",
        "j",
        "us-east-2",
    )
    assert (out["SM_MASTER_ADDR"], out["SM_HOST_COUNT"], out["SM_CURRENT_HOST_RANK"]) == ("algo-1", "2", "1")
    kept = exported_vars(env_for(base, PYTHONUNBUFFERED=""))
    assert "PYTHONUNBUFFERED" not in kept
    assert kept["SAGEMAKER_JOB_NAME"] == ""


def test_topology_is_exported_when_present(job_dir) -> None:
    rc = {
        "current_host": "algo-1",
        "hosts": ["algo-1"],
        "topology": [{"hostName": "algo-1", "capacityUnitId": "u1"}],
    }
    out = env_vars(env_for(job_dir(resource_config=rc)))
    assert out["SM_TOPOLOGY"] == '[{"capacityUnitId":"u1","hostName":"algo-1"}]'
    assert "SM_TOPOLOGY" not in env_vars(env_for(job_dir()))


def test_nul_bytes_cannot_be_exported(job_dir) -> None:
    base = job_dir(hyperparameters={"bad": "a\0b"})
    with pytest.raises(ConfigError, match="SM_HP_BAD: the value holds a NUL byte"):
        env_vars(env_for(base))


def test_default_prepare_training_returns_exported_vars(job_dir, plugin_manager) -> None:
    env = env_for(job_dir(entry_point="train.py"))
    user_code = UserCode(
        code_dir=env.code_dir, entry_point="train.py", kind=EntryKind.PYTHON, module_name="train"
    )
    contributions = plugin_manager.hook.prepare_training(training_env=env, user_code=user_code)
    assert exported_vars(env, user_code) in contributions
