"""The multi-host rig for tests: the ``netns_hosts`` fixture over :mod:`smc_core.local.netns`.

The namespaces, bridge and hosts files are built by :class:`smc_core.local.netns.NetnsCluster`
(``smc local --hosts N`` uses the same code); the names are re-exported here for tests.

As a fixture (``pytest -p smc_core.testing``; mark the test ``@pytest.mark.netns``)::

    @pytest.mark.netns
    def test_two_hosts(netns_hosts):
        cluster = netns_hosts(2)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smc_core.local.hosts import loopback_unavailable_reason, processes_with_environ
from smc_core.local.netns import (
    NETNS_ETC,
    HostRun,
    NetnsCluster,
    NetnsHost,
    netns_unavailable_reason,
    remove_stale_namespaces,
)
from smc_core.local.netns import _namespaces as namespaces

__all__ = [
    "NETNS_ETC",
    "HostRun",
    "NetnsCluster",
    "NetnsHost",
    "loopback_unavailable_reason",
    "namespaces",
    "netns_hosts",
    "netns_unavailable_reason",
    "processes_with_environ",
    "remove_stale_namespaces",
]


@pytest.fixture
def netns_hosts(tmp_path: Path) -> Iterator[Callable[..., NetnsCluster]]:
    """A factory: ``netns_hosts(2, interface="eth0")`` starts a :class:`NetnsCluster` for this test.

    Job directories are ``tmp_path/netns-<k>/algo-<i>``; everything is torn down after the test.
    Skips (with the reason) when the machine cannot create network namespaces.
    """
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    clusters: list[NetnsCluster] = []

    def factory(count: int = 2, **kwargs: Any) -> NetnsCluster:
        cluster = NetnsCluster(count, tmp_path / f"netns-{len(clusters)}", **kwargs)
        clusters.append(cluster)
        return cluster.start()

    try:
        yield factory
    finally:
        for cluster in clusters:
            cluster.close()
