"""smc-pytorch on accelerator and network hardware, with fakes only where the hardware cannot exist here:
a fake ``neuron-ls`` (Trainium's Neuron cores), a fake sysfs tree (EFA, through ``SMC_SYS_ROOT``), a fake
``neuron_parallel_compile`` (torch-neuronx's) and a fake ``torch_xla`` package that records nothing
but its own presence. torchrun, the ranks and gloo are real."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pytorch_helpers import free_port

from smc_core.testing.hardware import fake_efa_sysfs, fake_neuron_ls, fake_nvidia_smi, fake_tool, path_with

NAMES = [
    "LOCAL_WORLD_SIZE",
    "WORLD_SIZE",
    "FI_PROVIDER",
    "FI_EFA_USE_DEVICE_RDMA",
    "RDMAV_FORK_SAFE",
    "NCCL_PROTO",
    "NCCL_SOCKET_IFNAME",
    "NEURON_COMPILE_CACHE_URL",
    "TORCH_NEURONX_NEFF_CACHE_DIR",
    "PJRT_DEVICE",
    "OFI_NCCL_NIC_DUP_CONNS",
]

ENV_SCRIPT = f"""
import json, os, sys
import torch.distributed as dist
if os.environ.get("XLA_EXPECTED"):
    import torch_xla  # the fake: where it came from proves the job saw the installed package
    print("torch_xla", torch_xla.__version__, flush=True)
dist.init_process_group("gloo")
with open(os.path.join(os.environ["SM_MODEL_DIR"], f"env-{{dist.get_rank()}}.json"), "w") as f:
    json.dump({{n: os.environ.get(n) for n in {NAMES!r}}}, f)
dist.barrier()
dist.destroy_process_group()
"""

RECORDING_COMPILE = """
printf '%s\\n' "$@" > "$(dirname "$0")/neuron_parallel_compile.args"
exec "$@"
"""


def rank_env(job_dir: Path, rank: int) -> dict[str, str | None]:
    return json.loads((job_dir / "model" / f"env-{rank}.json").read_text())


def test_trn1_job_runs_one_process_per_neuron_core_on_efa_with_the_compile_cache_kept(smc_job, tmp_path):
    """A trn1.32xlarge as the reference sees it, shrunk to 2 Neuron cores: 2 torchrun processes (not 1),
    neuron_parallel_compile in front (RUN_NEURON_PARALLEL_COMPILE=1), EFA from sysfs with device RDMA
    (trn1 is on the reference's RDMA list), the Neuron caches in the warm pool, the job's NCCL_PROTO kept."""
    bin_dir = fake_neuron_ls(tmp_path / "bin", devices=1, cores_per_device=2)
    fake_tool(bin_dir, "neuron_parallel_compile", RECORDING_COMPILE)
    job_dir = smc_job.layout(
        hyperparameters={"sagemaker_torch_distributed_enabled": True, "steps": 1},
        code={"train.py": ENV_SCRIPT},
        entry_point="train.py",
        instance_type="ml.trn1.32xlarge",
    )
    warm_pool = job_dir / "sagemaker" / "warmpoolcache"
    warm_pool.mkdir(parents=True)
    outcome = smc_job.run(
        job_dir,
        env={
            "PATH": path_with(bin_dir),
            "SMC_SYS_ROOT": str(fake_efa_sysfs(tmp_path / "sys", devices=2)),
            "RUN_NEURON_PARALLEL_COMPILE": "1",
            "NCCL_PROTO": "LL128",
            "SMC_PYTORCH_MASTER_PORT": str(free_port()),
        },
    )
    outcome.assert_success()
    assert (
        "torchrun with 2 process(es) on this host: neuron_parallel_compile torchrun --nnodes 1"
        in outcome.stderr
    )
    compile_args = (bin_dir / "neuron_parallel_compile.args").read_text().splitlines()
    assert compile_args[1:3] == ["-m", "smc_pytorch.launcher"] and "--nproc_per_node" in compile_args
    assert compile_args[compile_args.index("--nproc_per_node") + 1] == "2"
    for rank in (0, 1):
        env = rank_env(job_dir, rank)
        assert (env["LOCAL_WORLD_SIZE"], env["WORLD_SIZE"]) == ("2", "2")
        assert (env["FI_PROVIDER"], env["FI_EFA_USE_DEVICE_RDMA"], env["RDMAV_FORK_SAFE"]) == (
            "efa",
            "1",
            "1",
        )
        assert env["NCCL_PROTO"] == "LL128"  # the job's own, never replaced
        assert env["NEURON_COMPILE_CACHE_URL"] == str(warm_pool / "neuron-compile-cache")
        assert env["TORCH_NEURONX_NEFF_CACHE_DIR"] == str(warm_pool / "neuron-neff-cache")
    assert "kept from the job's environment: NCCL_PROTO=LL128" in outcome.stderr
    assert "2 device(s) under" in outcome.stderr and "RDMA list" in outcome.stderr


def test_neuron_parallel_compile_asked_for_but_missing_stops_the_job(smc_job):
    outcome = smc_job(
        hyperparameters={"sagemaker_torch_distributed_enabled": True},
        code={"train.py": "print('trained without the compile step')\n"},
        entry_point="train.py",
        env={"RUN_NEURON_PARALLEL_COMPILE": "1"},
    )
    failure = outcome.assert_failure(2, reason="neuron_parallel_compile, which is not on PATH")
    assert "torch-neuronx" in failure and "trained without" not in outcome.stdout


def fake_torch_xla(site: Path, version: str, *, xla_spawn: bool = False) -> Path:
    """An installed ``torch_xla`` of ``version`` (package and metadata) under ``site``; with ``xla_spawn``
    also SageMaker's ``torch_xla.distributed.xla_spawn``, which records its arguments and the XRT
    variables, then runs the script once."""
    package = site / "torch_xla"
    (package / "distributed").mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (package / "distributed" / "__init__.py").write_text("")
    info = site / f"torch_xla-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch_xla\nVersion: {version}\n")
    if xla_spawn:
        (package / "distributed" / "xla_spawn.py").write_text(
            "import json, os, runpy, sys\n"
            "names = [n for n in os.environ if n.startswith(('XRT_', 'GPU_', 'NCCL_', 'FI_'))]\n"
            "with open(os.path.join(os.environ['SM_MODEL_DIR'], 'xla_spawn.json'), 'w') as f:\n"
            "    json.dump({'argv': sys.argv[1:], 'env': {n: os.environ[n] for n in names}}, f)\n"
            "script = sys.argv[sys.argv.index('--num_gpus') + 2]\n"
            "sys.argv = sys.argv[sys.argv.index('--num_gpus') + 2:]\n"
            "runpy.run_path(script, run_name='__main__')\n"
        )
    return site


def test_pytorch_xla_on_pjrt_is_torchrun_with_the_device_of_this_host(smc_job, tmp_path):
    """torch_xla 2.9 (PJRT) on a Neuron host of 2 cores: torchrun with 2 processes and PJRT_DEVICE=NEURON."""
    site = fake_torch_xla(tmp_path / "site", "2.9.0")
    outcome = smc_job(
        hyperparameters={"sagemaker_pytorch_xla_multi_worker_enabled": True},
        code={"train.py": ENV_SCRIPT},
        entry_point="train.py",
        env={
            "PATH": path_with(fake_neuron_ls(tmp_path / "bin", devices=1, cores_per_device=2)),
            "PYTHONPATH": str(site),
            "XLA_EXPECTED": "1",
            "SMC_SYS_ROOT": str(tmp_path / "no-sysfs"),  # the fallback: local is on no EFA list
            "SMC_PYTORCH_MASTER_PORT": str(free_port()),
        },
    )
    outcome.assert_success()
    assert "torch_xla 2.9.0, on its PJRT runtime" in outcome.stderr
    assert outcome.stdout.count("torch_xla 2.9.0") == 2
    for rank in (0, 1):
        env = rank_env(outcome.job_dir, rank)
        assert (env["PJRT_DEVICE"], env["LOCAL_WORLD_SIZE"], env["NCCL_PROTO"]) == ("NEURON", "2", "simple")
        assert env["FI_PROVIDER"] is None  # no EFA here
    assert "cannot be read" in outcome.stderr and "fallback" in outcome.stderr


def test_pytorch_xla_on_xrt_runs_xla_spawn_with_the_reference_variables(smc_job, tmp_path):
    """torch_xla 1.13 (XRT) on a host of 2 GPUs: ``python -m torch_xla.distributed.xla_spawn --num_gpus 2``
    and the XRT variables, as the reference runs it."""
    site = fake_torch_xla(tmp_path / "site", "1.13.0", xla_spawn=True)
    outcome = smc_job(
        hyperparameters={"sagemaker_pytorch_xla_multi_worker_enabled": True, "epochs": 2},
        code={"train.py": "import sys; print('xrt script', sys.argv[1:], flush=True)\n"},
        entry_point="train.py",
        env={"PATH": path_with(fake_nvidia_smi(tmp_path / "bin", 2)), "PYTHONPATH": str(site)},
    )
    outcome.assert_success()
    spawned = json.loads((outcome.job_dir / "model" / "xla_spawn.json").read_text())
    assert spawned["argv"] == ["--num_gpus", "2", "train.py", "--epochs", "2"]
    assert spawned["env"]["XRT_HOST_ORDINAL"] == "0" and spawned["env"]["XRT_SHARD_WORLD_SIZE"] == "1"
    assert spawned["env"]["XRT_WORKERS"] == "localservice:0;algo-1:43857"
    assert spawned["env"]["GPU_NUM_DEVICES"] == "2" and "XRT_MESH_SERVICE_ADDRESS" not in spawned["env"]
    assert "xrt script ['--epochs', '2']" in outcome.stdout


def test_pytorch_xla_without_torch_xla_stops_the_job_naming_it(smc_job):
    outcome = smc_job(
        hyperparameters={"sagemaker_pytorch_xla_multi_worker_enabled": True},
        code={"train.py": "print('ran without torch_xla')\n"},
        entry_point="train.py",
        env={"PYTHONPATH": os.devnull},
    )
    failure = outcome.assert_failure(2, reason="torch_xla (PyTorch/XLA) is not installed")
    assert "pip install torch-xla" in failure and "ran without" not in outcome.stdout


def test_smc_pytorch_claims_every_torch_switch_the_reference_launches():
    from smc_pytorch.plugin import claim_switches

    assert set(claim_switches()) == {
        "sagemaker_torch_distributed_enabled",
        "sagemaker_pytorch_ddp_enabled",
        "sagemaker_pytorch_xla_multi_worker_enabled",
    }
