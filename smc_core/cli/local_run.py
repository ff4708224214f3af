"""``smc local`` beyond one plain host: the ``--hosts N`` and ``--metric`` options, and their run.

Without ``--hosts`` (or with ``--hosts 1``) and without ``--metric``, ``smc local`` runs as it always
did (:func:`smc_core.cli.local.run_job`); :func:`plan_from_args` returns None then.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from smc_core.cli.local import LocalJob, LocalResult, clean_job_dir, make_output_tarballs, summary
from smc_core.cli.local_hosts import DEFAULT_FAILURE_WAIT, run_hosts
from smc_core.cli.local_summary import hosts_summary
from smc_core.cli.metrics import (
    MetricCollector,
    MetricDefinition,
    check_unique,
    load_metric_definitions,
    parse_metric_option,
    report_metrics,
)
from smc_core.errors import ConfigError, SmcError
from smc_core.launch.hosts import HOST_NETWORKS, HostSet, PlainHost, open_hosts

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


def plan_from_args(args: argparse.Namespace, job: LocalJob) -> LocalRunPlan | None:
    """Check the multi-host and metric options; None when there are none to act on.

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
    if args.hosts == 1 and not metrics:
        return None
    host_set: HostSet
    if args.hosts == 1:
        host_set = PlainHost(job.job_dir)
    else:
        host_set = open_hosts(args.hosts, job.job_dir, args.host_network)
    return LocalRunPlan(host_set, tuple(metrics), args.failure_wait)


def run_local(job: LocalJob, plan: LocalRunPlan, *, keep: bool = True, output_tar: bool = False) -> int:
    """Run the planned job, print its summary (and metrics); return its exit code."""
    collector = MetricCollector(plan.metrics) if plan.metrics else None
    on_line = (lambda line: collector.feed(line.host, line.text, line.timestamp)) if collector else None
    job.job_dir.mkdir(parents=True, exist_ok=True)
    multi = len(plan.host_set.hosts) > 1
    try:
        result = run_hosts(
            job,
            plan.host_set,
            on_line=on_line,
            failure_wait=plan.failure_wait,
            prefix=multi,
        )
    except SmcError as error:  # e.g. the checkpoints could not be restored: nothing ran
        print(f"smc local: {error.message}", file=sys.stderr)
        return error.exit_code
    master = plan.host_set.hosts[0].job_dir
    tarballs = make_output_tarballs(master) if output_tar else ()
    if not keep:
        for host in plan.host_set.hosts:
            clean_job_dir(host.job_dir)
    if multi:
        text = hosts_summary(job, result)
        text += "".join(f"\n  tarball: {path}" for path in tarballs)
    else:
        outcome = result.hosts[0] if result.hosts else None
        failure = outcome.failure if outcome else "the host did not start"
        text = summary(job, LocalResult(result.exit_code, result.duration, master, failure, tuple(tarballs)))
    print(text, flush=True)
    if collector is not None:
        print(report_metrics(collector, job.job_dir), flush=True)
    sys.stdout.flush()
    return result.exit_code
