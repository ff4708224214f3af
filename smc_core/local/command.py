"""``smc local``: a whole training job on this machine, no Docker, no AWS account.

``smc local SOURCE_DIR --entry-point train.py --hyperparameter epochs=2 --channel train=./data``
builds a job directory the way the SageMaker Python SDK's local mode lays one out
(:mod:`smc_core.local.job`), runs the whole lifecycle in it (``train``, as the platform would; on
``--hosts N`` hosts, :mod:`smc_core.local.run`), and prints a summary (:mod:`smc_core.local.summary`)
and, with ``--metric``, the metrics (:mod:`smc_core.local.metrics`).

Every piece is a public function: :func:`parse_key_value`, :func:`job_from_args`,
:func:`plan_from_args`, :func:`run_local`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smc_core.base.redact import redact, remember_secrets
from smc_core.errors import ConfigError, SmcError
from smc_core.local.hosts import HOST_NETWORKS, HostSet, PlainHost, open_hosts
from smc_core.local.job import DEFAULT_JOBS_DIR, LocalJob, clean_job_dir, make_output_tarballs, validate
from smc_core.local.metrics import (
    MetricDefinition,
    MetricMatcher,
    check_unique,
    load_metric_definitions,
    parse_metric_option,
    report_metrics,
)
from smc_core.local.run import DEFAULT_FAILURE_WAIT, run_job
from smc_core.local.summary import summary
from smc_core.outputs.upload import parse_s3_prefix

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
        parse_s3_prefix(uri, option)
    return uri


MAX_HOSTS = 64


@dataclass(frozen=True)
class LocalRunPlan:
    """What ``--hosts``, ``--metric`` and friends asked for, checked."""

    host_set: HostSet
    metrics: tuple[MetricDefinition, ...]
    failure_wait: float


def add_hosts_arguments(parser: argparse.ArgumentParser) -> None:
    """``--hosts``, ``--host-network``, ``--failure-wait``."""
    group = parser.add_argument_group("multi-host jobs")
    group.add_argument(
        "--hosts",
        type=int,
        default=1,
        metavar="N",
        help="run N hosts algo-1 .. algo-N as one distributed job, each in <job dir>/algo-i/ (default 1)",
    )
    group.add_argument(
        "--host-network",
        choices=HOST_NETWORKS,
        default="auto",
        help="netns: a network namespace per host (root; the hosts reach only each other); loopback: "
        "127.0.0.i per host in a user namespace with its own /etc/hosts (the machine's network); "
        "auto (default): netns when root, else loopback",
    )
    group.add_argument(
        "--failure-wait",
        type=float,
        default=DEFAULT_FAILURE_WAIT,
        metavar="SECONDS",
        help="after one host fails, how long the others get to stop on their own before they are "
        f"stopped (default {DEFAULT_FAILURE_WAIT:g})",
    )


def add_metric_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metric`` and ``--metric-definitions``."""
    group = parser.add_argument_group("metrics")
    group.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME=REGEX",
        help="collect a metric from the log: REGEX's first group is the value, as in SageMaker's "
        "MetricDefinitions, e.g. --metric 'loss=loss=([0-9.]+)' (repeatable)",
    )
    group.add_argument(
        "--metric-definitions",
        type=Path,
        metavar="FILE",
        help='a JSON list of metric definitions, e.g. [{"Name": "loss", "Regex": "loss=([0-9.]+)"}]',
    )


def plan_from_args(args: argparse.Namespace, job: LocalJob) -> LocalRunPlan:
    """Check the multi-host and metric options: the hosts the job runs on (one plain host without
    ``--hosts``), the metrics to collect, the failure wait.

    Raises :class:`ConfigError` before anything is written (including when this machine cannot give
    each host its own network identity: the message says what is needed).
    """
    if not 1 <= args.hosts <= MAX_HOSTS:
        raise ConfigError(f"--hosts {args.hosts}: give a number of hosts from 1 to {MAX_HOSTS}.")
    if args.failure_wait < 0:
        raise ConfigError(f"--failure-wait {args.failure_wait:g}: give 0 or more seconds.")
    metrics = [parse_metric_option(item) for item in args.metric]
    if args.metric_definitions is not None:
        metrics += load_metric_definitions(args.metric_definitions)
    check_unique(metrics)
    host_set: HostSet
    if args.hosts == 1:
        host_set = PlainHost(job.job_dir)
    else:
        host_set = open_hosts(args.hosts, job.job_dir, args.host_network)
    return LocalRunPlan(host_set, tuple(metrics), args.failure_wait)


def run_local(job: LocalJob, plan: LocalRunPlan, *, keep: bool = True, output_tar: bool = False) -> int:
    """Run the planned job, print its summary (and metrics); return its exit code."""
    collector = MetricMatcher(plan.metrics) if plan.metrics else None
    on_line = (lambda line: collector.feed(line.host, line.text, line.timestamp)) if collector else None
    job.job_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run_job(job, plan.host_set, on_line=on_line, failure_wait=plan.failure_wait)
    except SmcError as error:  # e.g. a channel or the checkpoints could not be downloaded: nothing ran
        print(f"smc local: {redact(error.message)}", file=sys.stderr)
        return error.exit_code
    if output_tar:
        result = dataclasses.replace(result, tarballs=make_output_tarballs(plan.host_set.hosts[0].job_dir))
    if not keep:
        for host in plan.host_set.hosts:
            clean_job_dir(host.job_dir)
    # The summary holds the failure file's reason and the paths: secrets redacted as in train's log.
    remember_secrets(job.hyperparameters)
    remember_secrets(job.env)
    remember_secrets(os.environ)
    print(redact(summary(job, result)), flush=True)
    if collector is not None:
        collector.close()
        print(report_metrics(collector, job.job_dir), flush=True)
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``smc local``: returns the job's exit code (2 for bad arguments)."""
    args = build_parser().parse_args(argv)
    try:
        job = job_from_args(args)
        validate(job)
        plan = plan_from_args(args, job)
    except SmcError as error:
        print(f"smc local: {redact(error.message)}", file=sys.stderr)
        return error.exit_code
    return run_local(job, plan, keep=args.keep, output_tar=args.output_tar)
