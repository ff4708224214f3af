"""Fixtures for the ModelTrainer tests: jobs built by the real SageMaker Python SDK v3, laid out as the
platform lays them out, and run the way the platform runs them.

* ``sdk_jobs`` (session): every job of :data:`SPECS`, submitted once by the real SDK
  (``sagemaker==3.27.0`` in ``$SMC_SAGEMAKER_PYTHON``, ``make sagemaker-sdk``) to moto's S3 and
  SageMaker (``s3_server``): name to the request as the API received it.
* :func:`lay_out`: the job directory the platform makes of a request: ``input/config/*.json`` and
  every channel downloaded from S3 (``code``, ``sm_drivers`` exactly as the SDK uploaded them).
* :func:`entry_command`: the request's entry point: the SDK's ``/bin/bash -c ".../sm_train.sh"`` when it
  set one, else the image's ``train``. The SDK's scripts hard-code ``/opt/ml``; :func:`lay_out` rewrites
  that prefix to the job directory in them (as ``SAGEMAKER_BASE_DIR`` moves it for smc), nothing else.
* :func:`sdk_environment`: what the SDK's own ``environment.py`` exports on that job directory, and the
  arguments its ``basic_script_driver`` gives the entry script: the reference smc is compared with.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ..helpers import make_wheel

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = os.environ.get("SMC_SAGEMAKER_PYTHON") or str(ROOT / ".venv-sagemaker" / "bin" / "python")
SDK_JOBS = Path(__file__).with_name("sdk_jobs.py")
BUCKET = "smc-sdk-jobs"
OPT_ML = "/opt/ml"

# Named explicitly (as `make test` does), the SDK must be there: these tests never skip silently.
sdk_missing = pytest.mark.skipif(
    not Path(SDK_PYTHON).exists() and not os.environ.get("SMC_SAGEMAKER_PYTHON"),
    reason=f"no SageMaker SDK v3 interpreter at {SDK_PYTHON} (make sagemaker-sdk, SMC_SAGEMAKER_PYTHON)",
)

PROBE = """\
import json, os, sys
import tinydep
record = {"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), "tinydep": tinydep.VALUE,
          "points": open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "points.csv")).read()}
with open(os.path.join(os.environ["SM_MODEL_DIR"], "probe.json"), "w") as f:
    json.dump(record, f)
print("probe done", flush=True)
"""

FAILING = """\
import tinydep

def load(path):
    raise ValueError(f"no such dataset: {path}")

load("s3://nowhere")
"""

TORCH_ALLREDUCE = """\
import json, os, sys
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, size = dist.get_rank(), dist.get_world_size()
total = torch.tensor([rank + 1.0])
dist.all_reduce(total)
record = {"rank": rank, "size": size, "sum": total.item(), "argv": sys.argv[1:], "cwd": os.getcwd(),
          "env": dict(os.environ)}
with open(os.path.join(os.environ["SM_MODEL_DIR"], f"rank-{rank}.json"), "w") as f:
    json.dump(record, f)
print(f"rank {rank} of {size}: allreduce {total.item()}", flush=True)
dist.destroy_process_group()
"""

HYPERPARAMETERS = {
    "epochs": 3,
    "learning-rate": 0.1,
    "ratio": "1.50",
    "use_amp": True,
    "layers": [64, 32],
    "opt": {"name": "adam", "betas": [0.9, 0.99]},
    "name": "resnet",
    "code": "007",
    "nothing": None,
    "k": 5,
    "greeting": "héllo",
}
"""Typed values as a user gives them to ``ModelTrainer(hyperparameters=...)``."""


def _specs(work: Path) -> list[dict[str, Any]]:
    """The jobs the SDK builds, with their source dirs and data written under ``work``."""
    files = {
        "basic": {"train.py": PROBE, "requirements.txt": "tinydep==1.0\n"},
        "failing": {"train.py": FAILING, "requirements.txt": "tinydep==1.0\n"},
        "torch": {"train.py": TORCH_ALLREDUCE},
        "mpi": {"mpi_allreduce.py": _mpi_script()},
        "data": {"points.csv": "1,2\n3,4\n"},
    }
    for folder, content in files.items():
        for name, text in content.items():
            (work / folder).mkdir(parents=True, exist_ok=True)
            (work / folder / name).write_text(text)
    data = {"train": str(work / "data")}
    return [
        {
            "name": "basic",
            "kind": "train",
            "hosts": 1,
            "source_code": {"source_dir": str(work / "basic"), "entry_script": "train.py",
                            "requirements": "requirements.txt"},
            "hyperparameters": HYPERPARAMETERS,
            "channels": data,
        },
        {
            "name": "failing",
            "kind": "train",
            "hosts": 1,
            "source_code": {"source_dir": str(work / "failing"), "entry_script": "train.py",
                            "requirements": "requirements.txt"},
            "channels": data,
        },
        {
            "name": "command-train",
            "kind": "train",
            "hosts": 1,
            "source_code": {"source_dir": str(work / "failing"), "entry_script": "train.py",
                            "requirements": "requirements.txt", "command": "train"},
            "channels": data,
        },
        {
            "name": "smc-config",
            "kind": "train",
            "hosts": 1,
            "source_code": {"source_dir": str(work / "basic"), "entry_script": "train.py",
                            "requirements": "requirements.txt"},
            "distributed": {"class": "Smc"},
            "hyperparameters": {"epochs": 2},
            "channels": data,
        },
        {
            "name": "tuning-torchrun",
            "kind": "tune",
            "hosts": 1,
            "source_code": {"source_dir": str(work / "torch"), "entry_script": "train.py"},
            "distributed": {"class": "Torchrun", "process_count_per_node": 2},
            "hyperparameters": {"epochs": 2, "lr": 0.5, "flag": False},
            "ranges": {"lr": [0.1, 0.2]},
            "channels": data,
        },
        {
            "name": "hosts-torchrun",
            "kind": "train",
            "hosts": 2,
            "source_code": {"source_dir": str(work / "torch"), "entry_script": "train.py"},
            "distributed": {"class": "Smc", "launch": "torchrun", "process_count_per_node": 2},
            "hyperparameters": {"epochs": 2},
            "channels": data,
        },
        {
            "name": "hosts-mpi",
            "kind": "train",
            "hosts": 2,
            "source_code": {"source_dir": str(work / "mpi"), "entry_script": "mpi_allreduce.py",
                            "command": "train"},
            "distributed": {"class": "MPI", "process_count_per_node": 2,
                            "mpi_additional_options": ["-x", "MY_JOB_VARIABLE=from mpi_additional_options"]},
            "channels": data,
        },
    ]  # fmt: skip


def _mpi_script() -> str:
    from smc_core.testing.mpi import ALLREDUCE_SCRIPT

    return ALLREDUCE_SCRIPT


@pytest.fixture(scope="session")
def sdk_jobs(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every job of :func:`_specs`, submitted by the real SDK to moto: spec name to the request."""
    work = tmp_path_factory.mktemp("sdk-jobs")
    specs = work / "specs.json"
    specs.write_text(json.dumps(_specs(work)))
    config = work / "sagemaker-config.yaml"  # no telemetry request leaves the machine
    config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
    )
    s3_server.client().create_bucket(Bucket=BUCKET)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))},
        **s3_server.env,
        "SAGEMAKER_VALIDATE_ROLE": "false",  # moto cannot simulate IAM policies
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
        "PYTHONPATH": "",
    }
    done = subprocess.run(
        [SDK_PYTHON, str(SDK_JOBS), str(specs)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"the SDK failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _download(client: Any, uri: str, target: Path) -> None:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.rstrip("/") + "/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            path = target / item["Key"][len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(path))


def hyperparameters_of(request: Mapping[str, Any], tuned: Mapping[str, str] | None = None) -> dict[str, str]:
    """``hyperparameters.json``: the training job's, or a tuning job's static ones plus ``tuned``."""
    if "StaticHyperParameters" in request:
        return {**request["StaticHyperParameters"], **(tuned or {})}
    return dict(request.get("HyperParameters") or {})


def lay_out(
    request: Mapping[str, Any],
    base: Path,
    s3: Any,
    *,
    host: str = "algo-1",
    hosts: list[str] | None = None,
    interface: str = "lo",
    tuned: Mapping[str, str] | None = None,
) -> Path:
    """The job directory the platform makes of ``request`` for ``host``: the config files, every
    channel downloaded from S3; the SDK's scripts with ``/opt/ml`` rewritten to ``base``."""
    hosts = hosts or [host]
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters_of(request, tuned)))
    channels = {}
    for channel in request["InputDataConfig"]:
        entry = {
            "TrainingInputMode": channel.get("InputMode", "File"),
            "S3DistributionType": channel["DataSource"]["S3DataSource"]["S3DataDistributionType"],
            "RecordWrapperType": "None",
        }
        channels[channel["ChannelName"]] = entry
        _download(
            s3,
            channel["DataSource"]["S3DataSource"]["S3Uri"],
            base / "input" / "data" / channel["ChannelName"],
        )
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    instance_type = request["ResourceConfig"]["InstanceType"]
    resource = {
        "current_host": host,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": hosts,
        # as SageMaker writes it: the group's hosts are not sorted
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": hosts[::-1],
            }
        ],
        "network_interface_name": interface,
    }
    (config / "resourceconfig.json").write_text(json.dumps(resource))
    for sub in ("model", "output/data", "code"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    drivers = base / "input" / "data" / "sm_drivers"
    for script in [*drivers.rglob("*.py"), *drivers.rglob("*.sh")]:
        script.write_text(script.read_text().replace(OPT_ML, str(base)))
    return base


def entry_command(request: Mapping[str, Any], base: Path, train: list[str]) -> list[str]:
    """The request's entry point on ``base``: the SDK's ``sm_train.sh`` command, else ``train``."""
    spec = request["AlgorithmSpecification"]
    if spec.get("ContainerEntrypoint"):
        return [
            *spec["ContainerEntrypoint"],
            *(a.replace(OPT_ML, str(base)) for a in spec["ContainerArguments"]),
        ]
    return train


def job_env(request: Mapping[str, Any], base: Path, path: str, **extra: str) -> dict[str, str]:
    """The environment the platform gives the container: the request's ``Environment``,
    ``TRAINING_JOB_NAME``, ``SAGEMAKER_BASE_DIR`` (for smc), ``PATH`` (the image's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env.pop("PYTHONPATH", None)
    env.update(request.get("Environment") or {})
    env.update(
        TRAINING_JOB_NAME=request.get("TrainingJobName") or request["TuningJobName"] + "-001-0a1b2c3d",
        SAGEMAKER_BASE_DIR=str(base),
        PATH=path,
        SMC_HOST_WAIT_TIMEOUT="60",
        SMC_MPI_WAIT_TIMEOUT="60",
    )
    env.update(extra)
    return env


def sourced(env_file: Path, path: str) -> dict[str, str]:
    """The variables ``env_file`` (``input/sm_training.env``) exports, as ``sm_train.sh`` sources them."""
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    script = f"source {shlex.quote(str(env_file))} && python3 -c {shlex.quote(dump)}"
    done = subprocess.run(
        ["bash", "-c", script], env={"PATH": path}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = [line.split("=", 1)[0][len("export ") :] for line in env_file.read_text().splitlines()]
    exported = json.loads(done.stdout)
    return {name: exported[name] for name in names}


def assert_sees(
    seen: Mapping[str, str], expected: Mapping[str, str], *, apart: Mapping[str, str] = {}
) -> None:
    """``seen`` (the script's environment) holds every variable of ``expected`` (the SDK's
    environment.py's) with its value; ``SM_TRAINING_ENV`` holds the SDK's keys with their values beside
    the classic ones; ``apart`` names the deliberate differences and the value smc gives instead."""
    assert expected, "environment.py exported nothing"
    for name, value in expected.items():
        if apart and name in apart:
            assert seen.get(name) == apart[name], name
        elif name == "SM_TRAINING_ENV":
            ours = json.loads(seen[name])
            assert {key: ours.get(key) for key in json.loads(value)} == json.loads(value)
            assert "is_master" in ours and "module_dir" in ours  # the classic keys are there too
        else:
            assert seen.get(name) == value, name


def sdk_environment(base: Path, env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """What the SDK's ``scripts/environment.py`` exports on ``base`` (sourced from the file it writes,
    as ``sm_train.sh`` sources it), and the arguments its ``basic_script_driver`` gives the script.

    The file it writes (``input/sm_training.env``) is removed again: it is the SDK's, and ``train``
    must not take the job for one that ``sm_train.sh`` started.
    """
    drivers = base / "input" / "data" / "sm_drivers"
    env_file = base / "input" / "sm_training.env"
    dump = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(drivers)!r})\n"
        "from distributed_drivers.basic_script_driver import create_commands\n"
        "print(json.dumps({'command': create_commands()}))\n"
    )
    script = (
        f"python3 {shlex.quote(str(drivers / 'scripts' / 'environment.py'))} >/dev/null && "
        f"source {shlex.quote(str(env_file))} && python3 -c {shlex.quote(dump)}"
    )
    clean = {"PATH": env["PATH"], "TRAINING_JOB_NAME": env["TRAINING_JOB_NAME"], "LANG": "C.UTF-8"}
    done = subprocess.run(["bash", "-c", script], env=clean, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    exported = sourced(env_file, env["PATH"])
    env_file.unlink()
    command = json.loads(done.stdout.strip().splitlines()[-1])["command"]
    return exported, command[2:]  # [python, entry_script, *args]


@pytest.fixture
def scratch_python(tmp_path: Path) -> Iterator[Path]:
    """A throwaway virtual environment's ``bin`` folder: ``python3`` sees this environment's packages
    (smc, torch, pip) but installs into its own site-packages, and ``train`` is smc's, run by it."""
    import site

    venv = tmp_path / "scratch-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python3"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    (Path(purelib) / "zz_outer.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in outer)
    )
    train = venv / "bin" / "train"
    train.write_text(
        f"#!{python}\nimport sys\nfrom smc_core.cli.main import train_main\nsys.exit(train_main())\n"
    )
    train.chmod(0o755)
    yield venv / "bin"


@pytest.fixture
def offline_wheels(tmp_path: Path) -> dict[str, str]:
    """pip and uv install ``tinydep`` 1.0 from a local folder only (no index, no pip.conf)."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinydep", "1.0", "VALUE = 'from the wheel'\n")
    return {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_NO_CONFIG": "1",
    }
