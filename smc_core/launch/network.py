"""Network helpers every adapter reuses: waiting for peer hosts, network interfaces, ports.

Framework-free: nothing here imports torch or TensorFlow. Every wait is bounded and logged, and a
wait that runs out raises an :class:`~smc_core.errors.ClusterError` (exit code 6) naming what did not
answer and the environment variable that sets the bound.

* :func:`wait_for_hosts` — block until every host name resolves (``SMC_HOST_WAIT_TIMEOUT``).
* :func:`wait_for_port` — block until a TCP port on a host accepts connections.
* :func:`interface_exists`, :func:`interface_names` — the network interfaces of this host.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping

import psutil

from smc_core.base.log import logger
from smc_core.base.settings import HOST_WAIT_TIMEOUT
from smc_core.errors import ClusterError

__all__ = [
    "DEFAULT_HOST_WAIT_TIMEOUT",
    "interface_exists",
    "interface_names",
    "resolve_host",
    "route_interface",
    "wait_for_hosts",
    "wait_for_port",
]

DEFAULT_HOST_WAIT_TIMEOUT: float = HOST_WAIT_TIMEOUT.default
"""Seconds a wait lasts when the caller gives no bound (instances of a cluster can start minutes apart);
hooks pass the job's ``training_env.settings[HOST_WAIT_TIMEOUT]`` (``SMC_HOST_WAIT_TIMEOUT``)."""


def resolve_host(host: str) -> str | None:
    """The IPv4 address ``host`` resolves to now, or None when it does not resolve (yet)."""
    try:
        return socket.gethostbyname(host)
    except (OSError, UnicodeError):
        return None


def wait_for_hosts(
    hosts: Iterable[str],
    timeout: float | None = None,
    interval: float = 0.2,
    *,
    resolve: Callable[[str], str | None] = resolve_host,
) -> dict[str, str]:
    """Wait until every name in ``hosts`` resolves; return ``{host: address}``.

    Each round tries the names not resolved yet, then sleeps ``interval`` seconds (0.2 s: a host whose
    name starts resolving is found within a fifth of a second, at the cost of a lookup of the missing
    names, from /etc/hosts or the resolver's cache, five times a second). Progress is logged
    when the wait starts, about every 10 seconds while it lasts, and when it ends.

    :param hosts: the host names (``training_env.hosts``).
    :param timeout: seconds before giving up; None means :data:`DEFAULT_HOST_WAIT_TIMEOUT` (600).
        Hooks pass ``training_env.settings[HOST_WAIT_TIMEOUT]``, the job's ``SMC_HOST_WAIT_TIMEOUT``.
    :param interval: seconds between rounds.
    :param resolve: the resolver (``resolve_host``); returns None for a name that does not resolve.
    :raises ClusterError: when some names still do not resolve after ``timeout`` seconds; the message
        names them and the variable that sets the bound.

    Example::

        addresses = wait_for_hosts(training_env.hosts)   # {"algo-1": "10.0.0.1", "algo-2": ...}
    """
    bound = DEFAULT_HOST_WAIT_TIMEOUT if timeout is None else float(timeout)
    pending = list(dict.fromkeys(hosts))
    resolved: dict[str, str] = {}
    start = time.monotonic()
    last_log = start
    logged_wait = False
    while True:
        for host in list(pending):
            address = resolve(host)
            if address is not None:
                resolved[host] = address
                pending.remove(host)
        now = time.monotonic()
        if not pending:
            if logged_wait:
                logger.info("All hosts resolve after %.1f s: %s", now - start, _pairs(resolved))
            else:
                logger.debug("All hosts resolve: %s", _pairs(resolved))
            return resolved
        elapsed = now - start
        if elapsed >= bound:
            raise ClusterError(
                f"Hosts {', '.join(pending)} did not resolve within {bound:g} s "
                f"(resolved: {_pairs(resolved) or 'none'}). Check that every host of the job started and "
                f"that its name is in DNS or /etc/hosts; set {HOST_WAIT_TIMEOUT.name} (seconds) to wait "
                "longer."
            )
        if not logged_wait or now - last_log >= 10:
            logger.info(
                "Waiting for hosts to resolve: %s (%.0f s of %g s, %s)",
                ", ".join(pending),
                elapsed,
                bound,
                HOST_WAIT_TIMEOUT.name,
            )
            logged_wait, last_log = True, now
        time.sleep(max(0.0, min(interval, bound - elapsed)))


def wait_for_port(host: str, port: int, timeout: float | None = None, interval: float = 0.1) -> None:
    """Wait until ``host:port`` accepts a TCP connection (e.g. a peer's sshd or parameter server).

    :param timeout: seconds before giving up; None means :data:`DEFAULT_HOST_WAIT_TIMEOUT` (600).
    :param interval: seconds between attempts (a refused connection costs next to nothing, and a
        host that comes up starts its work that much later: 0.5 s here delayed MultiWorkerMirrored
        workers by up to 0.5 s, issue 28).
    :raises ClusterError: naming the host, the port and the last connection error after ``timeout``.
    """
    bound = DEFAULT_HOST_WAIT_TIMEOUT if timeout is None else float(timeout)
    start = time.monotonic()
    last_log = start
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, max(0.1, bound))):
                return
        except OSError as exc:
            error = exc
        now = time.monotonic()
        if now - start >= bound:
            raise ClusterError(
                f"{host}:{port} did not accept connections within {bound:g} s (last error: {error}). "
                f"Check that the service on {host} started; set {HOST_WAIT_TIMEOUT.name} (seconds) to wait "
                "longer."
            )
        if now - last_log >= 10:
            logger.info("Waiting for %s:%d (%.0f s of %g s)", host, port, now - start, bound)
            last_log = now
        time.sleep(interval)


def interface_names() -> list[str]:
    """The names of this host's network interfaces (``lo``, ``eth0`` ...), sorted."""
    try:
        return sorted(name for _, name in socket.if_nameindex())
    except OSError:
        return []


def interface_exists(name: str) -> bool:
    """True when this host has a network interface called ``name``."""
    return name in interface_names()


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
