"""A local job: what it is made of, its job directory, and the environment ``train`` runs with.

``smc local`` (:mod:`smc_core.local.command`) turns its arguments into a :class:`LocalJob`, checks it
(:func:`validate`), and the runner (:mod:`smc_core.local.run`) writes each host's job directory with
:func:`build_job_dir`, as the SageMaker Python SDK's local mode lays one out
(``./.smc/jobs/<job-name>/`` unless ``--job-dir`` is given)::

    input/config/hyperparameters.json   every value JSON-encoded, as the SDK writes it
    input/config/resourceconfig.json    the host's name, every host's name, its network interface
    input/config/inputdataconfig.json   one File-mode entry per channel
    input/data/<channel>                a symbolic link to a local channel path (never copied:
                                        the data is used in place, as the SDK's bind mounts do),
                                        or a directory holding an s3:// channel's download
    code/                               the source dir, fetched by the job itself
                                        (``sagemaker_submit_directory`` is ``file://<source dir>``)
    model/  output/                     what the job produces

Every piece is a public function: :func:`validate`, :func:`build_job_dir`, :func:`job_environment`,
:func:`make_output_tarballs`, :func:`clean_job_dir`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smc_core.errors import ConfigError, FetchError
from smc_core.host.entrypoints import find_entry_points
from smc_core.host.plugins import ADAPTER_GROUP
from smc_core.local.checkpoints import write_checkpoint_config
from smc_core.usercode.describe import is_package
from smc_core.usercode.fetch import check_local_source
from smc_core.usercode.s3 import download_prefix

DEFAULT_JOBS_DIR = Path(".smc") / "jobs"
LOCAL_HOST = "algo-1"
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class LocalJob:
    """What a local training job is made of, before its directory is written.

    Attributes:
        source_dir: the user's code (copied into ``code/`` by the job's own fetch step).
        entry_point: the script, shell script or module to run, relative to ``source_dir``.
        job_dir: where the job directory is written.
        job_name: the training job's name (``SAGEMAKER_JOB_NAME`` in the job).
        hyperparameters: decoded values; JSON-encoded when written.
        channels: ``{name: local path or s3:// URI}``.
        env: extra environment variables for the job.
        adapter: the adapter to pin (``SMC_ADAPTER``), or None to let smc choose.
        checkpoint_s3_uri: checkpoints kept in step with this ``s3://`` prefix, as the platform does
            (``checkpointconfig.json``), or None.
        checkpoint_local_path: where the job sees its checkpoints (default ``<job dir>/checkpoints``).
        s3_output: ``sagemaker_s3_output``: where ``output/intermediate`` is synced while the job runs.
    """

    source_dir: Path
    entry_point: str
    job_dir: Path
    job_name: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    adapter: str | None = None
    checkpoint_s3_uri: str | None = None
    checkpoint_local_path: Path | None = None
    s3_output: str | None = None

    @property
    def checkpoint_dir(self) -> Path:
        """Where the job's checkpoints are on this machine."""
        return self.checkpoint_local_path or self.job_dir / "checkpoints"


def encode_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """JSON-encode every value, as the SageMaker Python SDK writes ``hyperparameters.json``."""
    return {key: json.dumps(value) for key, value in hyperparameters.items()}


def installed_adapters() -> list[str]:
    """Names of the installed ``smc.adapters`` entry points."""
    return sorted({ep.name for ep in find_entry_points(ADAPTER_GROUP)[ADAPTER_GROUP]})


def validate(job: LocalJob) -> None:
    """Check everything that can be checked before anything runs; raise :class:`ConfigError`."""
    if not job.source_dir.is_dir():
        raise ConfigError(
            f"source dir {job.source_dir}: no such directory. Pass the folder that holds your training code."
        )
    try:
        check_local_source(job.source_dir, f"source dir {job.source_dir}")
    except FetchError as error:
        raise ConfigError(error.message) from None
    entry = job.source_dir / job.entry_point
    if not entry.exists() and not is_package(job.source_dir):
        present = sorted(p.name for p in job.source_dir.iterdir() if p.suffix in (".py", ".sh"))[:10]
        raise ConfigError(
            f"--entry-point {job.entry_point}: not found in {job.source_dir} "
            f"(scripts there: {', '.join(present) or 'none'}). Name a file inside the source dir."
        )
    for name, location in job.channels.items():
        if not CHANNEL_NAME.match(name):
            raise ConfigError(
                f"--channel {name}={location}: channel names use letters, digits, '.', '_' and '-' "
                "(e.g. train, validation)."
            )
        if location.startswith("s3://"):
            continue
        if "://" in location and not location.startswith("file://"):
            raise ConfigError(
                f"--channel {name}={location}: use a local path, file://PATH or s3://BUCKET/PREFIX."
            )
        path = Path(location.removeprefix("file://"))
        if not path.exists():
            raise ConfigError(
                f"--channel {name}={location}: no such file or directory. Pass an existing path."
            )
    if job.adapter is not None and job.adapter not in installed_adapters():
        raise ConfigError(
            f"--adapter {job.adapter}: not installed (installed adapters: "
            f"{', '.join(installed_adapters()) or 'none'}). Install it, e.g. pip install smc-{job.adapter}."
        )
    if job.job_dir.exists() and not job.job_dir.is_dir():
        raise ConfigError(
            f"job dir {job.job_dir} is a {'symbolic link' if job.job_dir.is_symlink() else 'file'}, not a "
            "directory: --job-dir names the directory smc local builds the job in. Give a new or empty "
            "directory's path."
        )
    if job.job_dir.exists() and any(job.job_dir.iterdir()):
        raise ConfigError(
            f"job dir {job.job_dir} already exists. Choose another --job-name or --job-dir, "
            "or remove the old job first."
        )


# --- the job directory -----------------------------------------------------------------------------


def build_job_dir(
    job: LocalJob,
    *,
    current_host: str = LOCAL_HOST,
    hosts: Sequence[str] = (LOCAL_HOST,),
    interface: str = "lo",
) -> Path:
    """Write ``job.job_dir`` as the SDK's local mode lays it out; return it.

    ``current_host``, ``hosts`` and ``interface`` go into ``resourceconfig.json`` (one host of
    ``smc local --hosts N`` gets its own name, all N names and its network interface).
    """
    base = job.job_dir
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    for sub in ("code", "model", "output/data", "output/intermediate", "input/data"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    hyperparameters = dict(job.hyperparameters)
    hyperparameters.update(
        {
            "sagemaker_program": job.entry_point,
            "sagemaker_submit_directory": job.source_dir.resolve().as_uri(),
            "sagemaker_job_name": job.job_name,
            "sagemaker_container_log_level": 20,
        }
    )
    if job.s3_output:
        hyperparameters["sagemaker_s3_output"] = job.s3_output
    (config / "hyperparameters.json").write_text(
        json.dumps(encode_hyperparameters(hyperparameters), indent=1)
    )
    resource_config = {
        "current_host": current_host,
        "hosts": list(hosts),
        "network_interface_name": interface,
        "current_instance_type": "local",
    }
    (config / "resourceconfig.json").write_text(json.dumps(resource_config, indent=1))
    if job.checkpoint_s3_uri:
        write_checkpoint_config(config, job.checkpoint_s3_uri, job.checkpoint_dir)
    (config / "inputdataconfig.json").write_text(
        json.dumps({name: {"TrainingInputMode": "File"} for name in job.channels}, indent=1)
    )
    for name, location in job.channels.items():
        target = base / "input" / "data" / name
        if location.startswith("s3://"):
            download_channel(location, target)
        else:
            target.symlink_to(Path(location.removeprefix("file://")).resolve())
    return base


def download_channel(uri: str, target: Path) -> None:
    """Download every object under the ``s3://`` prefix ``uri`` into ``target``, with progress."""
    target.mkdir(parents=True, exist_ok=True)
    download_prefix(uri, target)


def job_environment(job: LocalJob, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``train`` runs with: this one, the job's ``--env`` values, the job dir."""
    env = dict(os.environ if environ is None else environ)
    env.update(job.env)
    env["SAGEMAKER_BASE_DIR"] = str(job.job_dir.resolve())
    env["TRAINING_JOB_NAME"] = job.job_name
    if job.adapter:
        env["SMC_ADAPTER"] = job.adapter
    return env


def make_output_tarballs(job_dir: Path) -> tuple[Path, Path]:
    """``model.tar.gz`` (of ``model/``) and ``output.tar.gz`` (of ``output/data/``), as the platform
    uploads them, written into ``job_dir/output/``."""
    tarballs = []
    for name, source in (("model.tar.gz", job_dir / "model"), ("output.tar.gz", job_dir / "output" / "data")):
        path = job_dir / "output" / name
        with tarfile.open(path, "w:gz") as tar:
            for item in sorted(source.iterdir()) if source.is_dir() else []:
                tar.add(item, arcname=item.name)
        tarballs.append(path)
    return tarballs[0], tarballs[1]


def clean_job_dir(job_dir: Path) -> None:
    """Remove what only the run needed (``input/``, ``code/``), keeping ``model/`` and ``output/``."""
    for sub in ("input", "code"):
        shutil.rmtree(job_dir / sub, ignore_errors=True)
