"""The hardware this process may use: CPUs (affinity and cgroup quota), NVIDIA GPUs, AWS Neuron cores.

psutil is imported only where ``os.sched_getaffinity`` is missing; ``nvidia-smi`` and ``neuron-ls``
run only when they are on PATH.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psutil

__all__ = ["available_cpus", "available_gpus", "available_neurons", "cgroup_cpu_limit"]

logger = logging.getLogger("smc")


def cgroup_cpu_limit(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPU limit of this process's cgroup (``quota / period``), or None when unlimited.

    Reads cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in this process's
    cgroup and its ancestors, and returns the smallest limit found.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    files: tuple[str, ...]
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            mount, files = root, ("cpu.max",)
        elif "cpu" in controllers.split(","):
            candidates = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
            mount = next((c for c in candidates if c.is_dir()), candidates[0])
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        directory = mount / rel.lstrip("/")
        if not directory.is_dir():
            directory = mount  # inside a container the mount is the container's own cgroup
        while True:
            limit = _read_cpu_limit(directory, files)
            if limit is not None:
                limits.append(limit)
            if directory == mount or mount not in directory.parents:
                break
            directory = directory.parent
    return min(limits) if limits else None


def _read_cpu_limit(directory: Path, files: tuple[str, ...]) -> float | None:
    try:
        if len(files) == 1:
            quota, _, period = (directory / files[0]).read_text().strip().partition(" ")
        else:
            quota = (directory / files[0]).read_text().strip()
            period = (directory / files[1]).read_text().strip()
        if quota in ("max", "-1") or not period:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """The CPUs this process may use: its CPU affinity, capped by the cgroup quota (rounded up), at least 1.

    The affinity comes from ``os.sched_getaffinity`` where the OS has it (the same system call psutil
    makes on Linux, without psutil's import time), else from ``psutil.Process().cpu_affinity()``, else
    the machine's CPU count.
    """
    count: int | None = None
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:
        try:
            count = len(psutil.Process().cpu_affinity() or [])
        except (ImportError, AttributeError, OSError):
            count = None
    count = count or os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)


def _command_lines(name: str, args: list[str], environ: Mapping[str, str] | None) -> str | None:
    """The output of ``name args`` when ``name`` is on PATH; None when absent or failing."""
    environ = os.environ if environ is None else environ
    executable = shutil.which(name, path=environ.get("PATH", os.defpath))
    if executable is None:
        return None

    try:
        completed = subprocess.run(
            [executable, *args], capture_output=True, text=True, timeout=30, env=dict(environ), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("%s %s failed (%s): counting none.", name, " ".join(args), exc)
        return None
    if completed.returncode != 0:
        logger.info("%s %s exited %d: counting none.", name, " ".join(args), completed.returncode)
        return None
    return completed.stdout


def available_gpus(environ: Mapping[str, str] | None = None) -> int:
    """The NVIDIA GPUs: lines of ``nvidia-smi --list-gpus`` that begin ``GPU ``; 0 when it is absent.

    ``nvidia-smi`` is looked up on ``environ["PATH"]`` and only run when found.
    """
    output = _command_lines("nvidia-smi", ["--list-gpus"], environ)
    return sum(1 for line in (output or "").splitlines() if line.startswith("GPU "))


def available_neurons(environ: Mapping[str, str] | None = None, instance_type: str = "") -> int:
    """The AWS Neuron cores: the sum of ``nc_count`` in ``neuron-ls -j``; 0 when it is absent."""
    if "trn2.48xlarge" in instance_type:
        return 64  # as the reference toolkit: neuron-ls is not needed to know this instance
    output = _command_lines("neuron-ls", ["-j"], environ)
    if not output:
        return 0
    try:
        return sum(int(item.get("nc_count", 0)) for item in json.loads(output))
    except (ValueError, TypeError, AttributeError):
        logger.warning("neuron-ls -j printed something other than a JSON list: counting no Neuron cores.")
        return 0
