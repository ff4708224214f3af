"""Where the hosts of ``smc local`` live: each its own host name, address and job dir.

Without ``--hosts``, one plain host (:class:`PlainHost`): this machine as it is. With ``--hosts N``, two
kinds of host network, chosen by ``--host-network`` (``auto`` picks the first that works here):

``netns`` (root)
    Every host is a Linux network namespace on a private bridge (:mod:`smc_core.local.netns`, the
    same rig the multi-host tests use): its own interface ``eth0``, address ``10.213.0.i``, hostname
    and ``/etc/hosts``. Nothing is added to the machine's own network.
``loopback`` (no root needed where unprivileged user namespaces are allowed)
    Every host runs in a user + mount + UTS namespace (``unshare --user --map-root-user``) where a
    private hosts file mapping ``algo-i`` to ``127.0.0.i`` is bind-mounted over ``/etc/hosts`` and the
    hostname is ``algo-i``. The hosts share this machine's network stack (interface ``lo``).

Each host set has ``hosts`` (:class:`LocalHost`), ``interface``, ``start()``, ``close()`` and
``command(host, argv)``, which wraps ``argv`` to run inside that host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from smc_core.errors import ConfigError
from smc_core.local.netns import NetnsCluster, netns_unavailable_reason

HOST_NETWORKS = ("auto", "netns", "loopback")


@dataclass(frozen=True)
class LocalHost:
    """One host of a local job: its name (``algo-i``), its address and its job directory."""

    name: str
    address: str
    job_dir: Path


class HostSet(Protocol):
    """What the runner (:func:`smc_core.local.run.run_job`) needs from a host network."""

    hosts: list[LocalHost]
    interface: str
    kind: str

    def start(self) -> None:
        """Create the hosts (namespaces, hosts files)."""

    def close(self) -> None:
        """Remove everything :meth:`start` created and end every process left in the hosts."""

    def command(self, host: LocalHost, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside ``host``."""


def host_names(count: int) -> list[str]:
    """``["algo-1", ..., "algo-<count>"]``, the names SageMaker gives a job's hosts."""
    return [f"algo-{i}" for i in range(1, count + 1)]


class NamespaceHosts:
    """Hosts as network namespaces on a private bridge (needs root and iproute2)."""

    kind = "netns"
    interface = "eth0"

    def __init__(self, count: int, base: Path) -> None:
        self._cluster = NetnsCluster(count, base, interface=self.interface)
        self.hosts = [LocalHost(h.name, h.address, h.job_dir) for h in self._cluster.hosts]

    def start(self) -> None:
        """Create the namespaces, the bridge and each namespace's ``/etc/hosts``."""
        self._cluster.start()

    def close(self) -> None:
        """Kill what still runs in the namespaces, delete them and their ``/etc/netns`` entries."""
        self._cluster.close()

    def command(self, host: LocalHost, argv: Sequence[str]) -> list[str]:
        """``ip netns exec <ns> unshare --uts ...``: the host's network, hosts file and hostname."""
        index = self.hosts.index(host)
        return self._cluster.hosts[index].command(argv)


class PlainHost:
    """One host, this machine as it is: ``smc local`` without ``--hosts`` (a one-host set)."""

    kind = "plain"
    interface = "lo"

    def __init__(self, job_dir: Path) -> None:
        self.hosts = [LocalHost("algo-1", "127.0.0.1", job_dir)]

    def start(self) -> None:
        """Nothing to create."""

    def close(self) -> None:
        """Nothing to remove."""

    def command(self, host: LocalHost, argv: Sequence[str]) -> list[str]:
        """``argv`` as it is."""
        return list(argv)


# Inside the new namespaces: $0 is the host name, $1 the private hosts file; then the command.
_UNSHARE = ("unshare", "--user", "--map-root-user", "--mount", "--uts")
_LOOPBACK_SCRIPT = 'mount --bind "$1" /etc/hosts && hostname "$0" && shift && exec "$@"'


class LoopbackHosts:
    """Hosts as loopback addresses ``127.0.0.i``, each in a user namespace with its own ``/etc/hosts``."""

    kind = "loopback"
    interface = "lo"

    def __init__(self, count: int, base: Path) -> None:
        self.hosts = [
            LocalHost(name, f"127.0.0.{i}", base / name) for i, name in enumerate(host_names(count), 1)
        ]
        self._hosts_file: Path | None = None

    def hosts_text(self) -> str:
        """The private ``/etc/hosts`` every host sees."""
        lines = ["127.0.0.1 localhost", *(f"{h.address} {h.name}" for h in self.hosts)]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Write the private hosts file (outside the job dir: the user's code never sees it there)."""
        fd, path = tempfile.mkstemp(prefix="smc-local-hosts-")
        with os.fdopen(fd, "w") as f:
            f.write(self.hosts_text())
        self._hosts_file = Path(path)
        for host in self.hosts:
            host.job_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Remove the hosts file (the namespaces end with their last process)."""
        if self._hosts_file is not None:
            self._hosts_file.unlink(missing_ok=True)
            self._hosts_file = None

    def command(self, host: LocalHost, argv: Sequence[str]) -> list[str]:
        """``unshare --user --map-root-user --mount --uts sh -c ...``: own hosts file and hostname."""
        if self._hosts_file is None:
            raise RuntimeError("LoopbackHosts.start() was not called")
        return [
            *_UNSHARE,
            "sh",
            "-c",
            _LOOPBACK_SCRIPT,
            host.name,
            str(self._hosts_file),
            *argv,
        ]


def loopback_unavailable_reason() -> str | None:
    """Why :class:`LoopbackHosts` cannot run here, or None when it can (probes a real namespace)."""
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed"
    with tempfile.NamedTemporaryFile("w", prefix="smc-probe-hosts-") as probe:
        probe.write("127.0.0.2 algo-probe\n")
        probe.flush()
        completed = subprocess.run(
            [*_UNSHARE, "sh", "-c", _LOOPBACK_SCRIPT, "algo-probe", probe.name, "true"],
            capture_output=True,
            text=True,
            check=False,
        )
    if completed.returncode != 0:
        return (
            "unprivileged user namespaces are not allowed here "
            f"({completed.stderr.strip() or 'exit code ' + str(completed.returncode)})"
        )
    return None


def open_hosts(count: int, base: Path, network: str = "auto") -> HostSet:
    """A host set of ``count`` hosts with job dirs ``base/algo-i`` (not started yet).

    ``network`` is ``netns``, ``loopback`` or ``auto`` (netns when possible, else loopback). Raises
    :class:`ConfigError` saying what is needed when the chosen kind cannot run on this machine.
    """
    if network not in HOST_NETWORKS:
        raise ConfigError(f"--host-network {network}: expected one of {', '.join(HOST_NETWORKS)}.")
    netns_reason = netns_unavailable_reason() if network in ("auto", "netns") else None
    if network == "netns" or (network == "auto" and netns_reason is None):
        if netns_reason:
            raise ConfigError(f"--host-network netns: {netns_reason}.")
        return NamespaceHosts(count, base)
    loopback_reason = loopback_unavailable_reason()
    if loopback_reason is None:
        return LoopbackHosts(count, base)
    raise ConfigError(
        f"--hosts {count} needs a private network identity per host, and this machine offers none: "
        f"{netns_reason or 'network namespaces were not asked for'}; and for loopback hosts, "
        f"{loopback_reason}. Run smc local as root (network namespaces), or install util-linux "
        "(unshare) and allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
        "or on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0), or run with --hosts 1."
    )


def processes_with_environ(text: str) -> list[int]:
    """Pids of this user's processes (not this one) with ``text`` in one of their environment entries."""
    needle = text.encode()
    found = []
    for pid in psutil.pids():
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if any(needle in entry for entry in f.read().split(b"\0")):
                    found.append(pid)
        except OSError:
            continue
    return found
