"""What ``smc local`` prints at the end: how the job ended, where its model and outputs are, and
the reason it failed; with several hosts, each host's status, duration and failure reason, and the
error of the host that failed first."""

from __future__ import annotations

from pathlib import Path

from smc_core.launch.signals import describe_exit_code, signal_of
from smc_core.local.job import LocalJob
from smc_core.local.run import LocalResult

__all__ = ["failure_reason", "summary"]


def failure_reason(failure: str, limit: int = 300) -> str:
    """A failure file's first line (``<ErrorType>: <message>``), cut at ``limit`` characters."""
    lines = [line.strip() for line in failure.strip().splitlines() if line.strip()]
    if not lines:
        return "no reason given"
    return lines[0] if len(lines[0]) <= limit else lines[0][: limit - 3] + "..."


def summary(job: LocalJob, result: LocalResult) -> str:
    """The lines printed after a local job: :func:`host_summary` for one host, else
    :func:`hosts_summary`; then the tarballs, when written."""
    text = hosts_summary(job, result) if len(result.hosts) > 1 else host_summary(job, result)
    return text + "".join(f"\n  tarball: {path}" for path in result.tarballs) + _failure(result)


def host_summary(job: LocalJob, result: LocalResult) -> str:
    """The lines printed after a job of one host."""
    status = "succeeded" if result.exit_code == 0 else f"failed (exit code {result.exit_code})"
    job_dir = result.hosts[0].job_dir if result.hosts else job.job_dir
    header = f"smc local: job {job.job_name} {status} in {result.duration:.1f} s"
    return "\n".join([header, f"  job dir: {job_dir}", *_artefacts(job_dir)])


def hosts_summary(job: LocalJob, result: LocalResult) -> str:
    """The lines printed after a job of several hosts."""
    if result.exit_code == 0:
        status = "succeeded"
    elif result.first_failure:
        status = f"failed: {result.first_failure} failed first ({describe_exit_code(result.exit_code)})"
    elif result.stopped_by:
        status = f"stopped by {result.stopped_by} (exit code {result.exit_code})"
    else:
        status = f"failed (exit code {result.exit_code})"
    lines = [f"smc local: job {job.job_name} {status} in {result.duration:.1f} s"]
    lines.append(f"  hosts ({len(result.hosts)}, {result.network}):")
    width = max((len(o.name) for o in result.hosts), default=6)
    for o in result.hosts:
        sig = signal_of(o.exit_code)
        state = "succeeded" if o.exit_code == 0 else f"exit code {o.exit_code}"
        state += f" ({sig.name})" if sig else ""
        row = f"    {o.name.ljust(width)}  {state.ljust(23)} {o.duration:7.1f} s"
        if o.failure:
            row += f"  {failure_reason(o.failure)}"
        lines.append(row)
    master = result.hosts[0].job_dir if result.hosts else job.job_dir
    lines.append(f"  job dir: {job.job_dir}")
    return "\n".join(lines + _artefacts(master))


def _artefacts(job_dir: Path) -> list[str]:
    """Where the (master's) model and outputs are."""
    model_dir = job_dir / "model"
    model_files = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    return [
        f"  model:   {model_dir} ({', '.join(model_files[:5]) or 'empty'}"
        f"{', ...' if len(model_files) > 5 else ''})",
        f"  outputs: {job_dir / 'output' / 'data'}",
    ]


def _failure(result: LocalResult) -> str:
    """The failure file of the host whose failure ended the job (of the only host, with one)."""
    if len(result.hosts) == 1:
        failed = result.hosts[0] if result.exit_code else None
    else:
        failed = next((o for o in result.hosts if o.name == result.first_failure), None)
    if failed is None or not failed.failure:
        return ""
    text = failed.failure.strip().replace("\n", "\n           ")[:1500]
    return f"\n  failure{'' if len(result.hosts) == 1 else f' ({failed.name})'}: {text}"
