"""Local mode: a whole training job on this machine, no Docker, no AWS account.

``smc local SOURCE_DIR --entry-point train.py --hyperparameter epochs=2 --channel train=./data``
builds a job directory the way the SageMaker Python SDK's local mode lays one out, runs the whole
lifecycle in it (``train``, as the platform would), and prints a summary.

The job directory (``./.smc/jobs/<job-name>/`` unless ``--job-dir`` is given)::

    input/config/hyperparameters.json   every value JSON-encoded, as the SDK writes it
    input/config/resourceconfig.json    one host, algo-1, on the loopback interface
    input/config/inputdataconfig.json   one File-mode entry per channel
    input/data/<channel>                a symbolic link to a local channel path (never copied:
                                        the data is used in place, as the SDK's bind mounts do),
                                        or a directory holding an s3:// channel's download
    code/                               the source dir, fetched by the job itself
                                        (``sagemaker_submit_directory`` is ``file://<source dir>``)
    model/  output/                     what the job produces

Every piece is a public function: :func:`parse_key_value`, :func:`build_job_dir`,
:func:`run_job`, :func:`make_output_tarballs`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smc_core.cli.local_checkpoints import (
    download_checkpoints,
    finish_checkpoint_sync,
    start_checkpoint_sync,
    write_checkpoint_config,
)
from smc_core.errors import ConfigError, SmcError
from smc_core.usercode.describe import is_package

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


@dataclass(frozen=True)
class LocalResult:
    """How a local job ended and where its artefacts are."""

    exit_code: int
    duration: float
    job_dir: Path
    failure: str | None
    tarballs: tuple[Path, ...] = ()

    @property
    def model_dir(self) -> Path:
        """The trained model: ``<job dir>/model``."""
        return self.job_dir / "model"

    @property
    def output_data_dir(self) -> Path:
        """Other outputs: ``<job dir>/output/data``."""
        return self.job_dir / "output" / "data"


CHECKPOINT_FLUSH_TIMEOUT = 60.0
"""Seconds the final checkpoint upload may take after the job ended."""


def encode_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """JSON-encode every value, as the SageMaker Python SDK writes ``hyperparameters.json``."""
    return {key: json.dumps(value) for key, value in hyperparameters.items()}


# --- parsing ----------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A command-line value: parsed as JSON when it is JSON (``3``, ``true``, ``[1,2]``), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_key_value(item: str, option: str) -> tuple[str, str]:
    """Split ``key=value``; anything else is a :class:`ConfigError` that shows the expected form."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} epochs=3.")
    return key.strip(), value


def load_hyperparameters_file(path: Path) -> dict[str, Any]:
    """Read ``--hyperparameters-file``: a JSON object of (decoded) values."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--hyperparameters-file {path}: no such file.") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--hyperparameters-file {path}: not valid JSON ({exc.msg}, line {exc.lineno})."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"--hyperparameters-file {path}: holds a JSON {type(data).__name__}; "
            'expected an object such as {"epochs": 3}.'
        )
    return data


def default_job_name(entry_point: str) -> str:
    """``<entry stem>-<UTC timestamp with milliseconds>``, valid as a SageMaker job name."""
    stem = re.sub(r"[^A-Za-z0-9-]+", "-", Path(entry_point).stem).strip("-") or "job"
    now = time.time()
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    return f"{stem}-{stamp}"


def installed_adapters() -> list[str]:
    """Names of the installed ``smc.adapters`` entry points."""
    from smc_core.host.entrypoints import find_entry_points
    from smc_core.host.plugins import ADAPTER_GROUP

    return sorted({ep.name for ep in find_entry_points(ADAPTER_GROUP)[ADAPTER_GROUP]})


def validate(job: LocalJob) -> None:
    """Check everything that can be checked before anything runs; raise :class:`ConfigError`."""
    if not job.source_dir.is_dir():
        raise ConfigError(
            f"source dir {job.source_dir}: no such directory. Pass the folder that holds your training code."
        )
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
    from smc_core.usercode.s3 import download_prefix

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


def run_job(job: LocalJob, *, environ: Mapping[str, str] | None = None) -> LocalResult:
    """Run ``train`` in the job directory (a subprocess, as the platform runs it); wait for it."""
    started = time.perf_counter()
    checkpoint_sync = None
    if job.checkpoint_s3_uri:  # what the platform does around the container
        restored = download_checkpoints(job.checkpoint_s3_uri, job.checkpoint_dir)
        checkpoint_sync = start_checkpoint_sync(job.checkpoint_s3_uri, job.checkpoint_dir, restored=restored)
    command = [sys.executable, "-m", "smc_core.cli.main", "train"]
    with subprocess.Popen(command, env=job_environment(job, environ), cwd=job.job_dir) as process:
        # SIGTERM sent to smc local is passed on to `train`, which stops the job and reports it.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
        try:
            while True:
                try:
                    exit_code = process.wait()
                    break
                except KeyboardInterrupt:
                    # From a terminal, Ctrl-C reached `train` too (same process group); otherwise
                    # pass it on. Either way `train` stops the user's processes, with their grace
                    # period, and reports: wait for it rather than leave them behind.
                    if not sys.stdin.isatty():
                        process.send_signal(signal.SIGINT)
                    print("smc local: interrupted; waiting for the job to stop ...", file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if checkpoint_sync is not None:
                finish_checkpoint_sync(checkpoint_sync, CHECKPOINT_FLUSH_TIMEOUT)
    failure_file = job.job_dir / "output" / "failure"
    failure = failure_file.read_text(errors="replace") if exit_code and failure_file.exists() else None
    return LocalResult(exit_code, time.perf_counter() - started, job.job_dir, failure)


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


# --- the command ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``smc local`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="smc local",
        description=(
            "Run a training job on this machine, no Docker and no AWS account: build a job directory "
            "as the SageMaker SDK's local mode would, run the whole lifecycle in it, print a summary."
        ),
        epilog=(
            "example: smc local examples/pytorch --entry-point train.py --hyperparameter epochs=3 "
            "--channel train=./data\n"
            "Channels given as local paths are linked into input/data/<name>, not copied; "
            "s3:// channels are downloaded (AWS_ENDPOINT_URL is honoured)."
        ),
    )
    parser.add_argument(
        "source", nargs="?", metavar="SOURCE_DIR", help="the folder holding the training code"
    )
    parser.add_argument("--source-dir", dest="source_dir", help="the same as SOURCE_DIR")
    parser.add_argument("--entry-point", required=True, help="script or module to run, e.g. train.py")
    parser.add_argument(
        "--hyperparameter",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter; VALUE is parsed as JSON when it is JSON (repeatable)",
    )
    parser.add_argument("--hyperparameters-file", type=Path, help="a JSON object of hyperparameters")
    parser.add_argument(
        "--channel",
        "-c",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="an input channel: a local path or s3:// prefix (repeatable)",
    )
    parser.add_argument("--adapter", help="the adapter to use (default: the only one installed)")
    parser.add_argument(
        "--env",
        "-e",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable (repeatable)",
    )
    parser.add_argument("--job-name", help="the job's name (default: <entry point>-<timestamp>)")
    parser.add_argument(
        "--job-dir", type=Path, help="where to build the job (default: ./.smc/jobs/<job-name>)"
    )
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument(
        "--keep", action="store_true", default=True, help="keep the whole job directory (default)"
    )
    keep.add_argument(
        "--clean",
        dest="keep",
        action="store_false",
        help="after the run, remove input/ and code/ from the job directory, keeping model/ and output/",
    )
    parser.add_argument(
        "--checkpoint-s3-uri",
        metavar="S3_URI",
        help="keep the job's checkpoints in step with this s3:// prefix, as the platform does: "
        "download before the job, upload new and changed files while it runs and at its end",
    )
    parser.add_argument(
        "--checkpoint-local-path",
        type=Path,
        metavar="DIR",
        help="where the job's checkpoints are (default: <job dir>/checkpoints; SM_CHECKPOINT_DIR in the job)",
    )
    parser.add_argument(
        "--s3-output",
        metavar="S3_URI",
        help="sync output/intermediate to this s3:// prefix while the job runs (sagemaker_s3_output)",
    )
    parser.add_argument(
        "--output-tar",
        action="store_true",
        help="also write output/model.tar.gz and output/output.tar.gz, as the platform uploads them",
    )
    from smc_core.cli.local_run import add_hosts_arguments, add_metric_arguments

    add_hosts_arguments(parser)
    add_metric_arguments(parser)
    return parser


def check_job_name(name: str) -> str:
    """``name`` when it is one plain path component (it names a directory under ``./.smc/jobs``).

    :raises ConfigError: an absolute name, one with ``/``, ``..``, or a NUL, or an empty one (exit 2).
    """
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(
            f"--job-name {name!r}: a job name is one plain name (it becomes the directory "
            f"{DEFAULT_JOBS_DIR}/<job-name>), without '/', '..' or an absolute path; e.g. my-job-1. "
            "Use --job-dir to put the job somewhere else."
        )
    return name


def job_from_args(args: argparse.Namespace) -> LocalJob:
    """Turn parsed ``smc local`` arguments into a :class:`LocalJob`."""
    source = args.source_dir or args.source
    if args.source and args.source_dir and Path(args.source) != Path(args.source_dir):
        raise ConfigError("Give the source dir once: either SOURCE_DIR or --source-dir.")
    if not source:
        raise ConfigError("Name the source dir: smc local SOURCE_DIR --entry-point train.py")
    hyperparameters: dict[str, Any] = {}
    if args.hyperparameters_file:
        hyperparameters.update(load_hyperparameters_file(args.hyperparameters_file))
    for item in args.hyperparameter:
        key, value = parse_key_value(item, "--hyperparameter")
        hyperparameters[key] = parse_value(value)
    channels = dict(parse_key_value(item, "--channel") for item in args.channel)
    env = dict(parse_key_value(item, "--env") for item in args.env)
    job_name = check_job_name(args.job_name) if args.job_name else default_job_name(args.entry_point)
    job_dir = args.job_dir or DEFAULT_JOBS_DIR / job_name
    return LocalJob(
        source_dir=Path(source),
        entry_point=args.entry_point,
        job_dir=Path(job_dir).absolute(),
        job_name=job_name,
        hyperparameters=hyperparameters,
        channels=channels,
        env=env,
        adapter=args.adapter,
        checkpoint_s3_uri=checked_s3_uri(args.checkpoint_s3_uri, "--checkpoint-s3-uri"),
        checkpoint_local_path=args.checkpoint_local_path.absolute() if args.checkpoint_local_path else None,
        s3_output=checked_s3_uri(args.s3_output, "--s3-output"),
    )


def checked_s3_uri(uri: str | None, option: str) -> str | None:
    """``uri`` when it is an ``s3://bucket[/prefix]`` location (or None); a ConfigError otherwise."""
    if uri is not None:
        from smc_core.outputs.upload import parse_s3_prefix

        parse_s3_prefix(uri, option)
    return uri


def summary(job: LocalJob, result: LocalResult) -> str:
    """The lines printed after a local job."""
    status = "succeeded" if result.exit_code == 0 else f"failed (exit code {result.exit_code})"
    model_files = sorted(
        str(p.relative_to(result.model_dir)) for p in result.model_dir.rglob("*") if p.is_file()
    )
    lines = [
        f"smc local: job {job.job_name} {status} in {result.duration:.1f} s",
        f"  job dir: {result.job_dir}",
        f"  model:   {result.model_dir} ({', '.join(model_files[:5]) or 'empty'}"
        f"{', ...' if len(model_files) > 5 else ''})",
        f"  outputs: {result.output_data_dir}",
    ]
    lines += [f"  tarball: {path}" for path in result.tarballs]
    if result.failure:
        lines.append("  failure: " + result.failure.strip().replace("\n", "\n           ")[:1500])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``smc local``: returns the job's exit code (2 for bad arguments)."""
    args = build_parser().parse_args(argv)
    from smc_core.cli.local_run import plan_from_args, run_local

    try:
        job = job_from_args(args)
        validate(job)
        plan = plan_from_args(args, job)  # None: one host, no metrics, as before --hosts existed
        if plan is None:
            build_job_dir(job)
    except SmcError as error:
        print(f"smc local: {error.message}", file=sys.stderr)
        return error.exit_code
    if plan is not None:
        return run_local(job, plan, keep=args.keep, output_tar=args.output_tar)
    result = run_job(job)
    if args.output_tar:
        result = LocalResult(
            result.exit_code,
            result.duration,
            result.job_dir,
            result.failure,
            make_output_tarballs(job.job_dir),
        )
    if not args.keep:
        clean_job_dir(job.job_dir)
    print(summary(job, result))
    return result.exit_code
