"""MPI jobs across hosts: each host a Linux network namespace running ``train``; mpirun over ssh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from smc_core.testing import make_job_dir
from smc_core.testing.hostfaults import HOST_FAULTS, HostFaultTrial
from smc_core.testing.mpi import ALLREDUCE_SCRIPT, mpi_leftovers, mpi_unavailable_reason
from smc_core.testing.netns import HostRun, NetnsCluster, NetnsHost

UNAVAILABLE = mpi_unavailable_reason(hosts=2)
pytestmark = [pytest.mark.netns, pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")]

TRAIN = str(Path(sys.executable).with_name("train"))
SCRIPT = "mpi_allreduce.py"


def host_env(host: NetnsHost, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env.update(
        SAGEMAKER_BASE_DIR=str(host.job_dir),
        SMC_DISABLE_PLUGINS="pytorch",
        SMC_MPI_WAIT_TIMEOUT="60",
        SMC_HOST_WAIT_TIMEOUT="60",
        MY_JOB_VARIABLE="set on every host",
    )
    env.update(extra)
    return env


def prepare(cluster: NetnsCluster, **hyperparameters: object) -> None:
    for host in cluster.hosts:
        make_job_dir(
            host.job_dir,
            hyperparameters={"sagemaker_mpi_enabled": True, **hyperparameters},
            resource_config=host.resource_config(cluster.host_names),
            code={SCRIPT: ALLREDUCE_SCRIPT},
            entry_point=SCRIPT,
        )


def run_job(
    cluster: NetnsCluster, timeout: float = 120, env: Mapping[str, Mapping[str, str]] | None = None
) -> list[HostRun]:
    return cluster.run_all(
        lambda host: [TRAIN],
        env_for=lambda host: host_env(host, **(env or {}).get(host.name, {})),
        timeout=timeout,
    )


def wait_for_ranks(logs: list[Path], timeout: float = 120) -> None:
    """Wait until the worker algo-2 logs that Open MPI's daemon started there."""
    deadline = time.monotonic() + timeout
    while "mpirun started" not in logs[1].read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "mpirun started" in logs[1].read_text(), "\n".join(log.read_text()[-3000:] for log in logs)


@pytest.mark.parametrize(("hosts", "per_host"), [(2, 1), (2, 2), (3, 1), (3, 2)])
def test_allreduce_across_hosts(netns_hosts, hosts, per_host):
    cluster = netns_hosts(hosts)
    prepare(cluster, sagemaker_mpi_num_of_processes_per_host=per_host)
    runs = run_job(cluster)
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode == 0, f"{host.name}:\n{run.output[-5000:]}"
        assert (host.job_dir / "output" / "success").exists()
    size = hosts * per_host
    model_dir = cluster.hosts[0].job_dir / "model"  # the master's paths reach every rank (-x)
    for rank in range(size):
        record = json.loads((model_dir / f"rank-{rank}.json").read_text())
        assert record["sum"] == size * (size + 1) // 2 and record["size"] == size
        env = record["env"]
        host = f"algo-{rank // per_host + 1}"  # -map-by slot: ranks fill a host before the next
        assert env["SM_CURRENT_HOST"] == env["CURRENT_HOST"] == host
        assert json.loads(env["SM_TRAINING_ENV"])["current_host"] == host
        assert json.loads(env["SM_TRAINING_ENV"])["is_master"] is (host == "algo-1")
        assert env["RANK"] == str(rank) and env["WORLD_SIZE"] == str(size)
        assert env["LOCAL_RANK"] == str(rank % per_host) and env["LOCAL_WORLD_SIZE"] == str(per_host)
        assert env["MY_JOB_VARIABLE"] == "set on every host"
        assert env["PYTHONPATH"].startswith(str(cluster.hosts[0].job_dir / "code"))
        assert f"[{host} rank {rank}] rank {rank} of {size} on {host}: allreduce" in runs[0].output
    assert "MPI: mpirun started orted here" in runs[1].output or "prted" in runs[1].output
    assert mpi_leftovers(SCRIPT) == []


def test_a_failing_rank_on_host_2_ends_every_host(netns_hosts):
    cluster = netns_hosts(3)
    prepare(cluster, **{"fail-host": "algo-2", "sleep": 0.5})
    runs = run_job(cluster, timeout=120)
    ended = time.time()
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode not in (None, 0), f"{host.name}:\n{run.output[-5000:]}"
        failure = (host.job_dir / "output" / "failure").read_text()[:1024]  # what the platform shows
        # "failed with exit code 1", or "failed (it was stopped before ...)" when mpirun's teardown
        # killed it before it could report: its traceback, streamed to the master, still names it.
        assert "rank 1 (local rank 0) on host algo-2 failed" in failure, failure
        assert "ValueError: boom on rank 1 on algo-2" in failure, failure
        assert "Traceback (most recent call last)" in failure, failure
        assert not (host.job_dir / "output" / "success").exists()
    assert (
        "The MPI job failed on the master algo-1"
        in (cluster.hosts[2].job_dir / "output" / "failure").read_text()
    )
    took = ended - float((cluster.hosts[0].job_dir / "model" / "failed-at").read_text())
    assert took < 30, f"every host ended {took:.0f} s after rank 1 failed"
    assert mpi_leftovers(SCRIPT) == []


def test_a_worker_that_never_comes_up_fails_the_master_in_time(netns_hosts, tmp_path):
    cluster = netns_hosts(2)
    prepare(cluster)
    master, worker = cluster.hosts
    silent = cluster.popen(worker, ["sleep", "120"])  # algo-2 never starts smc, so never its sshd
    start = time.monotonic()
    completed = master.run([TRAIN], env=host_env(master, SMC_MPI_WAIT_TIMEOUT="5"), timeout=60)
    took = time.monotonic() - start
    silent.kill()
    assert completed.returncode == 6, completed.stderr
    failure = (master.job_dir / "output" / "failure").read_text()
    assert "algo-2 did not get ready within 5 s" in failure, failure
    assert "SMC_MPI_WAIT_TIMEOUT" in failure
    assert took < 30
    assert mpi_leftovers(SCRIPT) == []


def test_a_worker_whose_sshd_cannot_start_fails_both_hosts(netns_hosts):
    cluster = netns_hosts(2)
    prepare(cluster)
    runs = run_job(cluster, timeout=60, env={"algo-2": {"SMC_MPI_SSHD": "/bin/false"}})
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode == 6, f"{host.name}:\n{run.output[-5000:]}"
        failure = (host.job_dir / "output" / "failure").read_text()
        assert "algo-2" in failure and "sshd" in failure, failure
    assert mpi_leftovers(SCRIPT) == []


def test_the_jobs_sshd_lets_no_one_else_in(netns_hosts):
    cluster = netns_hosts(3)
    prepare(cluster, sleep=12)
    master, worker, third = cluster.hosts
    earlier = set(Path("/tmp").glob("smc-mpi-*"))
    logs = [cluster.base / f"{h.name}.log" for h in cluster.hosts]
    processes = [
        cluster.popen(
            h, [TRAIN], env=host_env(h), stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=h.job_dir
        )
        for h, log in zip(cluster.hosts, logs, strict=True)
    ]
    wait_for_ranks(logs)
    # Listening on the job's interface only.
    listening = worker.run(["ss", "-Hltn", "sport = :22"]).stdout.split()
    assert f"{worker.address}:22" in listening and "0.0.0.0:22" not in listening, listening
    assert worker.run(["ss", "-Hltn", "sport = :22"]).stdout.count("LISTEN") == 1
    key_dirs = sorted(set(Path("/tmp").glob("smc-mpi-*")) - earlier)
    common = [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
    ]
    # A password (or keyboard-interactive) login: the server offers only public keys.
    password = master.run(
        [
            "ssh",
            *common,
            "-o",
            "BatchMode=yes",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "root@algo-2",
            "true",
        ]
    )
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr, password.stderr
    # A key that is not the job's.
    other = cluster.base / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    stranger = master.run(["ssh", *common, "-o", "BatchMode=yes", "-i", str(other), "root@algo-2", "true"])
    assert stranger.returncode == 255 and "Permission denied" in stranger.stderr, stranger.stderr
    # The job's key itself, from a host other than the master.
    job_keys = [d / "id_ed25519" for d in key_dirs if (d / "id_ed25519").exists()]
    assert job_keys, key_dirs
    sideways = third.run(
        ["ssh", *common, "-o", "BatchMode=yes", "-i", str(job_keys[0]), "root@algo-2", "true"]
    )
    assert sideways.returncode == 255 and "Permission denied" in sideways.stderr, sideways.stderr
    for process in processes:
        process.wait(timeout=90)
    for host, process, log in zip(cluster.hosts, processes, logs, strict=True):
        assert process.returncode == 0, f"{host.name}:\n{log.read_text()[-4000:]}"
    assert not any(d.exists() for d in key_dirs), "the job's keys outlived it"
    assert mpi_leftovers(SCRIPT) == []


LOOP = r"""
import os, signal, sys, time
from mpi4py import MPI

host = os.environ["SM_CURRENT_HOST"]

def checkpoint(signum, frame):
    with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], f"checkpoint-{host}"), "w") as f:
        f.write("saved on SIGTERM")
    sys.exit(0)

signal.signal(signal.SIGTERM, checkpoint)
comm = MPI.COMM_WORLD
for step in range(600):  # a collective every 0.1 s
    comm.allreduce(1)
    print(f"{host} step {step}", flush=True)
    time.sleep(0.1)
"""


@pytest.mark.parametrize("fault", HOST_FAULTS)
def test_every_host_ends_when_one_is_lost_or_stopped(smc_job, netns_hosts, fault):
    # Issue 29: a worker killed or cut off, a stop to one host's train. A master that falls silent is
    # the worker's side of the network cut (each takes the other as silent).
    trial = HostFaultTrial.start(
        smc_job,
        netns_hosts(2),
        fault,
        code={"train.py": LOOP},
        entry_point="train.py",
        hyperparameters={"sagemaker_mpi_enabled": True},
        env={"SMC_DISABLE_PLUGINS": "pytorch", "SMC_MPI_WAIT_TIMEOUT": "60"},
    )
    outcomes = trial.run()
    if fault.startswith("sigterm"):  # MPI reports a stop as a stop (143), not as exit code 1
        assert "exit code 1" not in (outcomes[0].failure or "").split("\n")[0]
    # nothing left running: the trial checks every host's namespace (mpirun, orted, sshd, the ranks)
