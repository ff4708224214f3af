"""What ``smc local --hosts N`` prints at the end: each host's status, duration and failure reason,
where the master's model and outputs are, and the error of the host that failed first."""

from __future__ import annotations

from smc_core.cli.local import LocalJob
from smc_core.cli.local_hosts import HostsResult
from smc_core.launch.signals import describe_exit_code, signal_of


def failure_reason(failure: str, limit: int = 300) -> str:
    """A failure file's first line (``<ErrorType>: <message>``), cut at ``limit`` characters."""
    lines = [line.strip() for line in failure.strip().splitlines() if line.strip()]
    if not lines:
        return "no reason given"
    return lines[0] if len(lines[0]) <= limit else lines[0][: limit - 3] + "..."


def hosts_summary(job: LocalJob, result: HostsResult) -> str:
    """The lines printed after a multi-host local job."""
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
    model_dir = master / "model"
    model_files = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    lines += [
        f"  job dir: {job.job_dir}",
        f"  model:   {model_dir} ({', '.join(model_files[:5]) or 'empty'}"
        f"{', ...' if len(model_files) > 5 else ''})",
        f"  outputs: {master / 'output' / 'data'}",
    ]
    failed = next((o for o in result.hosts if o.name == result.first_failure), None)
    if failed and failed.failure:
        text = failed.failure.strip().replace("\n", "\n           ")[:1500]
        lines.append(f"  failure ({failed.name}): {text}")
    return "\n".join(lines)
