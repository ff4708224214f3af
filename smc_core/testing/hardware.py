"""Fake accelerator hardware for tests on machines without it: the tools and sysfs entries smc reads.

Only what cannot exist on a test machine is faked, and only where smc looks: ``nvidia-smi --list-gpus``
(GPUs), ``neuron-ls -j`` (Neuron cores), and ``<sys>/class/infiniband/<device>/device/driver`` (EFA,
read from ``$SMC_SYS_ROOT``). Everything else in the job runs for real::

    from smc_core.testing.hardware import fake_efa_sysfs, fake_neuron_ls, path_with

    def test_trn1_job(smc_job, tmp_path):
        bin_dir = fake_neuron_ls(tmp_path / "bin", devices=1, cores_per_device=2)
        sys_root = fake_efa_sysfs(tmp_path / "sys", devices=2)
        outcome = smc_job(..., env={"PATH": path_with(bin_dir), "SMC_SYS_ROOT": str(sys_root)})
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["fake_efa_sysfs", "fake_neuron_ls", "fake_nvidia_smi", "fake_tool", "path_with"]


def fake_tool(bin_dir: Path, name: str, script: str) -> Path:
    """Write the executable ``/bin/sh`` script ``bin_dir/name`` with the body ``script``; ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return bin_dir


def path_with(*bin_dirs: Path, environ: dict[str, str] | None = None) -> str:
    """``PATH`` with ``bin_dirs`` first, then this process's (or ``environ``'s) ``PATH``."""
    rest = (os.environ if environ is None else environ).get("PATH", os.defpath)
    return os.pathsep.join([*(str(d) for d in bin_dirs), rest])


def fake_neuron_ls(bin_dir: Path, *, devices: int = 16, cores_per_device: int = 2) -> Path:
    """A ``neuron-ls`` whose ``-j`` lists ``devices`` Neuron devices of ``cores_per_device`` cores each
    (a trn1.32xlarge: 16 devices of 2 cores); return ``bin_dir``."""
    listing = [
        {
            "neuron_device": index,
            "bdf": f"{index:02x}:1e.0",
            "nc_count": cores_per_device,
            "memory_size": 34359738368,
        }
        for index in range(devices)
    ]
    body = f'[ "$1" = "-j" ] || exit 2\ncat <<\'EOF\'\n{json.dumps(listing)}\nEOF\n'
    return fake_tool(bin_dir, "neuron-ls", body)


def fake_nvidia_smi(bin_dir: Path, gpus: int, model: str = "NVIDIA H100 80GB HBM3") -> Path:
    """An ``nvidia-smi`` whose ``--list-gpus`` lists ``gpus`` GPUs; return ``bin_dir``."""
    lines = "".join(
        f'echo "GPU {i}: {model} (UUID: GPU-00000000-0000-0000-0000-{i:012d})"\n' for i in range(gpus)
    )
    return fake_tool(bin_dir, "nvidia-smi", f'[ "$1" = "--list-gpus" ] || exit 2\n{lines}')


def fake_efa_sysfs(
    root: Path,
    devices: int | Sequence[str] = 1,
    *,
    device_id: str = "0xefa1",
    others: Sequence[tuple[str, str]] = (("mlx5_0", "mlx5_core"),),
) -> Path:
    """A sysfs tree under ``root`` (give it as ``SMC_SYS_ROOT``) with EFA devices as the kernel lays them
    out: ``class/infiniband/<name>/device`` is the PCI device, whose ``driver`` links to
    ``bus/pci/drivers/efa`` and whose ``device`` file holds the PCI device id (``0xefa1``; ``0xefa0``
    for the first generation, without RDMA read).

    :param devices: how many EFA devices (named ``rdmap<N>s0``), or their names.
    :param others: (name, driver) of other RDMA devices to lay beside them (not EFA).
    :return: ``root``.
    """
    names = [f"rdmap{16 + i}s0" for i in range(devices)] if isinstance(devices, int) else list(devices)
    infiniband = root / "class" / "infiniband"
    infiniband.mkdir(parents=True, exist_ok=True)
    entries = [(name, "efa", device_id) for name in names]
    entries += [(name, driver, "0x1017") for name, driver in others]
    for index, (name, driver, pci_id) in enumerate(entries):
        drivers = root / "bus" / "pci" / "drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        pci = root / "devices" / "pci0000:00" / f"0000:00:{index + 16:02x}.0"
        pci.mkdir(parents=True, exist_ok=True)
        (pci / "device").write_text(pci_id + "\n")
        (pci / "driver").symlink_to(os.path.relpath(drivers, pci))
        (infiniband / name).mkdir()
        (infiniband / name / "device").symlink_to(os.path.relpath(pci, infiniband / name))
    return root
