"""ModelTrainer jobs built by the real SageMaker Python SDK v3 on two hosts (Linux network namespaces),
each host started as the platform starts it: the SDK's ``sm_train.sh``, which hands over to smc.

One run per launch style, each checking several things.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from smc_core.testing.mpi import mpi_leftovers, mpi_unavailable_reason

from .conftest import assert_sees, entry_command, job_env, lay_out, sdk_missing, sourced

pytestmark = [sdk_missing, pytest.mark.netns]

PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])


def run_on_cluster(request: dict[str, Any], cluster: Any, s3: Any, timeout: float, **env: str) -> list[Any]:
    for host in cluster.hosts:
        lay_out(
            request, host.job_dir, s3, host=host.name, hosts=cluster.host_names, interface=cluster.interface
        )
    return cluster.run_all(  # type: ignore[no-any-return]
        lambda host: entry_command(request, host.job_dir, []),
        env_for=lambda host: job_env(request, host.job_dir, PATH, **env),
        timeout=timeout,
    )


@pytest.mark.timeout(300)
def test_smc_config_torchrun_two_hosts_two_processes(
    sdk_jobs: dict[str, Any], s3_server: Any, netns_hosts: Any
) -> None:
    """``distributed=Smc(launch="torchrun", process_count_per_node=2)``: world size 4, the all-reduce
    right, node rank 0 on algo-1 although the platform lists the group's hosts algo-2 first (as the
    SDK's drivers order them), the SDK's variables on every rank, output/success on both hosts."""
    request = sdk_jobs["hosts-torchrun"]
    cluster = netns_hosts(2)
    runs = run_on_cluster(request, cluster, s3_server.client(), timeout=240)
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode == 0, f"{host.name}:\n{run.output[-6000:]}"
        assert "smc_modeltrainer: handing the job over to" in run.output
        assert "torchrun with 2 process(es) on this host" in run.output
        assert (host.job_dir / "output" / "success").exists()
    records = {}
    for index, host in enumerate(cluster.hosts):
        expected = sourced(host.job_dir / "input" / "sm_training.env", PATH)  # what environment.py gave
        for rank in (2 * index, 2 * index + 1):
            records[rank] = json.loads((host.job_dir / "model" / f"rank-{rank}.json").read_text())
            env = records[rank]["env"]
            assert_sees(env, expected)
            assert env["SM_CURRENT_HOST"] == host.name and env["SM_CURRENT_HOST_RANK"] == str(index)
            assert env["GROUP_RANK"] == str(index) and env["LOCAL_RANK"] == str(rank % 2)
    for record in records.values():
        env = record["env"]
        assert record["size"] == 4 and record["sum"] == 10.0
        assert record["argv"] == ["--epochs", "2"]
        assert env["MASTER_ADDR"] == env["SM_MASTER_ADDR"] == "algo-1"
        assert env["SM_HOSTS"] == '["algo-1", "algo-2"]' and env["SM_HOST_COUNT"] == "2"
        assert json.loads(env["SM_DISTRIBUTED_CONFIG"])["launch"] == "torchrun"
        assert record["cwd"].endswith("/input/data/code")


@pytest.mark.timeout(300)
@pytest.mark.skipif(mpi_unavailable_reason() is not None, reason=mpi_unavailable_reason() or "")
def test_sdk_mpi_two_hosts_two_processes(sdk_jobs: dict[str, Any], s3_server: Any, netns_hosts: Any) -> None:
    """``SourceCode(command="train")`` with the SDK's ``MPI(process_count_per_node=2, ...)``: -np 4
    across both hosts (the SDK's driver runs -np 2, both ranks on algo-1), mpi_additional_options passed
    on; and what the SDK's MPI driver gets wrong: no credential written anywhere, the job's sshd gone,
    the worker ends with the master."""
    request = sdk_jobs["hosts-mpi"]
    secret = f"smc-secret-{uuid.uuid4().hex}"
    credentials = {
        "AWS_ACCESS_KEY_ID": f"AKIA{secret}",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_SESSION_TOKEN": secret,
    }
    etc_environment = Path("/etc/environment")
    before = etc_environment.read_bytes() if etc_environment.exists() else None
    cluster = netns_hosts(2)
    runs = run_on_cluster(request, cluster, s3_server.client(), timeout=180, **credentials)
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode == 0, f"{host.name}:\n{run.output[-6000:]}"
        assert (host.job_dir / "output" / "success").exists()
    master, worker = cluster.hosts
    model_dir = master.job_dir / "model"  # the master's variables reach every rank (-x)
    for rank in range(4):
        record = json.loads((model_dir / f"rank-{rank}.json").read_text())
        host = f"algo-{rank // 2 + 1}"
        assert record["size"] == 4 and record["sum"] == 10
        assert record["env"]["SM_CURRENT_HOST"] == host and record["env"]["LOCAL_RANK"] == str(rank % 2)
        assert record["env"]["MY_JOB_VARIABLE"] == "from mpi_additional_options"
        assert f"[{host} rank {rank}] rank {rank} of 4 on {host}: allreduce 10" in runs[0].output
    ended = [(h.job_dir / "output" / "success").stat().st_mtime for h in (master, worker)]
    assert abs(ended[0] - ended[1]) < 10, f"the worker ended {ended[1] - ended[0]:.1f} s after the master"
    assert (etc_environment.read_bytes() if etc_environment.exists() else None) == before
    written = [p for p in cluster.base.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert written == [], f"the credentials were written to {written}"
    assert in_cluster(cluster, mpi_leftovers("mpi_allreduce.py")) == []


def in_cluster(cluster: Any, processes: list[str]) -> list[str]:
    """Those of ``processes`` (``mpi_leftovers``' lines) that run in this cluster's hosts: other
    engineers' MPI jobs on the same machine are not this job's leftovers."""
    namespaces = {host.namespace for host in cluster.hosts}
    mine = []
    for line in processes:
        identify = ["ip", "netns", "identify", line.split()[0]]
        if subprocess.run(identify, capture_output=True, text=True).stdout.strip() in namespaces:
            mine.append(line)
    return mine
