"""The multi-host rig itself: hosts resolve each other, have their own names, and talk over TCP."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smc_core.testing.netns import NetnsCluster, namespaces, netns_unavailable_reason

UNAVAILABLE = netns_unavailable_reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")]

PY = sys.executable

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7777)); s.listen(); s.settimeout(30)
c, addr = s.accept(); print("from", addr[0], c.recv(64).decode()); c.sendall(socket.gethostname().encode())
"""

CLIENT = """
import socket, time
for _ in range(100):
    try:
        c = socket.create_connection(("algo-1", 7777), timeout=2); break
    except OSError:
        time.sleep(0.1)
c.sendall(socket.gethostname().encode()); print("server is", c.recv(64).decode())
"""


def test_hosts_resolve_each_other_and_connect(netns_hosts):
    cluster = netns_hosts(2, interface="net0")
    one, two = cluster.hosts
    assert one.run(["hostname"]).stdout.strip() == "algo-1"
    assert (
        two.run([PY, "-c", "import socket; print(socket.gethostbyname('algo-1'))"]).stdout.strip()
        == one.address
    )
    assert "net0" in two.run(["ip", "-br", "addr"]).stdout

    runs = cluster.run_all(lambda host: [PY, "-c", SERVER if host is one else CLIENT], timeout=60)
    assert [r.returncode for r in runs] == [0, 0], runs
    assert f"from {two.address} algo-2" in runs[0].output
    assert "server is algo-1" in runs[1].output


def test_teardown_removes_namespaces_and_processes(tmp_path):
    cluster = NetnsCluster(2, tmp_path).start()
    names = [h.namespace for h in cluster.hosts] + [cluster.hub]
    sleeper = cluster.popen(cluster.hosts[0], ["sleep", "600"])
    assert set(names) <= set(namespaces())
    cluster.close()
    assert sleeper.poll() is not None
    assert not set(names) & set(namespaces())
    for ns in names:
        assert subprocess.run(["test", "-e", f"/etc/netns/{ns}"]).returncode == 1


def test_start_failure_tears_down(tmp_path):
    cluster = NetnsCluster(2, tmp_path, interface="x" * 40)  # an interface name Linux refuses
    with pytest.raises(RuntimeError, match="failed"):
        cluster.start()
    assert not any(ns.startswith(cluster.hub.rsplit("-", 1)[0]) for ns in namespaces())
