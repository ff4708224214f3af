"""Conformance: a job directory written the way the SageMaker SDK writes it, run through ``train``.

The expected values are the container contract's, checked against what the reference toolkit
(sagemaker-training 5.1.4) produces for the same job directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from smc_core.job.environment import available_cpus
from smc_core.job.exports import TRAINING_ENV_KEYS

from .conftest import PROBE

SHELL = "a b 'c' \"d\" $HOME; rm -rf / | `x` *"

HYPERPARAMETERS = {
    "epochs": 10,
    "lr": 0.01,
    "sci": 1e-05,
    "name": "resnet",
    "use_amp": True,
    "off": False,
    "layers": [64, 32],
    "nested": [1, [2, 3], {"k": "v"}],
    "words": ["a", "b c"],
    "opt": {"name": "adam", "list": [1, 2], "outer": {"inner": 1}},
    "nothing": None,
    "model-name": "x",
    "k": 3,
    "Zeta": "z",
    "shell": SHELL,
    "code": "007",
    "greeting": "héllo",
    "optim.momentum": 0.9,
    "sagemaker_region": "us-west-2",
    "sagemaker_job_name": "job-1",
    "sagemaker_container_log_level": 20,
    "sagemaker_pytorch_ddp_enabled": True,
    "_tuning_objective_metric": "loss",
}
RAW = {"raw": "not json {", "bare": "plain"}  # other clients send bare strings
CHANNELS = {
    "train": {
        "ContentType": "text/csv",
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
    },
    "validation": {"TrainingInputMode": "File"},
}

EXPECTED_ARGV = [
    "--Zeta", "z", "--bare", "plain", "--code", "007", "--epochs", "10", "--greeting", "héllo",
    "-k", "3", "--layers", "[64, 32]", "--lr", "0.01", "--model-name", "x", "--name", "resnet",
    "--nested", "[1, [2, 3], {'k': 'v'}]", "--nothing", "", "--off", "False",
    "--opt", "list=[1, 2],name=adam,outer={'inner': 1}", "--optim.momentum", "0.9",
    "--raw", "not json {", "--sci", "1e-05", "--shell", SHELL, "--use_amp", "True",
    "--words", "['a', 'b c']",
]  # fmt: skip

EXPECTED_HP_VARS = {
    "SM_HP_BARE": "plain",
    "SM_HP_CODE": "007",
    "SM_HP_EPOCHS": "10",
    "SM_HP_GREETING": "héllo",
    "SM_HP_K": "3",
    "SM_HP_LAYERS": "[64,32]",
    "SM_HP_LR": "0.01",
    "SM_HP_MODEL-NAME": "x",
    "SM_HP_NAME": "resnet",
    "SM_HP_NESTED": '[1,[2,3],{"k":"v"}]',
    "SM_HP_NOTHING": "",
    "SM_HP_OFF": "false",
    "SM_HP_OPT": '{"list":[1,2],"name":"adam","outer":{"inner":1}}',
    "SM_HP_OPTIM.MOMENTUM": "0.9",
    "SM_HP_RAW": "not json {",
    "SM_HP_SCI": "1e-05",
    "SM_HP_SHELL": SHELL,
    "SM_HP_USE_AMP": "true",
    "SM_HP_WORDS": '["a","b c"]',
    "SM_HP_ZETA": "z",
}

EXPECTED_HPS = (
    '{"Zeta":"z","bare":"plain","code":"007","epochs":10,"greeting":"h\\u00e9llo","k":3,"layers":[64,32],'
    '"lr":0.01,"model-name":"x","name":"resnet","nested":[1,[2,3],{"k":"v"}],"nothing":null,"off":false,'
    '"opt":{"list":[1,2],"name":"adam","outer":{"inner":1}},"optim.momentum":0.9,"raw":"not json {",'
    '"sci":1e-05,"shell":"a b \'c\' \\"d\\" $HOME; rm -rf / | `x` *","use_amp":true,"words":["a","b c"]}'
)


def sdk_job(job_dir, **kwargs):  # type: ignore[no-untyped-def]
    return job_dir(
        hyperparameters=HYPERPARAMETERS,
        raw_hyperparameters=RAW,
        channels=CHANNELS,
        hosts=["algo-1", "algo-2"],
        current_host="algo-1",
        code={"train.py": PROBE},
        entry_point="train.py",
        **kwargs,
    )


def test_argv_is_rendered_as_the_contract_says(job_dir, run_train) -> None:
    run = run_train(sdk_job(job_dir), env={"TRAINING_JOB_NAME": "conformance-job"})
    assert run.code == 0, run.stderr
    assert run.argv == EXPECTED_ARGV
    assert json.loads(run.env["SM_USER_ARGS"]) == EXPECTED_ARGV
    assert '"h\\u00e9llo"' in run.env["SM_USER_ARGS"]


def test_working_directory_and_python_path(job_dir, run_train) -> None:
    base = sdk_job(job_dir)
    run = run_train(base)
    assert run.code == 0, run.stderr
    assert run.record is not None
    assert run.record["cwd"] == str(base / "code")
    assert run.env["PYTHONPATH"].split(os.pathsep)[0] == str(base / "code")
    assert run.env["PYTHONUNBUFFERED"] == "1"
    assert (base / "output" / "success").exists()


def test_every_sm_variable_has_the_contract_value(job_dir, run_train) -> None:
    base = sdk_job(job_dir)
    run = run_train(base, env={"TRAINING_JOB_NAME": "conformance-job"})
    assert run.code == 0, run.stderr
    sm = run.sm()
    for name, value in EXPECTED_HP_VARS.items():
        assert sm[name] == value, name
    assert sorted(k for k in sm if k.startswith("SM_HP_")) == sorted(EXPECTED_HP_VARS)
    assert sm["SM_HPS"] == EXPECTED_HPS
    b = str(base)
    expected = {
        "SM_CHANNELS": '["train","validation"]',
        "SM_CHANNEL_TRAIN": f"{b}/input/data/train",
        "SM_CHANNEL_VALIDATION": f"{b}/input/data/validation",
        "SM_CURRENT_HOST": "algo-1",
        "SM_CURRENT_INSTANCE_GROUP": "homogeneousCluster",
        "SM_CURRENT_INSTANCE_GROUP_HOSTS": "[]",
        "SM_CURRENT_INSTANCE_TYPE": "local",
        "SM_DISTRIBUTION_INSTANCE_GROUPS": '["homogeneousCluster"]',
        "SM_FRAMEWORK_MODULE": "",
        "SM_FRAMEWORK_PARAMS": '{"sagemaker_pytorch_ddp_enabled":true}',
        "SM_HOSTS": '["algo-1","algo-2"]',
        "SM_INPUT_CONFIG_DIR": f"{b}/input/config",
        "SM_INPUT_DATA_CONFIG": (
            '{"train":{"ContentType":"text/csv","RecordWrapperType":"None","S3DistributionType":"FullyReplicated",'
            '"TrainingInputMode":"File"},"validation":{"TrainingInputMode":"File"}}'
        ),
        "SM_INPUT_DIR": f"{b}/input",
        "SM_INSTANCE_GROUPS": "[]",
        "SM_INSTANCE_GROUPS_DICT": "{}",
        "SM_IS_HETERO": "false",
        "SM_LOG_LEVEL": "20",
        "SM_MODEL_DIR": f"{b}/model",
        "SM_MODULE_DIR": f"{b}/code",
        "SM_MODULE_NAME": "train",
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "SM_NUM_CPUS": str(available_cpus()),
        "SM_NUM_GPUS": "0",
        "SM_NUM_NEURONS": "0",
        "SM_OUTPUT_DATA_DIR": f"{b}/output/data",
        "SM_OUTPUT_DIR": f"{b}/output",
        "SM_OUTPUT_INTERMEDIATE_DIR": f"{b}/output/intermediate",
        "SM_RESOURCE_CONFIG": (
            '{"current_host":"algo-1","hosts":["algo-1","algo-2"],"network_interface_name":"eth0"}'
        ),
        "SM_USER_ENTRY_POINT": "train.py",
        # smc's additions
        "SM_MASTER_ADDR": "algo-1",
        "SM_HOST_COUNT": "2",
        "SM_CURRENT_HOST_RANK": "0",
        "SM_CHECKPOINT_DIR": f"{base}/checkpoints",
    }
    for name, value in expected.items():
        assert sm[name] == value, name
    assert set(sm) == {*expected, *EXPECTED_HP_VARS, "SM_HPS", "SM_USER_ARGS", "SM_TRAINING_ENV"}
    assert run.env["CURRENT_HOST"] == "algo-1"
    assert run.env["SAGEMAKER_JOB_NAME"] == "conformance-job"
    assert run.env["SAGEMAKER_REGION"] == "us-west-2"


def test_training_env_holds_every_contract_key(job_dir, run_train) -> None:
    base = sdk_job(job_dir)
    run = run_train(base, env={"TRAINING_JOB_NAME": "conformance-job"})
    assert run.code == 0, run.stderr
    text = run.env["SM_TRAINING_ENV"]
    training_env = json.loads(text)
    assert text == json.dumps(training_env, sort_keys=True, separators=(",", ":"))  # compact, sorted
    assert set(TRAINING_ENV_KEYS) <= set(training_env)
    assert set(training_env) - set(TRAINING_ENV_KEYS) == {
        "is_smddprun_installed",
        "is_smddpmprun_installed",
        "topology",
        "checkpoint_dir",  # smc's addition
    }
    b = str(base)
    assert training_env["hyperparameters"] == json.loads(EXPECTED_HPS)
    assert training_env["input_data_config"] == CHANNELS
    assert training_env["resource_config"] == {
        "current_host": "algo-1",
        "hosts": ["algo-1", "algo-2"],
        "network_interface_name": "eth0",
    }
    rest = {
        k: v
        for k, v in training_env.items()
        if k not in ("hyperparameters", "input_data_config", "resource_config")
    }
    assert rest == {
        "additional_framework_parameters": {"sagemaker_pytorch_ddp_enabled": True},
        "channel_input_dirs": {"train": f"{b}/input/data/train", "validation": f"{b}/input/data/validation"},
        "current_host": "algo-1",
        "current_instance_group": "homogeneousCluster",
        "current_instance_group_hosts": [],
        "current_instance_type": "local",
        "distribution_hosts": ["algo-1", "algo-2"],
        "distribution_instance_groups": ["homogeneousCluster"],
        "framework_module": None,
        "hosts": ["algo-1", "algo-2"],
        "input_config_dir": f"{b}/input/config",
        "input_dir": f"{b}/input",
        "instance_groups": [],
        "instance_groups_dict": {},
        "is_hetero": False,
        "is_master": True,
        "is_modelparallel_enabled": None,
        "is_smddpmprun_installed": False,
        "is_smddprun_installed": False,
        "job_name": "conformance-job",
        "log_level": 20,
        "master_hostname": "algo-1",
        "model_dir": f"{b}/model",
        "module_dir": f"{b}/code",
        "module_name": "train",
        "network_interface_name": "eth0",
        "num_cpus": available_cpus(),
        "num_gpus": 0,
        "num_neurons": 0,
        "output_data_dir": f"{b}/output/data",
        "output_dir": f"{b}/output",
        "output_intermediate_dir": f"{b}/output/intermediate",
        "topology": [],
        "user_entry_point": "train.py",
        "checkpoint_dir": f"{b}/checkpoints",
    }


def test_sagemaker_program_env_wins_over_the_hyperparameter(job_dir, run_train) -> None:
    base = job_dir(code={"probe.py": PROBE, "train.py": "raise SystemExit(7)"}, entry_point="train.py")
    run = run_train(base, env={"SAGEMAKER_PROGRAM": "probe.py"})
    assert run.code == 0, run.stderr
    assert run.env["SM_USER_ENTRY_POINT"] == "probe.py"
    assert run.env["SM_MODULE_NAME"] == "probe"
    assert "sagemaker_program" not in run.env["SM_HPS"]
    assert run.env["SM_FRAMEWORK_PARAMS"] == "{}"


def test_user_settings_of_python_variables_are_kept(job_dir, run_train, tmp_path: Path) -> None:
    base = job_dir(code={"train.py": PROBE}, entry_point="train.py")
    lib = str(tmp_path / "lib")
    run = run_train(base, env={"PYTHONUNBUFFERED": "0", "PYTHONPATH": lib})
    assert run.code == 0, run.stderr
    assert run.env["PYTHONUNBUFFERED"] == "0"
    assert run.env["PYTHONPATH"] == os.pathsep.join([str(base / "code"), lib])
    assert run.record is not None
    assert run.record["sys_path"][1:3] == [str(base / "code"), lib]


def test_gpus_are_counted_with_nvidia_smi(job_dir, run_train, tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    smi = fake_bin / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "--list-gpus" ] || exit 3\n'
        "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n"
        "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'\n"
        "echo 'not a gpu line'\n"
    )
    smi.chmod(0o755)
    base = job_dir(code={"train.py": PROBE}, entry_point="train.py")
    run = run_train(base, env={"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"})
    assert run.code == 0, run.stderr
    assert run.env["SM_NUM_GPUS"] == "2"
    assert json.loads(run.env["SM_TRAINING_ENV"])["num_gpus"] == 2
