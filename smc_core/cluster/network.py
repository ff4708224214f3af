"""Network helpers every adapter reuses: waiting for peer hosts, network interfaces, ports.

Framework-free: nothing here imports torch or TensorFlow. Every wait is bounded by the job's
``SMC_HOST_WAIT_TIMEOUT`` (the supervision policy the runner applies:
:class:`~smc_core.base.supervision.Supervision`), logged while it lasts, and raises a
:class:`~smc_core.errors.ClusterError` (exit code 6) naming what did not answer and the variable that
sets the bound when it runs out (:func:`~smc_core.cluster.waits.wait_until`).

* :func:`wait_for_hosts` — block until every host name resolves; given the job's
  :class:`~smc_core.job.environment.TrainingEnv`, a one-host job's own name answers at once.
* :func:`rendezvous_host` — the name the job's processes dial to reach the master host.
* :func:`wait_for_port` — block until a TCP port on a host accepts connections.
* :func:`interface_exists`, :func:`interface_names`, :func:`interface_address` — this host's network
  interfaces.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping

import psutil

from smc_core.base.log import logger
from smc_core.base.settings import HOST_WAIT_TIMEOUT
from smc_core.base.supervision import Supervision, applied_supervision
from smc_core.cluster.waits import wait_until
from smc_core.job.environment import TrainingEnv

__all__ = [
    "LOOPBACK",
    "interface_address",
    "interface_exists",
    "interface_names",
    "rendezvous_host",
    "resolve_host",
    "route_interface",
    "wait_for_hosts",
    "wait_for_port",
]


def resolve_host(host: str) -> str | None:
    """The IPv4 address ``host`` resolves to now, or None when it does not resolve (yet)."""
    try:
        return socket.gethostbyname(host)
    except (OSError, UnicodeError):
        return None


LOOPBACK = "127.0.0.1"
"""Where a one-host job meets itself when its host name does not resolve."""


def _own_name_unresolved(
    training_env: TrainingEnv, resolve: Callable[[str], str | None], hosts: Iterable[str] | None = None
) -> bool:
    """Whether ``hosts`` (default: the job's) are this host alone, by a name (``algo-1``) that does not
    resolve here: a laptop, ``smc local``, the test kit. Every process of such a job runs on this
    machine, so the name means this machine."""
    alone = tuple(training_env.hosts if hosts is None else hosts) == (training_env.current_host,)
    return alone and resolve(training_env.current_host) is None


def rendezvous_host(training_env: TrainingEnv, *, resolve: Callable[[str], str | None] = resolve_host) -> str:
    """The name the job's processes dial to reach the master host (rank 0, a tracker, a coordinator).

    ``training_env.master_hostname`` (``algo-1``), as the contract says; where the job's distribution
    hosts are this host alone and its name does not resolve here (a laptop, ``smc local``, the test
    kit), :data:`LOOPBACK` instead, so that no adapter has to special-case it. Call
    :func:`wait_for_hosts` first in a multi-host job.

    Example::

        return {"MYFW_MASTER_ADDR": rendezvous_host(training_env), "MYFW_MASTER_PORT": "29500"}
    """
    if _own_name_unresolved(training_env, resolve, training_env.distribution_hosts or training_env.hosts):
        logger.info(
            "%s does not resolve here; this one-host job meets on %s.", training_env.current_host, LOOPBACK
        )
        return LOOPBACK
    return training_env.master_hostname


def wait_for_hosts(
    hosts: TrainingEnv | Iterable[str],
    *,
    supervision: Supervision | None = None,
    interval: float = 0.2,
    resolve: Callable[[str], str | None] = resolve_host,
) -> dict[str, str]:
    """Wait until every host resolves; return ``{host: address}``.

    Pass the job's :class:`~smc_core.job.environment.TrainingEnv` (``wait_for_hosts(training_env)``):
    then every host of the job is waited for, as long as the job's ``SMC_HOST_WAIT_TIMEOUT`` allows, and
    this host knows itself: in a one-host job whose name does not resolve here (a laptop, ``smc local``,
    the test kit) the name answers at once with :data:`LOOPBACK`, where a bare list of names would wait
    in vain. A list of names (``[training_env.master_hostname]``) waits for those names only.

    Each round tries the names not resolved yet, then sleeps ``interval`` seconds (0.2 s: a host whose
    name starts resolving is found within a fifth of a second, at the cost of a lookup of the missing
    names, from /etc/hosts or the resolver's cache, five times a second). Progress is logged about
    every 10 seconds while it lasts, and when it ends.

    :param hosts: the job's environment, or the host names to wait for.
    :param supervision: the policy whose ``host_wait_timeout`` bounds the wait; default the job's
        (``SMC_HOST_WAIT_TIMEOUT``, 600 s unless set): ``training_env.supervision`` when ``hosts`` is
        the job's environment, else the policy the runner applies. Hooks pass nothing.
    :param interval: seconds between rounds.
    :param resolve: the resolver (``resolve_host``); returns None for a name that does not resolve.
    :raises ClusterError: when some names still do not resolve when the bound runs out; the message
        names them and the variable that sets the bound.

    Example::

        addresses = wait_for_hosts(training_env)   # {"algo-1": "10.0.0.1", "algo-2": ...}
    """
    if isinstance(hosts, TrainingEnv):
        training_env = hosts
        supervision = training_env.supervision if supervision is None else supervision
        if _own_name_unresolved(training_env, resolve):
            logger.debug("%s is this host (a one-host job): %s", training_env.current_host, LOOPBACK)
            return {training_env.current_host: LOOPBACK}
        hosts = training_env.hosts
    bound = (applied_supervision() if supervision is None else supervision).host_wait_timeout
    pending = list(dict.fromkeys(hosts))
    resolved: dict[str, str] = {}
    rounds = []
    start = time.monotonic()

    def all_resolved() -> bool:
        rounds.append(1)
        for host in list(pending):
            address = resolve(host)
            if address is not None:
                resolved[host] = address
                pending.remove(host)
        return not pending

    wait_until(
        all_resolved,
        timeout=bound,
        waiting_for=lambda: f"hosts to resolve: {', '.join(pending)}",
        setting=HOST_WAIT_TIMEOUT.name,
        interval=interval,
        first_log=0.0,  # a host that does not resolve at once is worth a line
        error=lambda _: (
            f"Hosts {', '.join(pending)} did not resolve within {bound:g} s "
            f"(resolved: {_pairs(resolved) or 'none'}). Check that every host of the job started and "
            f"that its name is in DNS or /etc/hosts; set {HOST_WAIT_TIMEOUT.name} (seconds) to wait "
            "longer."
        ),
    )
    if len(rounds) > 1:
        logger.info("All hosts resolve after %.1f s: %s", time.monotonic() - start, _pairs(resolved))
    else:
        logger.debug("All hosts resolve: %s", _pairs(resolved))
    return resolved


def wait_for_port(
    host: str, port: int, *, supervision: Supervision | None = None, interval: float = 0.1
) -> None:
    """Wait until ``host:port`` accepts a TCP connection (e.g. a peer's sshd or parameter server).

    :param supervision: the policy whose ``host_wait_timeout`` bounds the wait; default the job's.
    :param interval: seconds between attempts (a refused connection costs next to nothing, and a host
        that comes up starts its work that much later).
    :raises ClusterError: naming the host, the port and the last connection error when the bound runs
        out.
    """
    bound = (applied_supervision() if supervision is None else supervision).host_wait_timeout
    errors: list[OSError] = []

    def accepts() -> bool:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, max(0.1, bound))):
                return True
        except OSError as exc:
            errors[:] = [exc]
            return False

    wait_until(
        accepts,
        timeout=bound,
        waiting_for=f"{host}:{port} to accept connections",
        setting=HOST_WAIT_TIMEOUT.name,
        interval=interval,
        error=lambda _: (
            f"{host}:{port} did not accept connections within {bound:g} s (last error: "
            f"{errors[0] if errors else 'none'}). Check that the service on {host} started; set "
            f"{HOST_WAIT_TIMEOUT.name} (seconds) to wait longer."
        ),
    )


def interface_names() -> list[str]:
    """The names of this host's network interfaces (``lo``, ``eth0`` ...), sorted."""
    try:
        return sorted(name for _, name in socket.if_nameindex())
    except OSError:
        return []


def interface_exists(name: str) -> bool:
    """True when this host has a network interface called ``name``."""
    return name in interface_names()


def interface_address(name: str) -> str | None:
    """The first IPv4 address of the interface ``name`` on this host, or None."""
    for entry in psutil.net_if_addrs().get(name, []):
        if entry.family == socket.AF_INET:
            return str(entry.address)
    return None


def route_interface(host: str) -> str | None:
    """The interface this host would use to reach ``host`` (the route to it), or None when ``host``
    does not resolve or no interface holds the source address of that route.

    No packet is sent: a UDP socket is connected, which only picks the route.
    """
    address = resolve_host(host)
    if address is None:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((address, 9))
            source = probe.getsockname()[0]
    except OSError:
        return None

    for name, addresses in sorted(psutil.net_if_addrs().items()):
        if any(entry.address == source for entry in addresses):
            return name
    return None


def _pairs(mapping: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items())
