"""Accelerator and network hardware: EFA read from sysfs (a fake tree through ``SMC_SYS_ROOT``), the
reference's instance lists as the fallback, the EFA/NCCL variables of each launcher, processes per
host from GPUs and Neuron cores, and the Neuron compile cache in a warm pool's persistent cache."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from smc_core.errors import ConfigError
from smc_core.job.accelerators import network_variables, neuron_cache_variables
from smc_core.job.environment import create_environment
from smc_core.job.hardware import EFA_NCCL_INSTANCES, EFA_RDMA_INSTANCES, detect_efa
from smc_core.job.paths import JobPaths, persistent_cache_dir
from smc_core.job.platforms.facts import PlatformFacts
from smc_core.testing.hardware import fake_efa_sysfs, fake_neuron_ls, path_with

ONE_HOST = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"}


def environment(job_dir, instance_type="ml.p4d.24xlarge", environ=None, **facts):
    base = job_dir(
        hyperparameters=facts.pop("hyperparameters", {}),
        resource_config={**ONE_HOST, "current_instance_type": instance_type},
    )
    environ = {"PATH": "/usr/bin:/bin", **(environ or {})}
    return create_environment(base, environ, platform=PlatformFacts(num_cpus=2, **facts))


# --- EFA detection ---------------------------------------------------------------------------------


def test_efa_devices_are_read_from_sysfs(tmp_path):
    root = fake_efa_sysfs(tmp_path / "sys", devices=["rdmap16s27", "rdmap17s27"])
    efa = detect_efa(root, "ml.p4d.24xlarge")
    assert efa.present and efa.rdma and efa.source == "sysfs"
    assert efa.devices == ("rdmap16s27", "rdmap17s27")  # mlx5_0 beside them is not EFA
    assert "2 device(s)" in efa.describe() and "RDMA list" in efa.describe()


def test_sysfs_finds_efa_the_stale_lists_miss(tmp_path):
    """An instance type the reference's lists do not know (the p5e story of #240) still gets EFA."""
    assert "ml.p5en.48xlarge" not in EFA_NCCL_INSTANCES
    efa = detect_efa(fake_efa_sysfs(tmp_path / "sys", devices=4, device_id="0xefa2"), "ml.p5en.48xlarge")
    assert efa.present and len(efa.devices) == 4
    assert not efa.rdma and "left to libfabric" in efa.reason  # libfabric asks the device itself


def test_a_first_generation_device_never_gets_device_rdma(tmp_path):
    efa = detect_efa(fake_efa_sysfs(tmp_path / "sys", device_id="0xefa0"), "ml.p4d.24xlarge")
    assert efa.present and not efa.rdma and "no RDMA read" in efa.reason


def test_sysfs_without_efa_is_no_efa_whatever_the_instance_type(tmp_path):
    root = fake_efa_sysfs(tmp_path / "sys", devices=0)  # only an mlx5 device
    efa = detect_efa(root, "ml.p4d.24xlarge")
    assert not efa.present and not efa.rdma and efa.source == "sysfs"


@pytest.mark.parametrize(
    ("instance_type", "present", "rdma"),
    [("ml.p4d.24xlarge", True, True), ("ml.g5.48xlarge", True, False), ("ml.c5.xlarge", False, False)],
)
def test_unreadable_sysfs_falls_back_to_the_reference_lists(tmp_path, instance_type, present, rdma):
    efa = detect_efa(tmp_path / "no-sysfs", instance_type)
    assert (efa.present, efa.rdma, efa.source) == (present, rdma, "instance list")
    assert (instance_type in EFA_NCCL_INSTANCES, instance_type in EFA_RDMA_INSTANCES) == (present, rdma)
    assert "cannot be read" in efa.reason and "fallback" in efa.reason


def test_the_environment_reads_efa_from_smc_sys_root(job_dir, tmp_path):
    root = fake_efa_sysfs(tmp_path / "sys", devices=2)
    env = environment(job_dir, environ={"SMC_SYS_ROOT": str(root)}, num_gpus=0, num_neurons=0)
    assert env.efa.present and env.efa.devices == ("rdmap16s0", "rdmap17s0")
    fallback = environment(job_dir, environ={"SMC_SYS_ROOT": str(tmp_path / "absent")}, num_gpus=0)
    assert fallback.efa.present and fallback.efa.source == "instance list"


# --- the variables of each launcher -----------------------------------------------------------------

EFA_RDMA = {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1"}


@pytest.mark.parametrize(
    ("launcher", "expected"),
    [
        ("torchrun", {**EFA_RDMA, "RDMAV_FORK_SAFE": "1", "NCCL_PROTO": "simple"}),
        ("mpi", {**EFA_RDMA, "NCCL_PROTO": "simple"}),
        ("smddp", {**EFA_RDMA, "RDMAV_FORK_SAFE": "1", "NCCL_PROTO": "simple"}),
        ("xla", {**EFA_RDMA, "RDMAV_FORK_SAFE": "1", "NCCL_PROTO": "simple", "OFI_NCCL_NIC_DUP_CONNS": "8"}),
    ],
)
def test_each_launcher_gets_the_reference_variables_on_efa(job_dir, tmp_path, launcher, expected):
    root = fake_efa_sysfs(tmp_path / "sys")
    env = environment(job_dir, environ={"SMC_SYS_ROOT": str(root)}, num_gpus=8, num_neurons=0)
    assert network_variables(env, launcher) == expected


@pytest.mark.parametrize(
    ("launcher", "expected"),
    [
        ("torchrun", {"NCCL_PROTO": "simple"}),
        ("mpi", {}),
        ("smddp", {"FI_PROVIDER": "efa", "RDMAV_FORK_SAFE": "1"}),
        ("xla", {"NCCL_PROTO": "simple"}),
    ],
)
def test_without_efa_only_what_the_reference_sets_always(job_dir, tmp_path, launcher, expected):
    root = fake_efa_sysfs(tmp_path / "sys", devices=0)
    env = environment(job_dir, environ={"SMC_SYS_ROOT": str(root)}, num_gpus=8)
    assert network_variables(env, launcher) == expected


def test_the_jobs_own_variables_are_kept_and_logged(job_dir, tmp_path, caplog):
    root = fake_efa_sysfs(tmp_path / "sys")
    mine = {"SMC_SYS_ROOT": str(root), "NCCL_PROTO": "LL128", "FI_PROVIDER": "tcp"}
    env = environment(job_dir, environ=mine, num_gpus=0)
    with caplog.at_level(logging.INFO, logger="smc"):
        assert network_variables(env, "torchrun") == {"FI_EFA_USE_DEVICE_RDMA": "1", "RDMAV_FORK_SAFE": "1"}
    assert "kept from the job's environment: FI_PROVIDER=tcp NCCL_PROTO=LL128" in caplog.text
    assert "Network for torchrun: EFA, device RDMA (1 device(s)" in caplog.text
    with pytest.raises(ConfigError, match="'nccl' is not one of"):
        network_variables(env, "nccl")


# --- processes per host -----------------------------------------------------------------------------


def test_processes_per_host_default_is_gpus_else_neuron_cores_else_one(job_dir, tmp_path):
    assert environment(job_dir, num_gpus=4, num_neurons=32).default_processes_per_host == 4
    assert environment(job_dir, num_gpus=0, num_neurons=32).default_processes_per_host == 32
    assert environment(job_dir, num_gpus=0, num_neurons=0).default_processes_per_host == 1
    counted = environment(job_dir, environ={"PATH": path_with(fake_neuron_ls(tmp_path / "bin"))}, num_gpus=0)
    assert counted.num_neurons == 32 and counted.default_processes_per_host == 32  # a trn1.32xlarge
    assert counted.processes_per_host is None  # the job did not say


def test_the_job_names_processes_per_host_once_for_every_launcher(job_dir):
    hps = {"sagemaker_mpi_num_of_processes_per_host": 3}
    assert environment(job_dir, hyperparameters=hps, num_gpus=8).processes_per_host == 3
    assert environment(job_dir, processes_per_host=5, hyperparameters=hps).processes_per_host == 5  # platform
    with pytest.raises(ConfigError, match="'sagemaker_mpi_num_of_processes_per_host' is \"many\""):
        environment(job_dir, hyperparameters={"sagemaker_mpi_num_of_processes_per_host": "many"})


# --- the Neuron compile cache -----------------------------------------------------------------------


def test_the_warm_pool_cache_dir_is_a_job_path(tmp_path):
    paths = JobPaths(tmp_path)
    assert paths.warm_pool_cache_dir == tmp_path / "sagemaker" / "warmpoolcache"
    assert persistent_cache_dir(paths, {}) is None  # no warm pool
    paths.warm_pool_cache_dir.mkdir(parents=True)
    assert persistent_cache_dir(paths, {}) == paths.warm_pool_cache_dir
    named = {"SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY": "/mnt/cache"}
    assert persistent_cache_dir(paths, named) == Path("/mnt/cache")  # what the platform says wins


def test_neuron_compile_caches_go_to_the_warm_pool(job_dir, caplog):
    env = environment(job_dir, num_neurons=32, num_gpus=0)
    with caplog.at_level(logging.INFO, logger="smc"):
        assert neuron_cache_variables(env) == {}  # no warm pool: Neuron's own default stays
    assert "no persistent cache directory" in caplog.text
    env.paths.warm_pool_cache_dir.mkdir(parents=True)
    cache = env.paths.warm_pool_cache_dir
    assert neuron_cache_variables(env) == {
        "NEURON_COMPILE_CACHE_URL": str(cache / "neuron-compile-cache"),
        "TORCH_NEURONX_NEFF_CACHE_DIR": str(cache / "neuron-neff-cache"),
    }
    assert neuron_cache_variables(environment(job_dir, num_neurons=0, num_gpus=0)) == {}


@pytest.mark.parametrize(
    ("environ", "left"),
    [
        ({"NEURON_COMPILE_CACHE_URL": "s3://bucket/cache"}, "TORCH_NEURONX_NEFF_CACHE_DIR"),
        (
            {"NEURON_CC_FLAGS": "--cache_dir=/data/cache --model-type=transformer"},
            "TORCH_NEURONX_NEFF_CACHE_DIR",
        ),
        ({"NEURON_CC_FLAGS": "--no_cache"}, "TORCH_NEURONX_NEFF_CACHE_DIR"),
        ({"TORCH_NEURONX_NEFF_CACHE_DIR": "/data/neff"}, "NEURON_COMPILE_CACHE_URL"),
        ({"TORCH_NEURONX_NEFF_DISABLE_CACHE": "1"}, "NEURON_COMPILE_CACHE_URL"),
    ],
)
def test_a_cache_the_job_chooses_is_kept(job_dir, environ, left):
    env = environment(job_dir, environ=environ, num_neurons=2, num_gpus=0)
    env.paths.warm_pool_cache_dir.mkdir(parents=True)
    assert list(neuron_cache_variables(env)) == [left]


# --- every switch the reference launches has a launcher ---------------------------------------------

REFERENCE_SWITCHES = {
    # sagemaker_training/params.py and the PyTorch and TensorFlow toolkits' training.py
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_torch_distributed_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
}


def test_every_switch_the_reference_launches_is_claimed_by_the_core_or_an_adapter(plugin_manager):
    from smc_core.host.switches import WELL_KNOWN_SWITCHES, claimed_switches

    core = claimed_switches(plugin_manager)
    assert {"sagemaker_mpi_enabled", "sagemaker_distributed_dataparallel_enabled"} <= core
    assert REFERENCE_SWITCHES - core <= set(WELL_KNOWN_SWITCHES)  # each named with the adapter to install
