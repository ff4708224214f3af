"""The environment's public functions, each on its own, and the TrainingEnv they compose."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import socket
from pathlib import Path

import pytest

from smc_core import PlatformFacts
from smc_core.errors import ConfigError
from smc_core.job.environment import (
    TrainingEnv,
    available_cpus,
    available_gpus,
    available_neurons,
    base_dir,
    cgroup_cpu_limit,
    check_resource_config,
    create_environment,
    decode_hyperparameters,
    get_channel_dir,
    job_paths,
    load_checkpoint_config,
    load_config,
    load_hyperparameters,
    load_input_data_config,
    load_resource_config,
    resource_config_from_tf_config,
    split_hyperparameters,
)

CONFIG = Path("input") / "config"


def env_for(base: Path, **environ: str) -> TrainingEnv:
    return create_environment(
        base,
        {"PATH": os.environ["PATH"], **environ},
        platform=PlatformFacts(num_cpus=4, num_gpus=0, num_neurons=0),
    )


# --- paths ------------------------------------------------------------------------------------


def test_base_dir_honours_sagemaker_base_dir(tmp_path: Path) -> None:
    assert base_dir({}) == Path("/opt/ml")
    assert base_dir({"SAGEMAKER_BASE_DIR": str(tmp_path)}) == tmp_path
    paths = job_paths(environ={"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert paths.hyperparameters_file == tmp_path / "input/config/hyperparameters.json"
    assert paths.output_intermediate_dir == tmp_path / "output/intermediate"
    assert paths.channel_dir("train") == tmp_path / "input/data/train"


def test_relative_base_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert base_dir({"SAGEMAKER_BASE_DIR": "job"}) == tmp_path / "job"


def test_functions_default_to_the_environment_base_dir(job_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    base = job_dir(hyperparameters={"epochs": 3}, channels=["train"])
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    assert load_hyperparameters() == {"epochs": 3}
    assert list(load_input_data_config()) == ["train"]
    assert load_resource_config()["hosts"] == ["algo-1"]
    assert get_channel_dir("train") == base / "input/data/train"


# --- config files -------------------------------------------------------------------------------


def test_load_config_names_the_file_on_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": 1,,}')
    with pytest.raises(ConfigError, match=r"x\.json: is not valid JSON .* line 1, column 9"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    assert load_config(tmp_path / "missing.json", default={}) == {}


def test_decode_hyperparameters_keeps_raw_strings() -> None:
    raw = {
        "a": "10",
        "b": '"x"',
        "c": "[1, 2]",
        "d": "plain",
        "e": "007",
        "f": "null",
        "g": 5,
        "h": '{"k": 1}',
    }
    assert decode_hyperparameters(raw) == {
        "a": 10,
        "b": "x",
        "c": [1, 2],
        "d": "plain",
        "e": "007",
        "f": None,
        "g": 5,
        "h": {"k": 1},
    }


def test_split_hyperparameters() -> None:
    split = split_hyperparameters(
        {
            "lr": 1,
            "sagemaker_program": "t.py",
            "_tuning_objective_metric": "loss",
            "sagemaker_mpi_enabled": True,
            "sagemaker_enable_cloudwatch_metrics": False,
        }
    )
    assert split.user == {"lr": 1}
    assert split.reserved == {
        "sagemaker_program": "t.py",
        "_tuning_objective_metric": "loss",
        "sagemaker_enable_cloudwatch_metrics": False,
    }
    assert split.framework == {"sagemaker_mpi_enabled": True}


def test_hyperparameter_names_must_be_exportable(job_dir) -> None:
    base = job_dir(raw_hyperparameters={"a=b": "1"})
    with pytest.raises(ConfigError, match=r"hyperparameters\.json: the hyperparameter name 'a=b' contains ="):
        load_hyperparameters(base)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], r"holds a list \(\[\]\), expected a JSON object"),
        ({"current_host": "a"}, 'has no "hosts" key'),
        ({"current_host": "a", "hosts": []}, r"'hosts' is \[\] \(a list\), expected a non-empty list"),
        ({"current_host": "a", "hosts": ["a", 3]}, r"'hosts' is \[\"a\", 3\]"),
        ({"current_host": "a", "hosts": ["a", "a"]}, r"names \[\"a\"\] more than once"),
        ({"current_host": 1, "hosts": ["a"]}, r"'current_host' is 1, which is not among 'hosts'"),
        ({"current_host": "a", "hosts": ["a"], "network_interface_name": 5}, "'network_interface_name' is 5"),
        ({"current_host": "a", "hosts": ["a"], "instance_groups": {}}, "'instance_groups' is {}"),
        (
            {"current_host": "a", "hosts": ["a"], "instance_groups": [{"hosts": ["a"]}]},
            r"instance_groups\[0\] is",
        ),
    ],
)
def test_resource_config_types_are_checked(config: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_resource_config(config, "rc.json")


def test_missing_resource_config_is_this_machine(tmp_path: Path) -> None:
    host = socket.gethostname()
    assert load_resource_config(tmp_path, {}) == {"current_host": host, "hosts": [host]}


def test_resource_config_from_tf_config(tmp_path: Path) -> None:
    tf_config = json.dumps(
        {
            "cluster": {"worker": ["w0:2222", "w1:2222"], "chief": ["c0:2222"], "ps": ["p0:2223"]},
            "task": {"type": "worker", "index": 1},
        }
    )
    assert resource_config_from_tf_config(tf_config) == {
        "current_host": "w1",
        "hosts": ["c0", "w0", "w1", "p0"],
    }
    assert load_resource_config(tmp_path, {"TF_CONFIG": tf_config})["current_host"] == "w1"
    with pytest.raises(ConfigError, match=r"TF_CONFIG: .* is not a tf\.distribute cluster description"):
        resource_config_from_tf_config('{"cluster": {}}')


def test_input_data_config_checks(job_dir) -> None:
    base = job_dir()
    (base / CONFIG / "inputdataconfig.json").write_text('{"train": []}')
    with pytest.raises(ConfigError, match=r"channel 'train' is \[\] \(a list\), expected an object"):
        load_input_data_config(base)
    (base / CONFIG / "inputdataconfig.json").unlink()
    assert load_input_data_config(base) == {}


def test_checkpoint_config(job_dir) -> None:
    base = job_dir()
    assert load_checkpoint_config(base) == {}
    (base / CONFIG / "checkpointconfig.json").write_text('{"LocalPath": "/opt/ml/checkpoints"}')
    assert env_for(base).checkpoint_config == {"LocalPath": "/opt/ml/checkpoints"}


def test_get_channel_dir_names_the_channels_with_data(job_dir) -> None:
    base = job_dir(channels=["train", "validation"])
    assert get_channel_dir("train", base) == base / "input/data/train"
    with pytest.raises(
        ConfigError, match=r"channel 'valdation' has no data directory .*Did you mean 'validation'\?"
    ):
        get_channel_dir("valdation", base)
    assert get_channel_dir("stream", base, must_exist=False) == base / "input/data/stream"


# --- hardware -----------------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cgroup_v2_limit(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "proc": "0::/job/step\n",
            "fs/cgroup.controllers": "cpu",
            "fs/cpu.max": "max 100000\n",
            "fs/job/cpu.max": "250000 100000\n",
            "fs/job/step/cpu.max": "max 100000\n",
        },
    )
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "proc") == 2.5


def test_cgroup_v1_limit_and_container_view(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "proc": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
            "fs/cpu,cpuacct/cpu.cfs_quota_us": "150000\n",
            "fs/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    # inside a container the cgroup's own path is not visible: the mount root is the container's cgroup
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "proc") == 1.5


def test_cgroup_unlimited(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"proc": "1:cpu:/\n", "fs/cpu/cpu.cfs_quota_us": "-1\n", "fs/cpu/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "proc") is None
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "nothing") is None


def test_available_cpus_respects_affinity() -> None:
    count = available_cpus()
    assert 1 <= count <= len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit()
    if limit is not None:
        assert count <= max(1, -(-limit // 1))


def fake_tool(directory: Path, name: str, script: str) -> str:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ['PATH']}"


def test_available_gpus_counts_nvidia_smi_lines(tmp_path: Path) -> None:
    assert available_gpus({"PATH": str(tmp_path)}) == 0  # absent: none, nothing run
    path = fake_tool(
        tmp_path / "bin", "nvidia-smi", "echo 'GPU 0: A'\necho 'GPU 1: B'\necho 'GPU 2: C'\necho 'MIG x'\n"
    )
    assert available_gpus({"PATH": path}) == 3
    failing = fake_tool(tmp_path / "bad", "nvidia-smi", "echo 'GPU 0: A'\nexit 9\n")
    assert available_gpus({"PATH": failing}) == 0


def test_available_neurons(tmp_path: Path) -> None:
    assert available_neurons({"PATH": str(tmp_path)}) == 0
    path = fake_tool(tmp_path / "bin", "neuron-ls", 'echo \'[{"nc_count": 2}, {"nc_count": 2}]\'\n')
    assert available_neurons({"PATH": path}) == 4
    assert available_neurons({"PATH": str(tmp_path)}, "ml.trn2.48xlarge") == 64


# --- create_environment ------------------------------------------------------------------------


def test_create_environment_reads_every_fact(job_dir) -> None:
    base = job_dir(
        hyperparameters={
            "epochs": 3,
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": "s3://b/src.tar.gz",
            "sagemaker_region": "eu-west-1",
            "sagemaker_container_log_level": 10,
            "sagemaker_job_name": "hp-job",
            "sagemaker_s3_output": "s3://b/out",
            "sagemaker_mpi_enabled": True,
        },
        channels=["train"],
        hosts=["algo-1", "algo-2"],
        current_host="algo-2",
    )
    env = env_for(base, SAGEMAKER_TRAINING_MODULE="fw.training:main", SM_HP_MP_PARAMETERS="{}")
    assert env.hyperparameters == {"epochs": 3}
    assert env.additional_framework_parameters == {"sagemaker_mpi_enabled": True}
    assert env.raw_hyperparameters["sagemaker_program"] == "train.py"
    assert (env.user_entry_point, env.module_name, env.module_dir) == (
        "train.py",
        "train",
        "s3://b/src.tar.gz",
    )
    assert (env.region, env.log_level, env.job_name, env.s3_output) == (
        "eu-west-1",
        10,
        "hp-job",
        "s3://b/out",
    )
    assert env.framework_module == "fw.training:main"
    assert env.is_modelparallel_enabled is False
    assert env.hosts == ("algo-1", "algo-2")
    assert (env.current_host, env.current_host_rank, env.host_count) == ("algo-2", 1, 2)
    assert (env.master_hostname, env.is_master) == ("algo-1", False)
    assert env.distribution_instance_groups == ("homogeneousCluster",)
    assert env.channel_dirs == {"train": base / "input/data/train"}
    assert (env.available_cpus, env.available_gpus) == (4, 0)
    for name in ("input_dir", "input_config_dir", "model_dir", "output_dir", "output_data_dir", "code_dir"):
        assert getattr(env, name) == getattr(env.paths, name)


def test_environment_variables_win_where_the_contract_says(job_dir) -> None:
    base = job_dir(hyperparameters={"sagemaker_job_name": "hp-job"}, entry_point="train.py")
    env = env_for(base, SAGEMAKER_PROGRAM="other.py", TRAINING_JOB_NAME="env-job", AWS_REGION="ap-south-1")
    assert (env.user_entry_point, env.module_name) == ("other.py", "other")
    assert env.job_name == "env-job"
    assert env.region == "ap-south-1"
    assert env.is_modelparallel_enabled is None


def test_log_level_names_are_accepted(job_dir) -> None:
    base = job_dir(hyperparameters={"sagemaker_container_log_level": "DEBUG"})
    assert env_for(base).log_level == 10


def test_replacing_what_is_read(job_dir) -> None:
    base = job_dir()
    facts = PlatformFacts(
        name="mine",
        hyperparameters={"x": 1},
        resource_config={"current_host": "h2", "hosts": ["h1", "h2"]},
        input_data_config={},
        num_cpus=1,
        num_gpus=8,
        num_neurons=0,
    )
    env = create_environment(base, {}, platform=facts)
    assert (env.hyperparameters, env.hosts, env.num_gpus, env.platform) == ({"x": 1}, ("h1", "h2"), 8, "mine")
    wrong = PlatformFacts(resource_config={"current_host": "h3", "hosts": ["h1"]}, num_neurons=0)
    with pytest.raises(ConfigError, match="resource_config: 'current_host'"):
        create_environment(base, {}, platform=wrong)


def test_heterogeneous_distribution_hosts(job_dir) -> None:
    groups = [
        {"instance_group_name": "a", "instance_type": "ml.p4d.24xlarge", "hosts": ["algo-3", "algo-1"]},
        {"instance_group_name": "b", "instance_type": "ml.c5.xlarge", "hosts": ["algo-2"]},
    ]
    rc = {"current_host": "algo-2", "current_group_name": "b", "hosts": ["algo-1", "algo-2", "algo-3"]}
    base = job_dir(
        hyperparameters={"sagemaker_distribution_instance_groups": ["a"]},
        resource_config={**rc, "instance_groups": groups},
    )
    env = env_for(base)
    assert env.is_hetero
    assert env.instance_groups == ("a", "b")
    assert env.instance_groups_dict["a"] == groups[0]
    assert env.current_instance_group_hosts == ("algo-2",)
    assert env.distribution_hosts == ("algo-3", "algo-1")
    assert env.master_hostname == "algo-3"
    assert not env.is_master


def test_training_env_is_immutable_hashable_and_picklable(job_dir) -> None:
    env = env_for(job_dir(hyperparameters={"layers": [1, 2]}, channels=["train"]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.current_host = "x"  # type: ignore[misc]
    with pytest.raises(TypeError, match="read-only"):
        env.hyperparameters["layers"] = 3  # type: ignore[index]
    with pytest.raises(TypeError, match="read-only"):
        env.resource_config.update({})  # type: ignore[attr-defined]
    assert isinstance(hash(env), int)
    copy = pickle.loads(pickle.dumps(env))
    assert copy == env and hash(copy) == hash(env)
    assert json.loads(json.dumps(env.hyperparameters)) == {"layers": [1, 2]}
    changed = dataclasses.replace(env, num_gpus=2)
    assert changed != env and changed.hyperparameters == env.hyperparameters


def test_booleans_as_flags_switch(job_dir) -> None:
    base = job_dir()
    assert env_for(base).booleans_as_flags is False
    assert env_for(base, SMC_BOOL_FLAGS="true").booleans_as_flags is True
    assert env_for(base, SMC_BOOL_FLAGS="0").booleans_as_flags is False
    with pytest.raises(
        ConfigError, match=r"SMC_BOOL_FLAGS is 'maybe'.*takes 1/true/yes/on or 0/false/no/off"
    ):
        env_for(base, SMC_BOOL_FLAGS="maybe")
