"""Differential check of the launchers on accelerator and network hardware: for the same job directory,
instance type and (fake) hardware, the command and variables the reference toolkit's runner classes
would use (``TorchDistributedRunner``, MPI's ``MasterRunner``, ``SMDataParallelRunner``,
``PyTorchXLARunner``, driven in the reference's own interpreter) against what smc runs.

Only the hardware is faked: ``nvidia-smi``, ``neuron-ls`` and ``smddprun`` on ``PATH``, a ``torch_xla``
package for the XLA runner. smc reads EFA from sysfs; here ``SMC_SYS_ROOT`` names no tree, so smc
falls back to the reference's instance lists and must decide exactly as the reference does (the cases
where sysfs knows better are checked at the end). smc's documented additions are left out of the
comparison: torchrun's ``--max-restarts 0`` and ``--rdzv-conf``, MPI's rank wrapper, ``-x`` of every
job variable, and on one host ``localhost:N`` (no ssh) where the reference's SMDDP
runner oversubscribes one slot.

Needs ``$SMC_REFERENCE_PYTHON`` (``make test`` sets it), else ``.venv-reference`` (``make reference``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from smc_core.job.accelerators import network_variables
from smc_core.job.environment import TrainingEnv, create_environment
from smc_core.testing import make_job_dir
from smc_core.testing.hardware import fake_efa_sysfs, fake_neuron_ls, fake_nvidia_smi, fake_tool, path_with
from smc_core.usercode.describe import describe_user_code

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = os.environ.get("SMC_REFERENCE_PYTHON") or str(ROOT / ".venv-reference" / "bin" / "python")

pytestmark = pytest.mark.skipif(
    not Path(REFERENCE).exists() and not os.environ.get("SMC_REFERENCE_PYTHON"),
    reason=f"no reference toolkit interpreter at {REFERENCE} (SMC_REFERENCE_PYTHON; make reference)",
)

# Runs in the reference's interpreter: the runner the reference's runner.get() builds for this job,
# its command, and the variables its setup changes (it writes them into os.environ).
DRIVE = """\
import json, os, sys
from sagemaker_training import process, runner
kind = sys.argv[1]
before = dict(os.environ)
r = runner.get(getattr(runner.RunnerType, kind))
if kind == "PyTorchXLA":
    r._setup()
command = r._create_command()
if kind == "SMDataParallel":
    command += process.ProcessRunner._create_command(r)
print(json.dumps({
    "runner": type(r).__name__,
    "processes_per_host": r._processes_per_host,
    "command": command,
    "set": {k: v for k, v in os.environ.items() if before.get(k) != v},
}))
"""

FAKE_SMDDPRUN = 'exec "$@"\n'
MIXED_ENV = ("SAGEMAKER_", "SM_", "SMC_")


def reference(kind: str, base: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(MIXED_ENV) and k != "PYTHONPATH"}
    env.update(environ, SAGEMAKER_BASE_DIR=str(base))
    done = subprocess.run(
        [REFERENCE, "-c", DRIVE, kind], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def job(
    tmp_path: Path,
    instance_type: str,
    *,
    hosts: Sequence[str] = ("algo-1",),
    current: str = "algo-1",
    hyperparameters: Mapping[str, Any] | None = None,
) -> Path:
    return make_job_dir(
        tmp_path / "job",
        hyperparameters={"lr": 0.5, **(hyperparameters or {})},
        resource_config={
            "current_host": current,
            "hosts": list(hosts),
            "network_interface_name": "lo",
            "current_instance_type": instance_type,
        },
        code={"train.py": "print('hi')\n"},
        entry_point="train.py",
    )


def hardware(
    tmp_path: Path, *, gpus: int = 0, neuron_cores: int = 0, smddprun: bool = False
) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if gpus:
        fake_nvidia_smi(bin_dir, gpus)
    if neuron_cores:
        fake_neuron_ls(bin_dir, devices=neuron_cores // 2, cores_per_device=2)
    if smddprun:
        fake_tool(bin_dir, "smddprun", FAKE_SMDDPRUN)
    return {"PATH": path_with(bin_dir)}


def smc_env(base: Path, environ: Mapping[str, str], sys_root: Path | None = None) -> TrainingEnv:
    full = {k: v for k, v in os.environ.items() if not k.startswith(MIXED_ENV)}
    full.update(environ, SMC_SYS_ROOT=str(sys_root or base / "no-sysfs"))
    from smc_core.base.settings import parse_settings
    from smc_core.mpi.plugin import SETTINGS as MPI_SETTINGS

    try:
        from smc_pytorch.distribution import SETTINGS as PYTORCH_SETTINGS
    except ImportError:
        PYTORCH_SETTINGS = ()
    # The settings the runner parses: the core's, the MPI launch's and the adapter's.
    settings = parse_settings(full, [*MPI_SETTINGS, *PYTORCH_SETTINGS])
    return create_environment(base, full, settings=settings)


def options(command: Sequence[str], flags: Sequence[str]) -> dict[str, str]:
    """``--flag value`` pairs of ``command`` for each of ``flags``."""
    return {flag: command[command.index(flag) + 1] for flag in flags if flag in command}


def exported(command: Sequence[str]) -> dict[str, str]:
    """mpirun's ``-x NAME=VALUE`` pairs (``-x NAME`` alone passes the job's own value: left out)."""
    pairs = [command[i + 1] for i, word in enumerate(command[:-1]) if word == "-x" and "=" in command[i + 1]]
    return dict(pair.split("=", 1) for pair in pairs if not pair.startswith("LD_PRELOAD="))


def mca(command: Sequence[str]) -> set[tuple[str, str]]:
    return {
        (command[i + 1], command[i + 2]) for i, word in enumerate(command[:-2]) if word in ("-mca", "--mca")
    }


def slots(command: Sequence[str]) -> dict[str, int]:
    """``--host`` as {host: slots} (a host named without slots has one)."""
    entries = command[command.index("--host") + 1].split(",")
    return {e.split(":")[0]: int(e.split(":")[1]) if ":" in e else 1 for e in entries}


# --- torchrun (sagemaker_torch_distributed_enabled) ------------------------------------------------

TORCHRUN_CASES = {
    # instance type, hosts, hardware, hyperparameters, environment
    "trn1, 2 hosts, neuron_parallel_compile": (
        "ml.trn1.32xlarge",
        ("algo-1", "algo-2"),
        {"neuron_cores": 32},
        {},
        {"RUN_NEURON_PARALLEL_COMPILE": "1"},
    ),
    "trn1, processes named": (
        "ml.trn1.32xlarge",
        ("algo-1",),
        {"neuron_cores": 32},
        {"sagemaker_mpi_num_of_processes_per_host": 4},
        {},
    ),
    "p4d (EFA, RDMA)": ("ml.p4d.24xlarge", ("algo-1", "algo-2"), {"gpus": 8}, {}, {}),
    "g5.48xlarge (EFA, no RDMA)": ("ml.g5.48xlarge", ("algo-1",), {"gpus": 8}, {}, {}),
    "c5 (CPU, no EFA)": ("ml.c5.4xlarge", ("algo-1",), {}, {}, {}),
}
NETWORK = ("FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA", "RDMAV_FORK_SAFE", "NCCL_PROTO", "NCCL_SOCKET_IFNAME")


def smc_torchrun(env: TrainingEnv, environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    from smc_pytorch.distribution import processes_per_host, rendezvous_env, torchrun_args
    from smc_pytorch.plugin import neuron_parallel_compile

    from smc_core.job.exports import user_args

    prefix = ["neuron_parallel_compile"] if neuron_parallel_compile(env, environ) else []
    arguments = torchrun_args(
        env, describe_user_code(env), user_args(env), nproc_per_host=processes_per_host(env)
    )
    variables = {**rendezvous_env(env), **network_variables(env, "torchrun")}
    return [*prefix, "torchrun", *arguments], {k: v for k, v in variables.items() if k in NETWORK}


@pytest.mark.parametrize("case", sorted(TORCHRUN_CASES))
def test_torchrun_as_the_reference_runs_it(tmp_path, case):
    pytest.importorskip("smc_pytorch")
    instance_type, hosts, fake, hyperparameters, extra = TORCHRUN_CASES[case]
    environ = {**hardware(tmp_path, **fake), **extra}
    if extra:  # neuron_parallel_compile must be there for smc (the reference never looks)
        fake_tool(tmp_path / "bin", "neuron_parallel_compile", 'exec "$@"\n')
    base = job(
        tmp_path,
        instance_type,
        hosts=hosts,
        current=hosts[-1],
        hyperparameters={"sagemaker_torch_distributed_enabled": True, **hyperparameters},
    )
    ref = reference("TorchDistributed", base, environ)
    command, variables = smc_torchrun(smc_env(base, environ), environ)
    ref_cmd = ref["command"]
    flags = ["--nnodes", "--nproc_per_node", "--master_addr", "--master_port", "--node_rank"]
    ref_options = options(ref_cmd, flags)
    ours = options(command, flags)
    if len(hosts) == 1:  # the reference names no master on one host; smc names it (same meaning)
        ours = {k: v for k, v in ours.items() if k in ref_options}
    assert ours == ref_options
    assert command[: command.index("torchrun")] == ref_cmd[: ref_cmd.index("torchrun")]  # the prefix
    assert command[-3:] == ref_cmd[-3:] == ["train.py", "--lr", "0.5"]
    assert variables == {k: v for k, v in ref["set"].items() if k in NETWORK}
    assert int(ours["--nproc_per_node"]) == ref["processes_per_host"]


# --- MPI (sagemaker_mpi_enabled) --------------------------------------------------------------------

MPI_CASES = {
    "trn1 (Neuron cores, EFA, RDMA)": ("ml.trn1.32xlarge", {"neuron_cores": 32}),
    "p4d (GPUs, EFA, RDMA)": ("ml.p4d.24xlarge", {"gpus": 8}),
    "g4dn.12xlarge (EFA, no RDMA)": ("ml.g4dn.12xlarge", {"gpus": 4}),
    "c5 (CPU)": ("ml.c5.4xlarge", {}),
}


def smc_mpirun(env: TrainingEnv, launcher: str = "mpi") -> list[str]:
    from smc_core.job.exports import user_args
    from smc_core.mpi.launch import mpirun_command
    from smc_core.mpi.plugin import mpi_job, rank_command
    from smc_core.mpi.smddp import smddp_job

    mpi = smddp_job(env) if launcher == "smddp" else mpi_job(env)
    entry = rank_command(describe_user_code(env), user_args(env), env.environ)
    if launcher == "smddp":
        entry = ["smddprun", *entry]
    return mpirun_command(mpi, entry, env.environ, mpirun="mpirun", major=4, as_root=True)


def rank_tail(command: Sequence[str], start: str) -> list[str]:
    """The rank's own command: from ``start`` (``smddprun``, or the entry's interpreter) on, with smc's
    rank wrapper (``python -m smc_core.mpi.rank``) and interpreter paths taken out."""
    if "smc_core.mpi.rank" in command:
        command = command[command.index("smc_core.mpi.rank") + 1 :]
    tail = list(command[command.index(start) :]) if start in command else list(command)
    return [
        Path(word).name if word.endswith(("python", "python3")) or "/python" in word else word
        for word in tail
    ]


@pytest.mark.parametrize("case", sorted(MPI_CASES))
def test_mpirun_as_the_reference_runs_it(tmp_path, case):
    instance_type, fake = MPI_CASES[case]
    environ = hardware(tmp_path, **fake)
    base = job(
        tmp_path, instance_type, hosts=("algo-1", "algo-2"), hyperparameters={"sagemaker_mpi_enabled": True}
    )
    ref = reference("MPI", base, environ)
    assert ref["runner"] == "MasterRunner"
    ours = smc_mpirun(smc_env(base, environ))
    theirs = ref["command"]
    assert (
        slots(ours)
        == slots(theirs)
        == {"algo-1": ref["processes_per_host"], "algo-2": ref["processes_per_host"]}
    )
    assert ours[ours.index("-np") + 1] == theirs[theirs.index("-np") + 1]
    assert mca(ours) == mca(theirs)
    assert exported(ours) == exported(theirs)
    for option in ("--allow-run-as-root", "--display-map"):
        assert (option in ours) == (option in theirs)
    start = theirs[theirs.index("-m") - 1]  # the rank's python
    assert (
        rank_tail(ours, Path(start).name)[-5:]
        == rank_tail(theirs, start)[-5:]
        == ["-m", "mpi4py", "train.py", "--lr", "0.5"]
    )


# --- SMDDP (sagemaker_distributed_dataparallel_enabled) --------------------------------------------

SMDDP_CASES = {
    "p4d, one host": ("ml.p4d.24xlarge", ("algo-1",)),
    "p4d, two hosts": ("ml.p4d.24xlarge", ("algo-1", "algo-2")),
    "p3.16xlarge (no EFA), two hosts": ("ml.p3.16xlarge", ("algo-1", "algo-2")),
}


@pytest.mark.parametrize("case", sorted(SMDDP_CASES))
def test_smddp_as_the_reference_runs_it(tmp_path, case):
    instance_type, hosts = SMDDP_CASES[case]
    environ = hardware(tmp_path, gpus=8, smddprun=True)
    base = job(
        tmp_path,
        instance_type,
        hosts=hosts,
        hyperparameters={
            "sagemaker_distributed_dataparallel_enabled": True,
            "sagemaker_distributed_dataparallel_custom_mpi_options": "--NCCL_DEBUG WARN -x NCCL_ALGO=Ring",
        },
    )
    ref = reference("SMDataParallel", base, environ)
    assert ref["runner"] == "SMDataParallelRunner" and "smddprun" in ref["command"]
    ours = smc_mpirun(smc_env(base, environ), "smddp")
    theirs = ref["command"]
    if len(hosts) > 1:  # on one host the reference oversubscribes one slot; smc runs -np locally
        assert slots(ours) == slots(theirs) == dict.fromkeys(hosts, 8)
    assert ours[ours.index("-np") + 1] == theirs[theirs.index("-np") + 1] == str(8 * len(hosts))
    interfaces = {("btl_tcp_if_include", "lo"), ("oob_tcp_if_include", "lo")}
    if len(hosts) > 1:  # one host runs its ranks locally (shared memory): no TCP interface to name
        assert mca(ours) == mca(theirs)
    else:
        assert mca(ours) == mca(theirs) - interfaces
    assert exported(ours) == exported(theirs)  # SMDATAPARALLEL_*, FI_*, RDMAV_FORK_SAFE, NCCL_* ...
    assert exported(theirs)["NCCL_DEBUG"] == "WARN" and exported(theirs)["NCCL_ALGO"] == "Ring"
    for option in ("--allow-run-as-root", "--oversubscribe", "--display-map", "-bind-to"):
        assert (option in ours) == (option in theirs), option
    assert rank_tail(ours, "smddprun") == rank_tail(theirs, "smddprun")
    assert rank_tail(theirs, "smddprun")[-4:] == ["mpi4py", "train.py", "--lr", "0.5"]


# --- PyTorch/XLA (sagemaker_pytorch_xla_multi_worker_enabled), torch_xla on XRT ----------------------


@pytest.fixture
def torch_xla_113(tmp_path, monkeypatch):
    """A torch_xla 1.13 (XRT) with SageMaker's ``xla_spawn``, importable here and by the reference."""
    site = tmp_path / "site"
    package = site / "torch_xla" / "distributed"
    package.mkdir(parents=True)
    (site / "torch_xla" / "__init__.py").write_text("__version__ = '1.13.1'\n")
    (package / "__init__.py").write_text("")
    (package / "xla_spawn.py").write_text("")
    (site / "torch_xla-1.13.1.dist-info").mkdir()
    (site / "torch_xla-1.13.1.dist-info" / "METADATA").write_text("Name: torch_xla\nVersion: 1.13.1\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [n for n in sys.modules if n == "torch_xla" or n.startswith("torch_xla.")]:
        monkeypatch.delitem(sys.modules, name)


def test_pytorch_xla_on_xrt_as_the_reference_runs_it(tmp_path, torch_xla_113):
    pytest.importorskip("smc_pytorch")
    from smc_pytorch.xla import installed_runtime, xrt_command, xrt_env

    environ = hardware(tmp_path, gpus=8)
    base = job(
        tmp_path,
        "ml.p4d.24xlarge",
        hosts=("algo-1", "algo-2"),
        current="algo-2",
        hyperparameters={"sagemaker_pytorch_xla_multi_worker_enabled": True},
    )
    ref = reference("PyTorchXLA", base, {**environ, "PYTHONPATH": str(torch_xla_113)})
    env = smc_env(base, environ)
    assert installed_runtime().runtime == "XRT"
    command = xrt_command(env, "python", "train.py", ["--lr", "0.5"])
    assert command[1:] == ref["command"][1:]  # -m torch_xla.distributed.xla_spawn --num_gpus 8 train.py ...
    ours = {**xrt_env(env), **network_variables(env, "xla")}
    theirs = {k: v for k, v in ref["set"].items() if k.startswith(("XRT_", "GPU_", "NCCL_", "FI_", "OFI_"))}
    assert theirs.pop("NCCL_DEBUG") == "info"  # smc keeps its NCCL_DEBUG=WARN default (smc_pytorch)
    # smc's additions on an EFA host, as for torchrun (the reference's XLA runner leaves them out):
    assert (ours.pop("FI_PROVIDER"), ours.pop("RDMAV_FORK_SAFE")) == ("efa", "1")
    assert (
        ours == theirs
    )  # XRT_*, GPU_NUM_DEVICES, NCCL_PROTO, FI_EFA_USE_DEVICE_RDMA, OFI_NCCL_NIC_DUP_CONNS


# --- where sysfs knows better than the reference's lists --------------------------------------------


def test_efa_on_an_instance_type_the_reference_lists_miss(tmp_path):
    """ml.p5en.48xlarge is on neither list: the reference sets no EFA variable (the #240 hang); smc reads
    the EFA devices from sysfs and sets FI_PROVIDER=efa (device RDMA left to libfabric)."""
    environ = hardware(tmp_path, gpus=8)
    base = job(
        tmp_path,
        "ml.p5en.48xlarge",
        hosts=("algo-1", "algo-2"),
        hyperparameters={"sagemaker_mpi_enabled": True},
    )
    ref = reference("MPI", base, environ)
    assert "FI_PROVIDER" not in exported(ref["command"])
    sys_root = fake_efa_sysfs(tmp_path / "sys", devices=16, device_id="0xefa2")
    env = smc_env(base, environ, sys_root)
    assert network_variables(env, "mpi") == {"FI_PROVIDER": "efa", "NCCL_PROTO": "simple"}
    assert network_variables(env, "torchrun") == {"FI_PROVIDER": "efa", "NCCL_PROTO": "simple"}
