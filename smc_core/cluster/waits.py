"""One bounded wait with progress lines: every wait of a multi-host job goes through :func:`wait_until`.

A wait in a cluster is for something another machine does (a host name to resolve, a port to open, a
peer to join or report), and a machine can be minutes late or gone for good. So every such wait has
a bound, says in the log what it is waiting for while it lasts, and, when the bound runs out, raises
a :class:`~smc_core.errors.ClusterError` (exit code 6) that names what never came and the setting that
sets the bound::

    address = wait_until(
        lambda: resolve_host("algo-2"),
        timeout=supervision.host_wait_timeout,
        waiting_for="algo-2 to resolve",
        setting="SMC_HOST_WAIT_TIMEOUT",
    )
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from smc_core.base.log import logger
from smc_core.errors import ClusterError

__all__ = ["PROGRESS_EVERY", "wait_until"]

T = TypeVar("T")

PROGRESS_EVERY = 10.0
"""Seconds between two progress lines of a wait that lasts."""


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    waiting_for: str | Callable[[], str],
    setting: str | None = None,
    error: Callable[[float], str] | None = None,
    interval: float = 0.2,
    changed: threading.Condition | None = None,
    first_log: float = 1.0,
    raise_on_timeout: bool = True,
) -> T | None:
    """Call ``check`` until it returns a true value, and return that value.

    :param check: says whether the wait is over: a true value (returned), or a false one (keep waiting).
        It may raise to end the wait early (a peer that reported a failure).
    :param timeout: the bound, in seconds.
    :param waiting_for: what is awaited, for the progress lines (``"algo-2 to join"``); a callable is
        asked each time (the hosts still missing).
    :param setting: the variable that sets ``timeout``, named in the progress lines and the error.
    :param error: the error's message, given the seconds waited; default: what was awaited, the bound
        and the setting to raise it.
    :param interval: seconds between two checks (at most, with ``changed``).
    :param changed: a condition notified whenever what ``check`` reads changes: the wait sleeps on it
        (holding its lock while checking) instead of polling.
    :param first_log: seconds before the first progress line (a wait that ends at once says nothing);
        then one every :data:`PROGRESS_EVERY` seconds.
    :param raise_on_timeout: False returns None when the bound runs out instead of raising.
    :raises ClusterError: the bound ran out (unless ``raise_on_timeout`` is False).
    """
    start = time.monotonic()
    deadline = start + timeout
    next_log = start + first_log

    def what() -> str:
        return waiting_for() if callable(waiting_for) else waiting_for

    def attempt() -> T | None:
        value = check()
        return value if value else None

    while True:
        if changed is not None:
            with changed:
                value = attempt()
                if value is None:
                    changed.wait(max(0.0, min(interval, deadline - time.monotonic())))
        else:
            value = attempt()
        if value is not None:
            return value
        now = time.monotonic()
        if now >= deadline:
            if not raise_on_timeout:
                return None
            elapsed = now - start
            raise ClusterError(error(elapsed) if error else _timeout_message(what(), timeout, setting))
        if now >= next_log:
            bound = f"{timeout:g} s, {setting}" if setting else f"{timeout:g} s"
            logger.info("Waiting for %s (%.0f s of %s).", what(), now - start, bound)
            next_log = now + PROGRESS_EVERY
        if changed is None:
            time.sleep(max(0.0, min(interval, deadline - now)))


def _timeout_message(what: str, timeout: float, setting: str | None) -> str:
    text = f"Gave up waiting for {what} after {timeout:g} s."
    return f"{text} Set {setting} (seconds) to wait longer." if setting else text
