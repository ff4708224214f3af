"""N Linux network namespaces standing in for the hosts of a cluster (``smc local --hosts N``, tests).

Every host is a network namespace with one interface (default ``eth0``) on a private /24 that exists
only inside these namespaces: the interfaces are veth pairs whose other ends sit on a bridge in a hub
namespace of their own, so nothing is added to the machine's own network. Each host gets
``/etc/netns/<ns>/hosts`` mapping ``algo-1 .. algo-N`` (``ip netns exec`` bind-mounts it over
``/etc/hosts``), its own hostname through a UTS namespace (``unshare --uts``), and its own job
directory. Commands run in a host as real processes; everything is torn down afterwards, on failure
too (processes killed, namespaces deleted, ``/etc/netns`` entries removed).

Needs root and iproute2 (``ip netns``): :func:`netns_unavailable_reason` says why not otherwise.
The pytest fixture ``netns_hosts`` lives in :mod:`smc_core.testing.netns`.

Plain use::

    with NetnsCluster(2, tmp_path) as cluster:
        for host in cluster.hosts:
            make_job_dir(host.job_dir, hosts=cluster.host_names, current_host=host.name,
                         resource_config=host.resource_config(cluster.host_names))
        runs = cluster.run_all(lambda host: [".venv/bin/train"], env_for=lambda host: {...}, timeout=120)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smc_core.launch.leftovers import own_session_leader

__all__ = [
    "HostRun",
    "NetnsCluster",
    "NetnsHost",
    "kill_group",
    "netns_unavailable_reason",
    "remove_stale_namespaces",
]

NETNS_PREFIX = "smcns"
NETNS_ETC = Path("/etc/netns")
_counter = itertools.count()


def netns_unavailable_reason() -> str | None:
    """Why the rig cannot run here (not root, no ``ip`` or ``unshare``), or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (run as root, e.g. in CI or a container)"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's `ip netns` (apt-get install iproute2)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns list` failed: {probe.stderr.strip() or probe.returncode}"
    return None


def _ip(*args: str) -> None:
    completed = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {completed.stderr.strip()}")


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> None:
    """Delete namespaces this rig left behind in processes that no longer run (after a crash)."""
    for ns in _namespaces():
        parts = ns.split("-")
        if (
            len(parts) >= 3
            and parts[0] == NETNS_PREFIX
            and parts[1].isdigit()
            and not _pid_alive(int(parts[1]))
        ):
            _delete_namespace(ns)


def _delete_namespace(ns: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
    for pid in pids.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)


@dataclass
class HostRun:
    """How a command ended on one host: its exit code (None if it was killed at the timeout) and output."""

    host: str
    returncode: int | None
    output: str


@dataclass
class NetnsHost:
    """One host of the rig: a network namespace with a name, an address, an interface and a job dir."""

    name: str
    namespace: str
    address: str
    interface: str
    job_dir: Path

    def command(self, command: Sequence[str]) -> list[str]:
        """``command`` wrapped to run inside this host: its namespace, /etc/hosts and hostname."""
        script = 'hostname "$0" 2>/dev/null || printf %s "$0" > /proc/sys/kernel/hostname; exec "$@"'
        inner = ["sh", "-c", script, self.name, *command]
        # Without unshare there is no UTS namespace: the hostname stays the machine's; names still resolve.
        inner = ["unshare", "--uts", *inner] if shutil.which("unshare") else list(command)
        return ["ip", "netns", "exec", self.namespace, *inner]

    def popen(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        **kw: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``command`` inside this host, in its own process group (so teardown can end it)."""
        with own_session_leader() as register:
            process = subprocess.Popen(
                self.command(command),
                env=dict(os.environ if env is None else env),
                cwd=cwd,
                start_new_session=True,
                **kw,
            )
            register(process.pid)
        return process

    def run(
        self, command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside this host to completion; output captured as text."""
        return subprocess.run(
            self.command(command),
            env=dict(os.environ if env is None else env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def resource_config(self, hosts: Sequence[str]) -> dict[str, Any]:
        """The ``resourceconfig.json`` this host would get from the platform."""
        return {
            "current_host": self.name,
            "hosts": list(hosts),
            "network_interface_name": self.interface,
            "current_instance_type": "local",
        }


class NetnsCluster:
    """N hosts ``algo-1 .. algo-N`` (or ``names``) in network namespaces, joined by a bridge on a private /24.

    :param count: number of hosts.
    :param base: a directory for the hosts' job directories (``base/algo-1`` ...) and logs.
    :param interface: the interface name inside every host (what ``network_interface_name`` says).
    :param subnet: the first three octets of the private /24 (it exists only inside the namespaces).
    :param names: the hosts' names as another platform names them (``["llm-node-0-0.llm", ...]``,
        ``["llm-master-0", "llm-worker-0"]``), one per host; default ``algo-1 .. algo-N``.
    """

    def __init__(
        self,
        count: int,
        base: Path,
        *,
        interface: str = "eth0",
        subnet: str = "10.213.0",
        names: Sequence[str] | None = None,
    ) -> None:
        if not 1 <= count <= 200:
            raise ValueError(f"count is {count}: give between 1 and 200 hosts")
        if names is not None and len(names) != count:
            raise ValueError(f"names has {len(names)} names for {count} hosts: give one per host")
        host_names = list(names) if names is not None else [f"algo-{i}" for i in range(1, count + 1)]
        self.count = count
        self.base = Path(base)
        self.interface = interface
        self.subnet = subnet
        tag = f"{NETNS_PREFIX}-{os.getpid()}-{next(_counter)}"
        self.hub = f"{tag}-hub"
        self.hosts = [
            NetnsHost(
                name=name,
                namespace=f"{tag}-{i}",
                address=f"{subnet}.{i}",
                interface=interface,
                job_dir=self.base / name,
            )
            for i, name in enumerate(host_names, start=1)
        ]
        self._processes: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []

    @property
    def host_names(self) -> list[str]:
        """``["algo-1", "algo-2", ...]`` (or the ``names`` given)."""
        return [h.name for h in self.hosts]

    def hosts_file(self) -> str:
        """The ``/etc/hosts`` text every host sees."""
        lines = ["127.0.0.1 localhost", *(f"{h.address} {h.name}" for h in self.hosts)]
        return "\n".join(lines) + "\n"

    def start(self) -> NetnsCluster:
        """Create the namespaces, the bridge, the interfaces and the hosts files."""
        remove_stale_namespaces()
        try:
            self._create(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            for index, host in enumerate(self.hosts, start=1):
                self._create(host.namespace)
                port = f"p{index}"
                # Both ends are created inside namespaces: the machine's own network never sees them.
                _ip(
                    "-n",
                    self.hub,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    host.interface,
                    "netns",
                    host.namespace,
                )
                _ip("-n", self.hub, "link", "set", port, "master", "br0")
                _ip("-n", self.hub, "link", "set", port, "up")
                _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.interface)
                _ip("-n", host.namespace, "link", "set", host.interface, "up")
                _ip("-n", host.namespace, "link", "set", "lo", "up")
                etc = NETNS_ETC / host.namespace
                etc.mkdir(parents=True, exist_ok=True)
                (etc / "hosts").write_text(self.hosts_file())
                host.job_dir.mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.close()
            raise
        return self

    def _create(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._created.append(ns)

    def popen(self, host: NetnsHost, command: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``command`` in ``host`` (see :meth:`NetnsHost.popen`); ended at teardown if still running."""
        process = host.popen(command, **kw)
        self._processes.append(process)
        return process

    def run_all(
        self,
        command_for: Callable[[NetnsHost], Sequence[str]],
        *,
        env_for: Callable[[NetnsHost], Mapping[str, str]] | None = None,
        timeout: float = 120,
    ) -> list[HostRun]:
        """Run one command on every host at once and wait for all of them (at most ``timeout`` s).

        Output (stdout and stderr together) goes to ``base/<host>.log`` and comes back in each
        :class:`HostRun`. Hosts still running at the timeout are killed and get ``returncode`` None.
        """
        started = []
        for host in self.hosts:
            log_path = self.base / f"{host.name}.log"
            log = log_path.open("wb")
            env = dict(env_for(host)) if env_for else None
            process = self.popen(
                host, list(command_for(host)), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=host.job_dir
            )
            started.append((host, process, log, log_path))
        deadline = time.monotonic() + timeout
        runs = []
        for host, process, log, log_path in started:
            try:
                code: int | None = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_group(process)
                code = None
            log.close()
            runs.append(HostRun(host.name, code, log_path.read_text(errors="replace")))
        return runs

    # --- faults a test makes: a host that dies, or falls off the network -------------------------
    def processes(self, host: NetnsHost) -> list[int]:
        """The pids of every process running inside ``host`` (its network namespace) now."""
        out = subprocess.run(
            ["ip", "netns", "pids", host.namespace], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split() if pid.isdigit()]

    def kill_host(self, host: NetnsHost) -> int:
        """SIGKILL every process of ``host``, as when the instance dies; how many there were."""
        pids = self.processes(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def cut_network(self, host: NetnsHost) -> None:
        """Take ``host``'s interface down inside its namespace: its processes live on, and nothing reaches
        them or comes from them (no FIN, no RST: silence, as a network partition or a hung NIC)."""
        _ip("-n", host.namespace, "link", "set", host.interface, "down")

    def close(self) -> None:
        """End every process started here and delete the namespaces and hosts files (idempotent)."""
        for process in self._processes:
            kill_group(process)
        self._processes.clear()
        for ns in reversed(self._created):
            _delete_namespace(ns)
        self._created.clear()

    def __enter__(self) -> NetnsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def kill_group(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """End ``process``'s process group: SIGTERM, ``grace`` seconds, then SIGKILL."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
