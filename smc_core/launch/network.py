"""Network helpers every adapter reuses: waiting for peer hosts, network interfaces, ports.

Framework-free: nothing here imports torch or TensorFlow. Every wait is bounded and logged, and a
wait that runs out raises an :class:`~smc_core.errors.ClusterError` (exit code 6) naming what did not
answer and the environment variable that sets the bound.

* :func:`wait_for_hosts` — block until every host name resolves (``SMC_HOST_WAIT_TIMEOUT``); given the
  job's :class:`~smc_core.job.environment.TrainingEnv`, a one-host job's own name answers at once.
* :func:`rendezvous_host` — the name the job's processes dial to reach the master host.
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
from smc_core.job.environment import TrainingEnv

__all__ = [
    "DEFAULT_HOST_WAIT_TIMEOUT",
    "LOOPBACK",
    "interface_exists",
    "interface_names",
    "rendezvous_host",
    "resolve_host",
    "route_interface",
    "wait_for_hosts",
    "wait_for_port",
]

DEFAULT_HOST_WAIT_TIMEOUT: float = HOST_WAIT_TIMEOUT.default
"""Seconds a wait lasts when the caller gives no bound (instances of a cluster can start minutes apart);
hooks pass the job's ``training_env.settings[HOST_WAIT_TIMEOUT]`` (``SMC_HOST_WAIT_TIMEOUT``)."""


LOOPBACK = "127.0.0.1"
"""Where a one-host job meets itself when its host name does not resolve."""


def resolve_host(host: str) -> str | None:
    """The IPv4 address ``host`` resolves to now, or None when it does not resolve (yet)."""
    try:
        return socket.gethostbyname(host)
    except (OSError, UnicodeError):
        return None


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
    timeout: float | None = None,
    interval: float = 0.2,
    *,
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
    names, from /etc/hosts or the resolver's cache, five times a second). Progress is logged
    when the wait starts, about every 10 seconds while it lasts, and when it ends.

    :param hosts: the job's environment, or the host names to wait for.
    :param timeout: seconds before giving up; None means the job's ``SMC_HOST_WAIT_TIMEOUT`` when
        ``hosts`` is the job's environment, else :data:`DEFAULT_HOST_WAIT_TIMEOUT` (600).
    :param interval: seconds between rounds.
    :param resolve: the resolver (``resolve_host``); returns None for a name that does not resolve.
    :raises ClusterError: when some names still do not resolve after ``timeout`` seconds; the message
        names them and the variable that sets the bound.

    Example::

        addresses = wait_for_hosts(training_env)   # {"algo-1": "10.0.0.1", "algo-2": ...}
    """
    if isinstance(hosts, TrainingEnv):
        training_env = hosts
        if timeout is None:
            timeout = training_env.settings[HOST_WAIT_TIMEOUT]
        if _own_name_unresolved(training_env, resolve):
            logger.debug("%s is this host (a one-host job): %s", training_env.current_host, LOOPBACK)
            return {training_env.current_host: LOOPBACK}
        hosts = training_env.hosts
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
