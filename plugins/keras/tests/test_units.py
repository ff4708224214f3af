"""The adapter's plain functions: distribution variables, checkpoint dir, no framework import at load."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from smc_keras.checkpoints import checkpoint_dir
from smc_keras.distribution import jax_env, processes_per_host, tensorflow_env, torch_env
from smc_keras.plugin import checkpoint_dir as job_checkpoint_dir
from smc_keras.plugin import register_settings

from smc_core import ConfigError, Settings, create_environment


def environment(job_dir, current_host="algo-2", environ=None, **hyperparameters):
    config = {"current_host": current_host, "hosts": ["algo-1", "algo-2", "algo-3"]}
    base = job_dir(hyperparameters=hyperparameters, resource_config=config)
    environ = environ or {}
    env = create_environment(base, environ)
    return dataclasses.replace(env, settings=Settings(register_settings(), environ))


def test_jax_variables_name_every_host_and_this_process(job_dir):
    env = environment(job_dir, environ={"SMC_KERAS_RENDEZVOUS_PORT": "9100"})
    variables = jax_env(env)
    assert variables["KERAS_DISTRIBUTION_JOB_ADDRESSES"] == "algo-1:9100,algo-2:9100,algo-3:9100"
    assert variables["KERAS_DISTRIBUTION_NUM_PROCESSES"] == "3"
    assert variables["KERAS_DISTRIBUTION_PROCESS_ID"] == "1"


def test_tf_config_is_the_multi_worker_contract(job_dir):
    config = json.loads(tensorflow_env(environment(job_dir, current_host="algo-3"))["TF_CONFIG"])
    assert config["cluster"] == {"worker": ["algo-1:8890", "algo-2:8890", "algo-3:8890"]}
    assert config["task"] == {"index": 2, "type": "worker"}


def test_torch_variables_in_function_mode_give_this_host_its_rank(job_dir):
    env = environment(job_dir)
    assert torch_env(env, function_mode=False) == {"MASTER_ADDR": "algo-1", "MASTER_PORT": "7777"}
    ranked = torch_env(env, function_mode=True)
    assert (ranked["RANK"], ranked["WORLD_SIZE"], ranked["LOCAL_RANK"]) == ("1", "3", "0")


def test_processes_per_host_counts_gpus_else_neuron_cores_as_the_reference(job_dir):
    env = environment(job_dir)
    assert processes_per_host(dataclasses.replace(env, num_gpus=0, num_neurons=32)) == 32  # trn1.32xlarge
    assert processes_per_host(dataclasses.replace(env, num_gpus=8, num_neurons=0)) == 8
    assert processes_per_host(dataclasses.replace(env, num_gpus=0, num_neurons=0)) == 1


def test_processes_per_host_must_be_a_whole_number(job_dir):
    assert processes_per_host(environment(job_dir, sagemaker_mpi_num_of_processes_per_host=3)) == 3
    assert processes_per_host(environment(job_dir)) == 1  # no GPU, no Neuron core
    # parsed once, with the job (TrainingEnv.processes_per_host): a bad value fails there
    with pytest.raises(ConfigError, match=r"'sagemaker_mpi_num_of_processes_per_host' is .two."):
        environment(job_dir, sagemaker_mpi_num_of_processes_per_host="two")


def test_checkpoint_dir_from_checkpointconfig_json(job_dir, tmp_path):
    env = environment(job_dir)
    assert job_checkpoint_dir(env) == env.paths.base_dir / "checkpoints"  # /opt/ml/checkpoints
    config_dir = env.paths.base_dir / "input" / "config"
    (config_dir / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(tmp_path / "ck")}))
    reread = create_environment(env.paths.base_dir, {})
    assert job_checkpoint_dir(reread) == tmp_path / "ck"
    # in the training process: what smc-keras exported, else the file (other toolkits), else the default
    assert (
        checkpoint_dir({"SMC_KERAS_CHECKPOINT_DIR": "/x", "SM_INPUT_CONFIG_DIR": str(config_dir)}).name == "x"
    )
    assert checkpoint_dir({"SM_INPUT_CONFIG_DIR": str(config_dir)}) == tmp_path / "ck"
    assert str(checkpoint_dir({"SM_INPUT_CONFIG_DIR": str(tmp_path / "none")})) == "/opt/ml/checkpoints"


def test_loading_the_adapter_imports_no_framework():
    code = (
        "import sys, smc_keras, smc_keras.plugin\n"
        "loaded = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_switches_declared_in_the_metadata_are_those_claimed():
    """pyproject.toml's smc.switches entry points (read by smc when this adapter is not loaded) name
    exactly what claim_switches returns."""
    from importlib import metadata

    from smc_keras.plugin import claim_switches

    declared = {
        ep.name for ep in metadata.entry_points(group="smc.switches") if ep.value == "smc_keras.plugin"
    }
    assert declared == set(claim_switches())
