"""Reading a ModelTrainer layout: what each file may hold, and the errors for what smc cannot run.

These layouts are written by hand (the SDK-built ones are in test_sdk_layouts.py): each case is one
field the SDK, a tuner or a user's own DistributedConfig could put there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from smc_core.base.settings import parse_settings
from smc_core.errors import ConfigError
from smc_core.job.environment import create_environment
from smc_core.job.exports import env_vars, user_args
from smc_core.job.platforms.modeltrainer import read_model_trainer_job, sdk_serialize
from smc_core.job.platforms.sagemaker import sagemaker_facts
from smc_core.testing import make_job_dir

from ..helpers import tar_bytes

SOURCE_CODE = {
    "source_dir": "/home/me/src",
    "requirements": None,
    "entry_script": "train.py",
    "command": None,
    "args": None,
    "ignore_patterns": [".env", ".git", "__pycache__"],
}
TORCHRUN = {"process_count_per_node": 2, "smp": None}
MPI = {"process_count_per_node": 2, "mpi_additional_options": ["-x", "NCCL_DEBUG=WARN"]}
ARGV_PROBE = "import json, os, sys\nprint('ARGV', json.dumps(sys.argv[1:]), os.environ['SM_USER_ARGS'])\n"


def layout(
    base: Path,
    *,
    source_code: Any = None,
    distributed: Any = None,
    hyperparameters: dict[str, str] | None = None,
    code: dict[str, str | bytes] | None = None,
) -> Path:
    """A ModelTrainer job directory: raw hyperparameters (as safe_serialize writes them), the ``code``
    and ``sm_drivers`` channels."""
    make_job_dir(base, raw_hyperparameters=hyperparameters or {}, channels=["code", "sm_drivers"])
    drivers = base / "input" / "data" / "sm_drivers"
    (drivers / "sourcecode.json").write_text(json.dumps(SOURCE_CODE if source_code is None else source_code))
    (drivers / "distributed.json").write_text(json.dumps({} if distributed is None else distributed))
    for name, content in (code or {"train.py": ARGV_PROBE}).items():
        path = base / "input" / "data" / "code" / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return base


def read(base: Path, environ: dict[str, str] | None = None) -> Any:
    environ = {"SAGEMAKER_BASE_DIR": str(base), **(environ or {})}
    settings = parse_settings(environ)
    return create_environment(
        base, environ, settings=settings, platform=sagemaker_facts(base, environ, settings)
    )


@pytest.mark.parametrize(
    ("distributed", "message"),
    [
        ({"nodes": 2}, "none of the DistributedConfigs smc knows"),
        (
            {"process_count_per_node": 0, "smp": None},
            "'process_count_per_node' is 0 (a number), expected a whole",
        ),
        ({"process_count_per_node": "2", "smp": None}, "'process_count_per_node' is \"2\" (a string)"),
        ({"process_count_per_node": 2, "mpi_additional_options": ["-np", "8"]}, "sets '-np', which smc sets"),
        (
            {"process_count_per_node": 2, "mpi_additional_options": "-x A=1"},
            "expected a list of mpirun arguments",
        ),
        (
            {"process_count_per_node": 2, "mpi_additional_options": ["A=1"]},
            "starts with 'A=1', which is not an",
        ),
        ({"driver": "smc", "launch": "horovod"}, '\'launch\' is "horovod", expected "torchrun"'),
        ({"driver": "smc", "launch": None, "process_count_per_node": 2}, "but 'launch' is null"),
        (
            {"driver": "smc", "launch": "torchrun", "mpi_additional_options": ["-x", "A"]},
            "not MPI: give launch",
        ),
        ([], "expected a JSON object"),
    ],
)
def test_a_distributed_json_smc_cannot_run_is_refused(tmp_path: Path, distributed: Any, message: str) -> None:
    base = layout(tmp_path, distributed=distributed)
    with pytest.raises(ConfigError) as error:
        read(base)
    assert "distributed.json" in str(error.value) and message in str(error.value), str(error.value)


@pytest.mark.parametrize(
    ("source_code", "message"),
    [
        (
            {**SOURCE_CODE, "entry_script": None, "command": "train"},
            "'entry_script' is null, so smc has no script",
        ),
        ({**SOURCE_CODE, "entry_script": "/abs/train.py"}, "not a path inside the source dir"),
        ({**SOURCE_CODE, "requirements": ["a"]}, "'requirements' is [\"a\"] (a list), expected a string"),
        ("train.py", "expected a JSON object"),
    ],
)
def test_a_sourcecode_json_smc_cannot_run_is_refused(tmp_path: Path, source_code: Any, message: str) -> None:
    base = layout(tmp_path, source_code=source_code)
    with pytest.raises(ConfigError) as error:
        read(base)
    assert "sourcecode.json" in str(error.value) and message in str(error.value), str(error.value)


def test_a_launch_asked_twice_is_refused(tmp_path: Path) -> None:
    base = layout(tmp_path, distributed=TORCHRUN, hyperparameters={"sagemaker_mpi_enabled": "true"})
    with pytest.raises(ConfigError, match="also turns on sagemaker_mpi_enabled: one launch per job"):
        read(base)


@pytest.mark.parametrize(
    ("distributed", "params"),
    [
        ({}, {}),
        (TORCHRUN, {
            "sagemaker_torch_distributed_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}),
        ({"process_count_per_node": None, "smp": None}, {"sagemaker_torch_distributed_enabled": True}),
        (
            MPI,
            {
                "sagemaker_mpi_enabled": True,
                "sagemaker_mpi_num_of_processes_per_host": 2,
                "sagemaker_mpi_custom_mpi_options": "-x NCCL_DEBUG=WARN",
            },
        ),
        ({"driver": "smc", "launch": None, "process_count_per_node": None}, {}),
        ({"driver": "smc", "launch": "mpi", "process_count_per_node": 3}, {
            "sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 3}),
    ],
)  # fmt: skip
def test_distributed_json_is_the_classic_switch_it_stands_for(
    tmp_path: Path, distributed: Any, params: dict[str, Any]
) -> None:
    base = layout(tmp_path, distributed=distributed)
    env = read(base)
    assert dict(env.additional_framework_parameters) == params
    assert env.code_dir == base / "input" / "data" / "code" and env.user_entry_point == "train.py"


def test_the_hosts_are_sorted_as_the_sdks_drivers_sort_them(tmp_path: Path) -> None:
    base = layout(tmp_path, distributed=TORCHRUN)
    config = {
        "current_host": "algo-2",
        "hosts": ["algo-2", "algo-1"],
        "instance_groups": [{"instance_group_name": "g", "hosts": ["algo-2", "algo-1"]}],
        "current_group_name": "g",
        "network_interface_name": "eth0",
        "current_instance_type": "ml.m5.xlarge",
    }
    (base / "input" / "config" / "resourceconfig.json").write_text(json.dumps(config))
    env = read(base)
    assert env.distribution_hosts == ("algo-1", "algo-2") and env.master_hostname == "algo-1"
    variables = env_vars(env)
    assert variables["SM_HOSTS"] == '["algo-1", "algo-2"]' and variables["SM_CURRENT_HOST_RANK"] == "1"
    assert variables["SM_MASTER_ADDR"] == "algo-1" and variables["SM_MASTER_PORT"] == "7777"
    assert json.loads(variables["SM_DISTRIBUTED_CONFIG"]) == TORCHRUN


def test_arguments_are_rendered_as_the_sdks_drivers_render_them(tmp_path: Path) -> None:
    raw = {
        "b": "1.50",  # safe_serialize keeps a str as it is; the drivers decode it
        "a": "true",
        "c": '"quoted"',
        "d": "[1, 2]",
        "flag": "false",
        "sagemaker_program": "train.py",  # a tuning job's: smc's, not the script's
        "sagemaker_submit_directory": "s3://b/sourcedir.tar.gz",
    }
    base = layout(tmp_path, hyperparameters=raw)
    env = read(base)
    assert user_args(env) == [
        "--b",
        "1.5",
        "--a",
        "true",
        "--c",
        "quoted",
        "--d",
        "[1, 2]",
        "--flag",
        "false",
    ]
    flags = read(base, {"SMC_BOOL_FLAGS": "1"})
    assert user_args(flags) == ["--b", "1.5", "--a", "--c", "quoted", "--d", "[1, 2]"]
    variables = env_vars(env)
    assert variables["SM_HP_B"] == "1.5" and variables["SM_HPS"].startswith('{"b": 1.5, "a": true')
    assert variables["SM_ENTRY_SCRIPT"] == "train.py"
    assert sdk_serialize(None) == "null" and sdk_serialize("x") == "x"


def test_train_arguments_are_the_scripts_and_a_tarball_source_dir_is_extracted(tmp_path: Path) -> None:
    """``SourceCode(command="train", args=[...])`` gives train arguments: they reach the script as
    given. A ``.tar.gz`` source dir arrives as that file in the code channel: extracted there."""
    source = {**SOURCE_CODE, "source_dir": "s3://bucket/src/sourcedir.tar.gz", "command": "train"}
    base = layout(
        tmp_path / "job",
        source_code=source,
        hyperparameters={"epochs": "3"},
        code={"sourcedir.tar.gz": tar_bytes({"train.py": ARGV_PROBE})},
    )
    done = subprocess_train(base, [], tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'ARGV ["--epochs", "3"]' in done.stdout
    assert (base / "input" / "data" / "code" / "train.py").is_file()
    done = subprocess_train(base, ["--lr", "0.1", "a b"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'ARGV ["--lr", "0.1", "a b"] ["--lr","0.1","a b"]' in done.stdout


def subprocess_train(base: Path, args: list[str], cwd: Path) -> Any:
    import subprocess

    from ..helpers import TRAIN

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env.update(SAGEMAKER_BASE_DIR=str(base), PYTHONPATH="")
    return subprocess.run([TRAIN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_sm_train_sh_having_run_is_recognised(tmp_path: Path) -> None:
    base = layout(tmp_path, source_code={**SOURCE_CODE, "requirements": "requirements.txt"})
    paths = read(base).paths
    assert not read_model_trainer_job(paths, {}).sdk_script_ran
    (base / "input" / "sm_training.env").write_text("export SM_SOURCE_DIR='/opt/ml/input/data/code'\n")
    assert not read_model_trainer_job(paths, {}).sdk_script_ran  # the file alone: a stale one
    assert read_model_trainer_job(paths, {"SM_SOURCE_DIR": "/opt/ml/input/data/code"}).sdk_script_ran
