"""The same image and script on Kubeflow Trainer v2, a PyTorchJob and Vertex AI: pods faked as the
platforms make them (network-namespace hosts named as the platform names them, the platform's variables
and nothing of SageMaker's, `train -- --epochs 2` on each), a 2-node x 2-process torch.distributed job
through smc-pytorch. Each host sees its own /opt/ml (and /workspace, /gcs) through a bind mount in a
private mount namespace, as each pod has its own filesystem."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from smc_core.testing import train_command

pytestmark = pytest.mark.netns

INTERFACE = "net0"  # not eth0, and no platform names it: smc-pytorch takes the route to the master

SCRIPT = r"""
import argparse, json, os
import torch
import torch.distributed as dist

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, required=True)
args = parser.parse_args()
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
if rank == 0:
    torch.save(torch.nn.Linear(2, 1).state_dict(), os.path.join(os.environ["SM_MODEL_DIR"], "model.pt"))
names = ["SM_CURRENT_HOST", "SM_MODEL_DIR", "MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME", "SM_HPS",
         "SM_USER_ARGS"]
report = {"rank": rank, "world": world, "sum": total.item(), "epochs": args.epochs,
          **{name: os.environ.get(name) for name in names}}
print("RESULT " + json.dumps(report), flush=True)
dist.barrier()
dist.destroy_process_group()
"""

# Binds each (source, target) pair in a private mount namespace, then runs the command after "--".
BIND = 'while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 97; shift 2; done; shift; exec "$@"'


@pytest.fixture
def mountpoints() -> Iterator[None]:
    """/opt/ml, /workspace and /gcs exist as (empty) mount points; those made here are removed after."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare for a private mount namespace")
    made = []
    for path in (Path("/opt/ml"), Path("/workspace"), Path("/gcs")):
        if not path.exists():
            path.mkdir(parents=True)
            made.append(path)
    yield
    for path in reversed(made):
        try:
            path.rmdir()
        except OSError:
            pass


def base_env(**platform: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_", "PET_"))}
    env.update(SMC_ADAPTER="pytorch", SMC_HOST_WAIT_TIMEOUT="60", PYTHONUNBUFFERED="1", **platform)
    return env


def run_job(cluster, env_for, binds_for):
    """``train -- --epochs 2`` on every host, each with its own binds; the runs and every RESULT line."""

    def command(host):
        pairs = [str(item) for source, target in binds_for(host) for item in (source, target)]
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            BIND,
            "sh",
            *pairs,
            "--",
            *train_command(),
            "--",
            "--epochs",
            "2",
        ]

    runs = cluster.run_all(command, env_for=env_for, timeout=240)
    for host, run in zip(cluster.hosts, runs, strict=True):
        assert run.returncode == 0, f"{host.name}:\n{run.output[-4000:]}"
    results = [
        json.loads(line.split("RESULT ", 1)[1])
        for run in runs
        for line in run.output.splitlines()
        if "RESULT " in line
    ]
    return runs, sorted(results, key=lambda result: result["rank"])


def check_all_reduce(results, *, hosts, master, port, model_dir):
    assert [r["rank"] for r in results] == [0, 1, 2, 3]
    assert {r["world"] for r in results} == {4}
    assert {r["sum"] for r in results} == {10.0}  # 1 + 2 + 3 + 4: every rank took part
    assert {r["epochs"] for r in results} == {2}
    assert {r["SM_HPS"] for r in results} == {'{"epochs":2}'}
    assert {r["SM_USER_ARGS"] for r in results} == {'["--epochs","2"]'}
    assert [r["SM_CURRENT_HOST"] for r in results] == [hosts[0], hosts[0], hosts[1], hosts[1]]
    assert {r["MASTER_ADDR"] for r in results} == {master}
    assert {r["MASTER_PORT"] for r in results} == {str(port)}
    assert {r["GLOO_SOCKET_IFNAME"] for r in results} == {INTERFACE}
    assert {r["SM_MODEL_DIR"] for r in results} == {model_dir}


def bake_code(job_dir: Path) -> None:
    (job_dir / "code").mkdir(parents=True, exist_ok=True)
    (job_dir / "code" / "train.py").write_text(SCRIPT)


def test_kubeflow_trainer_v2_trainjob(netns_hosts, mountpoints):
    names = ["llm-node-0-0.llm", "llm-node-0-1.llm"]
    cluster = netns_hosts(2, interface=INTERFACE, names=names)
    for host in cluster.hosts:
        bake_code(host.job_dir)  # the image's code dir
        (host.job_dir.parent / f"{host.name}-workspace" / "dataset").mkdir(parents=True)

    def env_for(host):
        return base_env(
            PET_NNODES="2",
            PET_NPROC_PER_NODE="2",
            PET_NODE_RANK=str(names.index(host.name)),
            PET_MASTER_ADDR="llm-node-0-0.llm",
            PET_MASTER_PORT="29500",
            SAGEMAKER_PROGRAM="train.py",
        )

    def binds_for(host):
        return [(host.job_dir, "/opt/ml"), (host.job_dir.parent / f"{host.name}-workspace", "/workspace")]

    runs, results = run_job(cluster, env_for, binds_for)
    check_all_reduce(
        results, hosts=names, master="llm-node-0-0.llm", port=29500, model_dir="/workspace/model"
    )
    master, worker = (host.job_dir.parent / f"{host.name}-workspace" / "model" for host in cluster.hosts)
    assert (master / "model.pt").is_file() and not (worker / "model.pt").exists()
    assert "Platform: Kubeflow" in runs[0].output


def test_kubeflow_pytorchjob(netns_hosts, mountpoints, tmp_path):
    names = ["llm-master-0", "llm-worker-0"]
    cluster = netns_hosts(2, interface=INTERFACE, names=names)
    source = tmp_path / "src"  # the code source, named by SAGEMAKER_SUBMIT_DIRECTORY
    source.mkdir()
    (source / "train.py").write_text(SCRIPT)

    def env_for(host):
        rank = str(names.index(host.name))
        return base_env(
            MASTER_ADDR="llm-master-0",
            MASTER_PORT="23456",
            WORLD_SIZE="4",
            RANK=rank,
            PET_NNODES="2",
            PET_NODE_RANK=rank,
            PET_NPROC_PER_NODE="2",
            SAGEMAKER_PROGRAM="train.py",
            SAGEMAKER_SUBMIT_DIRECTORY=str(source),
        )

    _runs, results = run_job(cluster, env_for, lambda host: [(host.job_dir, "/opt/ml")])
    check_all_reduce(results, hosts=names, master="llm-master-0", port=23456, model_dir="/opt/ml/model")
    master, worker = (host.job_dir / "model" for host in cluster.hosts)
    assert (master / "model.pt").is_file() and not (worker / "model.pt").exists()


def test_vertex_custom_job(netns_hosts, mountpoints):
    names = ["workerpool0-x7k2-0", "workerpool1-x7k2-0"]
    cluster = netns_hosts(2, interface=INTERFACE, names=names)
    spec = {"cluster": {"workerpool0": [f"{names[0]}:2222"], "workerpool1": [f"{names[1]}:2222"]}}
    for host in cluster.hosts:
        bake_code(host.job_dir)
        (host.job_dir.parent / f"{host.name}-gcs").mkdir()

    def env_for(host):
        task = {"type": host.name.split("-")[0], "index": 0}
        return base_env(
            CLUSTER_SPEC=json.dumps({**spec, "environment": "cloud", "task": task}),
            TF_CONFIG=json.dumps({"cluster": spec["cluster"], "environment": "cloud", "task": task}),
            AIP_MODEL_DIR="gs://b/run/model/",
            AIP_CHECKPOINT_DIR="gs://b/run/checkpoints/",
            SAGEMAKER_PROGRAM="train.py",
            SMC_PYTORCH_PROCESSES_PER_HOST="2",  # Vertex names no process count: smc's setting does
        )

    def binds_for(host):
        return [(host.job_dir, "/opt/ml"), (host.job_dir.parent / f"{host.name}-gcs", "/gcs")]

    runs, results = run_job(cluster, env_for, binds_for)
    check_all_reduce(results, hosts=names, master=names[0], port=2222, model_dir="/gcs/b/run/model")
    master, worker = (
        host.job_dir.parent / f"{host.name}-gcs" / "b" / "run" / "model" for host in cluster.hosts
    )
    assert (master / "model.pt").is_file() and not (worker / "model.pt").exists()
    assert "Platform: Vertex AI" in runs[0].output
