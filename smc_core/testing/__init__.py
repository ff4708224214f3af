"""Test helpers for smc and for plugin authors: an opt-in pytest plugin.

Enable it with ``pytest -p smc_core.testing`` or ``pytest_plugins = ["smc_core.testing"]``. Fixtures:

* ``job_dir``: a factory writing a job directory the way the SageMaker SDK does (see :func:`make_job_dir`).
* ``plugin_manager``: a fresh plugin manager with the defaults only (no entry points loaded).
* ``register_plugin``: registers a plugin object into ``plugin_manager`` for one test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from smc_core.cli.local import encode_hyperparameters

__all__ = ["encode_hyperparameters", "make_job_dir"]


def make_job_dir(
    base: Path,
    *,
    hyperparameters: Mapping[str, Any] | None = None,
    raw_hyperparameters: Mapping[str, str] | None = None,
    channels: Mapping[str, Mapping[str, str]] | Sequence[str] = (),
    hosts: Sequence[str] = ("algo-1",),
    current_host: str = "algo-1",
    resource_config: Mapping[str, Any] | None = None,
    code: Mapping[str, str] | None = None,
    entry_point: str | None = None,
) -> Path:
    """Write a job directory under ``base`` and return ``base``.

    :param hyperparameters: decoded values, JSON-encoded on the way in (as the SDK does).
    :param raw_hyperparameters: values written as they are (for other clients' bare strings).
    :param channels: channel names, or ``{name: inputdataconfig entry}``; each gets a data dir.
    :param resource_config: written as is; default built from ``hosts`` and ``current_host``.
    :param code: ``{relative path: text}`` files written into ``code/``.
    :param entry_point: sets ``sagemaker_program``.
    """
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    encoded = encode_hyperparameters(hyperparameters or {})
    if entry_point is not None:
        encoded["sagemaker_program"] = json.dumps(entry_point)
    encoded.update(raw_hyperparameters or {})
    (config / "hyperparameters.json").write_text(json.dumps(encoded))
    if resource_config is None:
        resource_config = {
            "current_host": current_host,
            "hosts": list(hosts),
            "network_interface_name": "eth0",
        }
    (config / "resourceconfig.json").write_text(json.dumps(resource_config))
    if not isinstance(channels, Mapping):
        channels = {name: {"TrainingInputMode": "File"} for name in channels}
    (config / "inputdataconfig.json").write_text(json.dumps(dict(channels)))
    for name in channels:
        (base / "input" / "data" / name).mkdir(parents=True, exist_ok=True)
    for sub in ("model", "output/data", "code"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for rel, text in (code or {}).items():
        path = base / "code" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return base


@pytest.fixture
def job_dir(tmp_path: Path) -> Callable[..., Path]:
    """A factory: ``job_dir(hyperparameters={...}, code={"train.py": ...}, entry_point="train.py")``."""
    counter = iter(range(1_000_000))

    def factory(**kwargs: Any) -> Path:
        return make_job_dir(tmp_path / f"job-{next(counter)}", **kwargs)

    return factory


@pytest.fixture
def plugin_manager() -> Any:
    """A fresh plugin manager with only the default plugins registered."""
    from smc_core.host.plugins import get_plugin_manager

    return get_plugin_manager(environ={}, load_entrypoints=False)


@pytest.fixture
def register_plugin(plugin_manager: Any) -> Iterator[Callable[[object], object]]:
    """Register a plugin object into ``plugin_manager`` for this test; unregistered after."""
    registered: list[object] = []

    def register(plugin: object) -> object:
        from smc_core.host.plugins import PluginInfo

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
