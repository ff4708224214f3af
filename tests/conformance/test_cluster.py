"""Conformance: heterogeneous clusters, distribution groups, the master host, and argparse scripts."""

from __future__ import annotations

import json

from .conftest import PROBE

HETERO = {
    "current_host": "algo-3",
    "current_instance_type": "ml.c5.xlarge",
    "current_group_name": "data",
    "hosts": ["algo-1", "algo-2", "algo-3"],
    "network_interface_name": "eth1",
    "instance_groups": [
        {"instance_group_name": "train", "instance_type": "ml.p4d.24xlarge", "hosts": ["algo-2", "algo-1"]},
        {"instance_group_name": "data", "instance_type": "ml.c5.xlarge", "hosts": ["algo-3"]},
    ],
}


def test_heterogeneous_cluster_facts(job_dir, run_train) -> None:
    base = job_dir(
        hyperparameters={"sagemaker_distribution_instance_groups": ["train"], "sagemaker_mpi_enabled": True},
        resource_config=HETERO,
        code={"train.py": PROBE},
        entry_point="train.py",
    )
    run = run_train(base)
    assert run.code == 0, run.stderr
    sm = run.sm()
    assert sm["SM_IS_HETERO"] == "true"
    assert sm["SM_CURRENT_INSTANCE_TYPE"] == "ml.c5.xlarge"
    assert sm["SM_CURRENT_INSTANCE_GROUP"] == "data"
    assert sm["SM_CURRENT_INSTANCE_GROUP_HOSTS"] == '["algo-3"]'
    assert sm["SM_INSTANCE_GROUPS"] == '["train","data"]'
    assert json.loads(sm["SM_INSTANCE_GROUPS_DICT"]) == {
        g["instance_group_name"]: g for g in HETERO["instance_groups"]
    }
    assert sm["SM_DISTRIBUTION_INSTANCE_GROUPS"] == '["train"]'
    assert sm["SM_NETWORK_INTERFACE_NAME"] == "eth1"
    assert sm["SM_HOSTS"] == '["algo-1","algo-2","algo-3"]'
    training_env = json.loads(sm["SM_TRAINING_ENV"])
    # the master is the first distribution host, in the file's order within the group
    assert training_env["distribution_hosts"] == ["algo-2", "algo-1"]
    assert training_env["master_hostname"] == "algo-2"
    assert training_env["is_master"] is False
    assert sm["SM_MASTER_ADDR"] == "algo-2"
    assert sm["SM_HOST_COUNT"] == "3"
    assert sm["SM_CURRENT_HOST_RANK"] == "2"


def test_without_a_distribution_switch_the_master_is_the_first_host(job_dir, run_train) -> None:
    config = {**HETERO, "current_host": "algo-1", "current_group_name": "train"}
    base = job_dir(resource_config=config, code={"train.py": PROBE}, entry_point="train.py")
    run = run_train(base)
    assert run.code == 0, run.stderr
    training_env = json.loads(run.env["SM_TRAINING_ENV"])
    assert training_env["distribution_instance_groups"] == []
    assert training_env["distribution_hosts"] == []
    assert training_env["master_hostname"] == "algo-1"
    assert training_env["is_master"] is True
    assert run.env["SM_CURRENT_INSTANCE_GROUP_HOSTS"] == '["algo-2","algo-1"]'


ARGPARSE_SCRIPT = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--use-amp", action="store_true")
parser.add_argument("--debug", action="store_true")
parser.add_argument("-k", type=int)
parser.add_argument("--model_dir", default=os.environ["SM_MODEL_DIR"])
args = parser.parse_args()
with open(os.environ["PROBE_OUT"], "w") as f:
    json.dump({"argv": [], "cwd": os.getcwd(), "env": dict(os.environ), "args": vars(args)}, f)
"""


def test_booleans_as_bare_flags_for_store_true_options(job_dir, run_train) -> None:
    base = job_dir(
        hyperparameters={"epochs": 3, "use-amp": True, "debug": False, "k": 2},
        code={"train.py": ARGPARSE_SCRIPT},
        entry_point="train.py",
    )
    run = run_train(base, env={"SMC_BOOL_FLAGS": "1"})
    assert run.code == 0, run.stderr
    assert run.record is not None
    assert run.record["args"] == {
        "epochs": 3,
        "use_amp": True,
        "debug": False,
        "k": 2,
        "model_dir": str(base / "model"),
    }
    assert json.loads(run.env["SM_USER_ARGS"]) == ["--epochs", "3", "-k", "2", "--use-amp"]
    assert run.env["SM_HP_USE-AMP"] == "true"  # the variables do not change


def test_without_the_switch_store_true_scripts_get_the_contract_argv(job_dir, run_train) -> None:
    base = job_dir(
        hyperparameters={"use-amp": True}, code={"train.py": ARGPARSE_SCRIPT}, entry_point="train.py"
    )
    run = run_train(base)
    assert run.code == 2  # argparse rejects "--use-amp True", as in SageMaker's containers
    assert "unrecognized arguments: True" in run.stderr
