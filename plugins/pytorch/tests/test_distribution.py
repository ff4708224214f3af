"""The switches, counts, variables and torchrun command, as plain functions."""

from __future__ import annotations

import subprocess
import sys

import pytest
from smc_pytorch.distribution import (
    SETTINGS,
    distribution_switch,
    master_port,
    processes_per_host,
    rendezvous_env,
    torchrun_args,
)
from smc_pytorch.plugin import failure_reason

from smc_core import ConfigError, EntryKind, Settings, UserCode, create_environment


def env_of(job_dir, **kwargs):
    return env_with(job_dir, {}, **kwargs)


def test_switches(job_dir):
    assert distribution_switch(env_of(job_dir)) is None
    on = env_of(job_dir, hyperparameters={"sagemaker_pytorch_ddp_enabled": True})
    assert distribution_switch(on) == "sagemaker_pytorch_ddp_enabled"
    off = env_of(job_dir, hyperparameters={"sagemaker_torch_distributed_enabled": False})
    assert distribution_switch(off) is None
    mapping_off = env_of(job_dir, hyperparameters={"sagemaker_pytorch_ddp_enabled": {"enabled": False}})
    assert distribution_switch(mapping_off) is None


def env_with(job_dir, environ, **kwargs):
    """A TrainingEnv whose settings (the adapter's included) come from ``environ``."""
    return create_environment(job_dir(**kwargs), environ, settings=Settings(SETTINGS, environ))


def test_processes_per_host_order(job_dir):
    assert processes_per_host(env_with(job_dir, {})) == 1
    three = {"SMC_PYTORCH_PROCESSES_PER_HOST": "3"}
    assert processes_per_host(env_with(job_dir, three)) == 3
    named = env_with(job_dir, three, hyperparameters={"sagemaker_mpi_num_of_processes_per_host": 4})
    assert processes_per_host(named) == 4
    with pytest.raises(ConfigError, match="SMC_PYTORCH_PROCESSES_PER_HOST is 'many'"):
        env_with(job_dir, {"SMC_PYTORCH_PROCESSES_PER_HOST": "many"})


def test_one_master_port_for_torchrun_and_the_exported_variable(job_dir, monkeypatch):
    # The port comes from the job's settings alone: os.environ is not read behind the runner's back.
    monkeypatch.setenv("SMC_PYTORCH_MASTER_PORT", "1234")
    training_env = env_with(
        job_dir,
        {"SMC_PYTORCH_MASTER_PORT": "29400"},
        hyperparameters={"sagemaker_torch_distributed_enabled": True},
    )
    assert rendezvous_env(training_env)["MASTER_PORT"] == "29400"
    code = UserCode(code_dir=training_env.code_dir, entry_point="train.py", kind=EntryKind.PYTHON)
    args = torchrun_args(training_env, code, [], nproc_per_host=1, port=master_port(training_env))
    assert args[args.index("--master_port") + 1] == "29400"
    assert master_port(env_with(job_dir, {})) == 7777


def test_torchrun_command_for_the_second_host(job_dir):
    training_env = env_of(
        job_dir,
        hosts=["algo-1", "algo-2"],
        current_host="algo-2",
        hyperparameters={"sagemaker_torch_distributed_enabled": True},
    )
    code = UserCode(code_dir=training_env.code_dir, entry_point="train.py", kind=EntryKind.PYTHON)
    args = torchrun_args(
        training_env, code, ["--epochs", "2"], nproc_per_host=4, port=master_port(training_env)
    )
    assert args[:10] == [
        "--nnodes", "2", "--nproc_per_node", "4", "--node_rank", "1", "--master_addr", "algo-1",
        "--master_port", "7777",
    ]  # fmt: skip
    assert args[-3:] == ["train.py", "--epochs", "2"]
    module = UserCode(
        code_dir=training_env.code_dir, entry_point="pkg", kind=EntryKind.MODULE, module_name="pkg"
    )
    assert torchrun_args(training_env, module, [], nproc_per_host=1)[-2:] == ["--module", "pkg"]
    (training_env.code_dir / "run.sh").write_text("echo plain\n")
    shell = UserCode(code_dir=training_env.code_dir, entry_point="run.sh", kind=EntryKind.SHELL)
    assert torchrun_args(training_env, shell, [], nproc_per_host=1)[-3:] == [
        "--no-python",
        "/bin/sh",
        "./run.sh",
    ]
    (training_env.code_dir / "bash.sh").write_text("#!/usr/bin/env bash\necho bash\n")
    bash = UserCode(code_dir=training_env.code_dir, entry_point="bash.sh", kind=EntryKind.SHELL)
    assert torchrun_args(training_env, bash, ["-x"], nproc_per_host=1)[-5:] == [
        "--no-python", "/usr/bin/env", "bash", "./bash.sh", "-x",
    ]  # fmt: skip


def test_rendezvous_variables(job_dir):
    two = env_of(
        job_dir,
        hosts=["algo-1", "algo-2"],
        resource_config={
            "current_host": "algo-1",
            "hosts": ["algo-1", "algo-2"],
            "network_interface_name": "lo",
        },
    )
    variables = rendezvous_env(two)
    assert variables == {
        "MASTER_ADDR": "algo-1",
        "MASTER_PORT": "7777",
        "NCCL_SOCKET_IFNAME": "lo",
        "GLOO_SOCKET_IFNAME": "lo",
        "NCCL_DEBUG": "WARN",
    }
    debug = env_with(
        job_dir,
        {"NCCL_DEBUG": "INFO"},
        resource_config={
            "current_host": "algo-1",
            "hosts": ["algo-1", "algo-2"],
            "network_interface_name": "lo",
        },
    )
    assert "NCCL_DEBUG" not in rendezvous_env(debug)
    missing = env_of(
        job_dir,
        resource_config={
            "current_host": "algo-1",
            "hosts": ["algo-1"],
            "network_interface_name": "no-such-if9",
        },
    )
    assert "GLOO_SOCKET_IFNAME" not in rendezvous_env(missing)


def test_failure_reason_names_rank_and_host():
    root = {
        "rank": 3,
        "local_rank": 1,
        "host": "algo-2",
        "exitcode": 1,
        "traceback": "x\n" * 1000 + "ValueError: boom",
    }
    text = failure_reason(root, "algo-1")
    assert text.startswith("rank 3 (local rank 1) on host algo-2 failed with exit code 1; algo-1 stopped")
    assert text.endswith("ValueError: boom") and len(text) < 1000


def test_loading_the_plugin_does_not_import_torch():
    code = "import sys, smc_pytorch.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_switches_declared_in_the_metadata_are_those_claimed():
    """pyproject.toml's smc.switches entry points (read by smc when this adapter is not loaded) name
    exactly what claim_switches returns."""
    from importlib import metadata

    from smc_pytorch.plugin import claim_switches

    declared = {
        ep.name for ep in metadata.entry_points(group="smc.switches") if ep.value == "smc_pytorch.plugin"
    }
    assert declared == set(claim_switches())
