"""The hardware this process may use: CPUs (affinity and cgroup quota), NVIDIA GPUs, AWS Neuron cores,
and AWS's Elastic Fabric Adapter (EFA).

psutil is imported only where ``os.sched_getaffinity`` is missing; ``nvidia-smi`` and ``neuron-ls``
run only when they are on PATH. EFA is read from sysfs (:func:`detect_efa`); the reference toolkit's
instance lists are only the fallback when sysfs cannot be read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "EFA_NCCL_INSTANCES",
    "EFA_RDMA_INSTANCES",
    "Efa",
    "available_cpus",
    "available_gpus",
    "available_neurons",
    "cgroup_cpu_limit",
    "detect_efa",
]

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


# --- EFA ----------------------------------------------------------------------------------------

EFA_NCCL_INSTANCES = (
    "ml.g4dn.8xlarge",
    "ml.g4dn.12xlarge",
    "ml.g5.48xlarge",
    "ml.p3dn.24xlarge",
    "ml.p4d.24xlarge",
    "ml.p4de.24xlarge",
    "ml.p5.48xlarge",
    "ml.p5e.48xlarge",
    "ml.trn1.32xlarge",
    "ml.p6e-gb200.36xlarge",
)
"""The reference toolkit's ``SM_EFA_NCCL_INSTANCES`` (sagemaker-training 5.1.4): instance types it takes
to have EFA. Only a fallback here, for a host whose sysfs cannot be read: such lists go stale (p5e was
missing until 5.1, and jobs on it hung at 256+ ranks: aws/sagemaker-training-toolkit#240)."""

EFA_RDMA_INSTANCES = (
    "ml.p4d.24xlarge",
    "ml.p4de.24xlarge",
    "ml.p5.48xlarge",
    "ml.p5e.48xlarge",
    "ml.trn1.32xlarge",
    "ml.p6e-gb200.36xlarge",
)
"""The reference toolkit's ``SM_EFA_RDMA_INSTANCES`` (sagemaker-training 5.1.4): instance types whose EFA
does RDMA, for which it asks libfabric for the device's RDMA (``FI_EFA_USE_DEVICE_RDMA=1``)."""

EFA_DRIVER = "efa"
"""The kernel driver of an EFA device: ``<sys>/class/infiniband/<device>/device/driver`` links to it."""
NO_RDMA_READ_DEVICE_IDS = frozenset({"0xefa0"})
"""PCI device ids of EFA devices without RDMA read (the first generation): device RDMA is never asked
of them, whatever the instance type (libfabric would abort the job)."""


@dataclass(frozen=True)
class Efa:
    """What this host has of AWS's Elastic Fabric Adapter, and how that was told (:func:`detect_efa`)."""

    present: bool = False
    """The host has EFA: the launchers set ``FI_PROVIDER=efa`` (and ``NCCL_PROTO=simple``) for it."""
    rdma: bool = False
    """Ask libfabric for the device's RDMA (``FI_EFA_USE_DEVICE_RDMA=1``, ``RDMAV_FORK_SAFE=1``): the
    instance type is on the reference's RDMA list and no EFA device here is one without RDMA read.
    False leaves the choice to libfabric, which looks at the device itself."""
    devices: tuple[str, ...] = ()
    """The EFA devices found under ``<sys>/class/infiniband`` (``rdmap16s27`` ...)."""
    source: str = "sysfs"
    """``sysfs`` (read from this machine), or ``instance list`` (the reference's lists, a fallback used
    only when sysfs cannot be read)."""
    reason: str = ""
    """How it was decided, in words, for the log."""

    def describe(self) -> str:
        """One line for the log: what was found, and from where."""
        found = "EFA" if self.present else "no EFA"
        rdma = ", device RDMA" if self.rdma else ""
        return f"{found}{rdma} ({self.reason})"


def _efa_device_id(device_dir: Path) -> str:
    try:
        return (device_dir / "device").read_text().strip().lower()
    except OSError:
        return ""


def detect_efa(sys_root: Path | str = "/sys", instance_type: str = "") -> Efa:
    """Whether this host has EFA, read from sysfs: an entry of ``<sys_root>/class/infiniband/`` whose
    ``device/driver`` links to the ``efa`` driver is an EFA device.

    Device RDMA (:attr:`Efa.rdma`) as the reference decides it (``instance_type`` on
    :data:`EFA_RDMA_INSTANCES`), except where a device tells it has no RDMA read
    (:data:`NO_RDMA_READ_DEVICE_IDS`). When ``<sys_root>/class/infiniband`` cannot be read (no such
    directory, no permission), the reference's lists decide (:data:`EFA_NCCL_INSTANCES`), and
    :attr:`Efa.source` says that this was the fallback.

    :param sys_root: where sysfs is mounted (the setting ``SMC_SYS_ROOT``; a fake tree in tests).
    :param instance_type: ``current_instance_type`` from ``resourceconfig.json`` (``ml.p4d.24xlarge``).
    """
    root = Path(sys_root) / "class" / "infiniband"
    listed_rdma = instance_type in EFA_RDMA_INSTANCES
    try:
        entries = sorted(os.listdir(root))
    except OSError as exc:
        present = instance_type in EFA_NCCL_INSTANCES
        on = "on" if present else "not on"
        return Efa(
            present=present,
            rdma=present and listed_rdma,
            source="instance list",
            reason=f"{root} cannot be read ({exc.strerror or exc}); by the fallback, the reference "
            f"toolkit's instance lists, {instance_type or 'this instance type'!s} is {on} its EFA list"
            + (" and on its RDMA list" if present and listed_rdma else ""),
        )
    devices: list[str] = []
    without_rdma: list[str] = []
    for name in entries:
        driver = root / name / "device" / "driver"
        if not os.path.lexists(driver) or os.path.basename(os.path.realpath(driver)) != EFA_DRIVER:
            continue
        devices.append(name)
        if _efa_device_id(root / name / "device") in NO_RDMA_READ_DEVICE_IDS:
            without_rdma.append(name)
    if not devices:
        return Efa(reason=f"no device under {root} uses the {EFA_DRIVER} driver")
    rdma = listed_rdma and not without_rdma
    if without_rdma:
        why = f"{', '.join(without_rdma)} has no RDMA read: device RDMA is left off"
    elif listed_rdma:
        why = f"{instance_type} is on the reference toolkit's RDMA list"
    else:
        why = "device RDMA is left to libfabric, which asks the device"
    return Efa(
        present=True,
        rdma=rdma,
        devices=tuple(devices),
        reason=f"{len(devices)} device(s) under {root} use the {EFA_DRIVER} driver: "
        f"{', '.join(devices)}; {why}",
    )
