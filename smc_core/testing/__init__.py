"""smc's test kit for plugin and adapter authors: an opt-in pytest plugin.

Enable it with ``pytest -p smc_core.testing`` (or ``addopts = "-p smc_core.testing"`` in your
``pyproject.toml``, or ``pytest_plugins = ["smc_core.testing"]`` in a root ``conftest.py``). Fixtures:

* ``smc_job``: a :class:`~smc_core.testing.JobRunner` that lays out a job (code, hyperparameters,
  channels, hosts), runs it through the real ``train`` console script with your adapter pinned, and
  returns a :class:`~smc_core.testing.JobOutcome` (``assert_success()``, ``failure``, ``logs``,
  ``exit_code``, ``model_dir``); ``smc_job.start(...)`` and ``smc_job.start_on_cluster(...)`` start
  ``train`` in the background as a :class:`~smc_core.testing.RunningJob`, to stop it with a signal as a
  platform does.
* ``smc_adapter``: the adapter ``smc_job`` pins as ``SMC_ADAPTER``; None (pin nothing) unless you
  override it in your ``conftest.py``.
* ``job_dir``: a factory that only writes a job directory (see :func:`make_job_dir`).
* ``netns_hosts``: N Linux network namespaces as the hosts of a cluster (:mod:`smc_core.testing.netns`);
  run a job on all of them with ``smc_job.on_cluster(cluster, ...)``; hold a launch style to hosts that
  die, fall silent or are stopped with :mod:`smc_core.testing.hostfaults`.
* ``s3_server``, ``fault_proxy``: moto's S3 server on 127.0.0.1 and a fault-injecting proxy in front
  of it (:mod:`smc_core.testing.s3`).
* ``plugin_manager``, ``register_plugin``: a fresh plugin manager with the defaults only, and a
  way to register a plugin object into it for one test (for hook-level unit tests).

And :func:`free_port`, a TCP port nobody listens on, for a job that listens on one (pass it through
your adapter's port setting: tests that run at the same time never collide). The kit registers the
``netns`` mark for multi-host tests.

This package imports nothing from smc's command line: it runs ``train`` as a platform does.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smc_core.host.plugins import PluginInfo, get_plugin_manager
from smc_core.testing.jobs import (
    JobOutcome,
    JobRunner,
    RunningJob,
    encode_hyperparameters,
    job_environ,
    make_job_dir,
    run_job,
    train_command,
)

__all__ = [
    "NETNS_MARK",
    "JobOutcome",
    "JobRunner",
    "RunningJob",
    "encode_hyperparameters",
    "free_port",
    "job_environ",
    "make_job_dir",
    "run_job",
    "train_command",
]


NETNS_MARK = "netns: needs root and Linux network namespaces (multi-host tests with netns_hosts)"
"""The ``netns`` mark, registered by the kit: ``@pytest.mark.netns`` on a test that uses ``netns_hosts``."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now: for a job's rendezvous port in a test.

    The port is free when this returns; pass it straight to the job (``env={"SMC_MYFW_MASTER_PORT":
    str(free_port())}``), so that tests running at the same time on one machine never collide on a
    fixed port. (Jobs on ``netns_hosts`` have network namespaces of their own: any port is free there.)
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``netns`` mark, so that ``@pytest.mark.netns`` needs no ini entry of yours."""
    config.addinivalue_line("markers", NETNS_MARK)


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ini option ``smc_adapter``: the default of the ``smc_adapter`` fixture."""
    parser.addini("smc_adapter", "the adapter smc_job pins as SMC_ADAPTER (its entry-point name)", default="")


@pytest.fixture
def smc_adapter(request: pytest.FixtureRequest) -> str | None:
    """The adapter ``smc_job`` pins as ``SMC_ADAPTER`` (its entry-point name, e.g. ``"pytorch"``).

    The ini option ``smc_adapter``, else None: pin nothing (smc then loads the only adapter
    installed, or none). An adapter's tests override it in their ``conftest.py``::

        @pytest.fixture
        def smc_adapter():
            return "myfw"
    """
    return str(request.config.getini("smc_adapter") or "") or None


@pytest.fixture
def smc_job(tmp_path: Path, smc_adapter: str | None) -> JobRunner:
    """Lay out and run real training jobs: ``smc_job(code=..., entry_point=..., hyperparameters=...)``.

    Returns a :class:`~smc_core.testing.JobRunner`; calling it returns a
    :class:`~smc_core.testing.JobOutcome`. Job directories go under ``tmp_path/smc-jobs``.
    """
    return JobRunner(tmp_path / "smc-jobs", adapter=smc_adapter)


@pytest.fixture
def job_dir(tmp_path: Path) -> Callable[..., Path]:
    """A factory: ``job_dir(hyperparameters={...}, code={"train.py": ...}, entry_point="train.py")``.

    Writes a job directory with :func:`make_job_dir` and returns its path (nothing runs).
    """
    counter = iter(range(1_000_000))

    def factory(**kwargs: Any) -> Path:
        return make_job_dir(tmp_path / f"job-{next(counter)}", **kwargs)

    return factory


@pytest.fixture
def plugin_manager() -> Any:
    """A fresh plugin manager with only the default plugins registered (no entry points loaded)."""
    return get_plugin_manager(environ={}, load_entrypoints=False)


@pytest.fixture
def register_plugin(plugin_manager: Any) -> Iterator[Callable[[object], object]]:
    """Register a plugin object (a module or a class instance) into ``plugin_manager`` for this test."""
    registered: list[object] = []

    def register(plugin: object) -> object:
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin)}"
        plugin_manager.register_plugin(plugin, PluginInfo(name, name, "given"))
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        if plugin_manager.is_registered(plugin):
            name = plugin_manager.get_name(plugin)
            plugin_manager.unregister(plugin)
            plugin_manager.plugin_info.pop(name, None)


from smc_core.testing.netns import netns_hosts  # noqa: E402,F401
from smc_core.testing.s3 import fault_proxy, s3_server  # noqa: E402,F401
