"""SMDDP (``sagemaker_distributed_dataparallel_enabled``) and MPI on accelerator hardware, with the real
mpirun, mpi4py and ranks, and fakes only for what cannot exist here: ``smddprun`` (SageMaker's library:
the fake checks how it was started, records it and runs the rank's command), ``neuron-ls`` and an EFA
sysfs tree (``SMC_SYS_ROOT``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from smc_core.testing.hardware import fake_efa_sysfs, fake_neuron_ls, fake_tool, path_with
from smc_core.testing.mpi import mpi_unavailable_reason

UNAVAILABLE = mpi_unavailable_reason()
needs_mpi = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")

SMDDP = "sagemaker_distributed_dataparallel_enabled"

# smddprun as SMDDP's launcher is started by mpirun: once per rank, with the rank's command after it.
FAKE_SMDDPRUN = f"""
fail() {{ echo "fake smddprun: $*" >&2; exit 97; }}
[ -n "$OMPI_COMM_WORLD_RANK" ] || fail "not started by mpirun"
[ "$1" = "{sys.executable}" ] && [ "$2" = "-m" ] && [ "$3" = "mpi4py" ] \\
    || fail "expected python -m mpi4py, got $*"
[ -n "$SMDATAPARALLEL_USE_SINGLENODE$SMDATAPARALLEL_USE_HOMOGENEOUS" ] || fail "no SMDATAPARALLEL_USE_* mode"
[ "$FI_PROVIDER" = efa ] && [ "$RDMAV_FORK_SAFE" = 1 ] \\
    || fail "FI_PROVIDER=$FI_PROVIDER RDMAV_FORK_SAFE=$RDMAV_FORK_SAFE"
printf '%s\\n' "$@" > "$SM_MODEL_DIR/smddprun-$OMPI_COMM_WORLD_RANK.args"
exec "$@"
"""

NAMES = [
    "SMDATAPARALLEL_USE_SINGLENODE",
    "SMDATAPARALLEL_USE_HOMOGENEOUS",
    "SMDATAPARALLEL_SERVER_ADDR",
    "SMDATAPARALLEL_SERVER_PORT",
    "SAGEMAKER_INSTANCE_TYPE",
    "FI_PROVIDER",
    "FI_EFA_USE_DEVICE_RDMA",
    "RDMAV_FORK_SAFE",
    "NCCL_PROTO",
    "NCCL_DEBUG",
    "SM_CURRENT_HOST",
]

RANK_SCRIPT = f"""
import json, os, sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1, op=MPI.SUM)
record = {{"rank": comm.Get_rank(), "size": comm.Get_size(), "sum": total, "argv": sys.argv[1:],
          "env": {{n: os.environ.get(n) for n in {NAMES!r}}}}}
with open(os.path.join(os.environ["SM_MODEL_DIR"], f"rank-{{comm.Get_rank()}}.json"), "w") as f:
    json.dump(record, f)
"""


def ranks(model_dir: Path, size: int) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads((model_dir / f"rank-{r}.json").read_text()) for r in range(size)]


@needs_mpi
def test_smddp_on_one_host_runs_smddprun_under_mpirun_as_the_reference(smc_job, tmp_path):
    """A p4d with EFA (from sysfs): mpirun starts smddprun in front of ``python -m mpi4py train.py`` on
    each of 2 ranks, with SMDDP's single-node mode, the EFA variables, and --NCCL_DEBUG from the options."""
    bin_dir = fake_tool(tmp_path / "bin", "smddprun", FAKE_SMDDPRUN)
    outcome = smc_job(
        hyperparameters={
            SMDDP: True,
            "sagemaker_mpi_num_of_processes_per_host": 2,
            "sagemaker_distributed_dataparallel_custom_mpi_options": "--NCCL_DEBUG VERSION",
            "epochs": 3,
        },
        code={"train.py": RANK_SCRIPT},
        entry_point="train.py",
        instance_type="ml.p4d.24xlarge",
        env={"PATH": path_with(bin_dir), "SMC_SYS_ROOT": str(fake_efa_sysfs(tmp_path / "sys", devices=4))},
    )
    outcome.assert_success()
    records = ranks(outcome.model_dir, 2)
    assert [(r["size"], r["sum"], r["argv"]) for r in records] == [(2, 3, ["--epochs", "3"])] * 2
    for record in records:
        env = record["env"]
        assert env["SMDATAPARALLEL_USE_SINGLENODE"] == "1" and env["SMDATAPARALLEL_USE_HOMOGENEOUS"] is None
        assert (env["FI_PROVIDER"], env["RDMAV_FORK_SAFE"], env["FI_EFA_USE_DEVICE_RDMA"]) == (
            "efa",
            "1",
            "1",
        )
        assert (env["NCCL_PROTO"], env["NCCL_DEBUG"]) == ("simple", "VERSION")
    args = (outcome.model_dir / "smddprun-0.args").read_text().splitlines()
    assert args[1:] == ["-m", "mpi4py", "train.py", "--epochs", "3"]
    assert "--oversubscribe" in outcome.stderr and "plm_rsh_num_concurrent 1" in outcome.stderr
    assert "--display-map" not in outcome.stderr  # the MPI runner's option, not SMDDP's


def test_smddp_without_the_library_stops_the_job_saying_what_to_install(smc_job):
    outcome = smc_job(
        hyperparameters={SMDDP: True},
        code={"train.py": "print('trained without SMDDP')\n"},
        entry_point="train.py",
        env={"PATH": os.defpath},
    )
    failure = outcome.assert_failure(2, reason="smdistributed-dataparallel")
    assert "smddprun is not on PATH" in failure and "trained without" not in outcome.stdout


@needs_mpi
def test_mpi_on_a_trainium_host_runs_a_rank_per_neuron_core_with_efa(smc_job, tmp_path):
    """The core's MPI launch counts processes as the reference's runner: no GPU, 2 Neuron cores: 2 ranks
    (not 1); a trn1 with EFA gets the MPI runner's EFA variables (-x FI_PROVIDER=efa ...)."""
    bin_dir = fake_neuron_ls(tmp_path / "bin", devices=1, cores_per_device=2)
    outcome = smc_job(
        hyperparameters={"sagemaker_mpi_enabled": True},
        code={"train.py": RANK_SCRIPT},
        entry_point="train.py",
        instance_type="ml.trn1.32xlarge",
        env={"PATH": path_with(bin_dir), "SMC_SYS_ROOT": str(fake_efa_sysfs(tmp_path / "sys"))},
    )
    outcome.assert_success()
    for record in ranks(outcome.model_dir, 2):
        env = record["env"]
        assert (record["size"], record["sum"]) == (2, 3)
        assert (env["FI_PROVIDER"], env["FI_EFA_USE_DEVICE_RDMA"], env["NCCL_PROTO"]) == (
            "efa",
            "1",
            "simple",
        )
        assert env["RDMAV_FORK_SAFE"] is None  # the reference's MPI runner does not set it
    assert "with 2 process(es) per host" in outcome.stderr


@needs_mpi
@pytest.mark.netns
def test_smddp_across_two_hosts_in_homogeneous_mode(smc_job, netns_hosts, tmp_path):
    """Two hosts: the master's mpirun reaches the worker over ssh; every rank on both hosts runs under
    smddprun with SMDDP's multi-host variables (the master as its server, on port 7592)."""
    cluster = netns_hosts(2)
    bin_dir = fake_tool(tmp_path / "bin", "smddprun", FAKE_SMDDPRUN)
    outcomes = smc_job.on_cluster(
        cluster,
        hyperparameters={SMDDP: True, "sagemaker_mpi_num_of_processes_per_host": 2},
        code={"train.py": RANK_SCRIPT},
        entry_point="train.py",
        env={
            "PATH": path_with(bin_dir),
            "SMC_SYS_ROOT": str(tmp_path / "no-sysfs"),
            "SMC_MPI_WAIT_TIMEOUT": "60",
            "SMC_HOST_WAIT_TIMEOUT": "60",
        },
        timeout=180,
    )
    for outcome in outcomes:
        outcome.assert_success()
    records = ranks(cluster.hosts[0].job_dir / "model", 4)
    assert {r["env"]["SM_CURRENT_HOST"] for r in records} == {"algo-1", "algo-2"}
    for record in records:
        env = record["env"]
        assert (record["size"], record["sum"]) == (4, 10)
        assert env["SMDATAPARALLEL_USE_HOMOGENEOUS"] == "1" and env["SMDATAPARALLEL_USE_SINGLENODE"] is None
        assert (env["SMDATAPARALLEL_SERVER_ADDR"], env["SMDATAPARALLEL_SERVER_PORT"]) == ("algo-1", "7592")
        assert env["SAGEMAKER_INSTANCE_TYPE"] == "local"
    assert "plm_rsh_num_concurrent 2" in outcomes[0].stdout
    assert "algo-2 is a worker; algo-1 runs mpirun" in outcomes[1].stdout
