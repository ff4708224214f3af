"""smc_core.cluster.network: bounded, logged waits for peer hosts and ports."""

from __future__ import annotations

import logging
import socket

import pytest

from smc_core import HOST_WAIT_TIMEOUT
from smc_core.base.settings import parse_settings
from smc_core.base.supervision import Supervision, apply_supervision
from smc_core.cluster.network import (
    interface_exists,
    interface_names,
    resolve_host,
    wait_for_hosts,
    wait_for_port,
)
from smc_core.errors import ConfigError, SmcError


def test_resolves_real_names():
    assert resolve_host("localhost") is not None
    assert resolve_host("no-such-host.invalid") is None
    assert wait_for_hosts(["localhost", "localhost"]) == {"localhost": resolve_host("localhost")}


def test_waits_until_a_late_host_resolves(caplog):
    calls = {"algo-2": 0}

    def resolve(host):
        if host == "algo-2":
            calls[host] += 1
            return "10.0.0.2" if calls[host] >= 3 else None
        return "10.0.0.1"

    with caplog.at_level(logging.INFO, logger="smc"):
        assert wait_for_hosts(["algo-1", "algo-2"], interval=0.01, resolve=resolve) == {
            "algo-1": "10.0.0.1",
            "algo-2": "10.0.0.2",
        }
    assert "Waiting for hosts to resolve: algo-2" in caplog.text
    assert "All hosts resolve" in caplog.text


def test_gives_up_naming_the_hosts_and_the_variable():
    with pytest.raises(SmcError) as info:
        wait_for_hosts(
            ["localhost", "algo-9.invalid"], supervision=Supervision(host_wait_timeout=0.3), interval=0.05
        )
    message = info.value.message
    assert "algo-9.invalid" in message and "0.3 s" in message and HOST_WAIT_TIMEOUT.name in message


def test_timeout_setting_is_parsed_from_the_given_environment():
    assert parse_settings({})[HOST_WAIT_TIMEOUT] == 600
    assert parse_settings({"SMC_HOST_WAIT_TIMEOUT": "2.5"})[HOST_WAIT_TIMEOUT] == 2.5
    for bad in ("soon", "0", "-3"):
        with pytest.raises(ConfigError, match=f"SMC_HOST_WAIT_TIMEOUT is '{bad}'"):
            parse_settings({"SMC_HOST_WAIT_TIMEOUT": bad})


def test_wait_for_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        wait_for_port("127.0.0.1", server.getsockname()[1])
        port = server.getsockname()[1]
    policy = Supervision(host_wait_timeout=0.3)  # the job's policy, as the runner applies it
    with apply_supervision(policy), pytest.raises(SmcError, match=f"127.0.0.1:{port} did not accept.*0.3 s"):
        wait_for_port("127.0.0.1", port, interval=0.05)


def test_interfaces():
    assert "lo" in interface_names()
    assert interface_exists("lo") and not interface_exists("no-such-if0")
