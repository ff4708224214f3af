"""Plugin discovery: the plugin manager factory, adapters and general plugins.

* ``smc.adapters`` entry points (entry name = framework name): exactly one is loaded, the one named by
  ``SMC_ADAPTER``, else the only one installed, else none (the core alone runs any script).
* ``smc.plugins`` entry points: all are loaded.
* ``SMC_PLUGINS=pkg.module,...`` registers modules directly, without packaging.
* ``SMC_DISABLE_PLUGINS=name,...`` blocks plugins by entry-point or module name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from smc_core import hookspecs
from smc_core.defaults import DEFAULT_PLUGINS
from smc_core.errors import PluginError

if TYPE_CHECKING:  # imported where needed: importlib.metadata costs ~20 ms of start-up (email)
    from importlib import metadata

ADAPTER_GROUP = "smc.adapters"
PLUGIN_GROUP = "smc.plugins"


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from, for ``smc plugins`` and error messages."""

    name: str
    module: str
    origin: str
    """``default``, ``adapter``, ``plugin`` (an ``smc.plugins`` entry point) or ``SMC_PLUGINS``."""
    distribution: str | None = None
    version: str | None = None


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _entry_points(*groups: str) -> dict[str, list[metadata.EntryPoint]]:
    """The entry points of each of ``groups``, sorted by name, from one scan of the installed distributions.

    The same entry points as ``metadata.entry_points(group=...)`` gives (the first distribution of a name on
    ``sys.path`` wins), found faster: framework images carry hundreds of distributions, so each is looked at
    once for all groups, and only one whose ``entry_points.txt`` has a ``[group]`` header is parsed.
    """
    found: dict[str, list[metadata.EntryPoint]] = {group: [] for group in groups}
    headers = tuple(f"[{group}]".encode() for group in groups)
    dists = _dists_by_directory_listing(headers)
    if dists is None:
        dists = _dists_by_importlib_metadata(headers)
    for dist in dists:
        for ep in dist.entry_points:
            if ep.group in found:
                found[ep.group].append(ep)
    return {group: sorted(eps, key=lambda ep: ep.name) for group, eps in found.items()}


def _has_header(raw: bytes | str | None, headers: tuple[bytes, ...]) -> bool:
    if not raw:
        return False
    data = raw.encode() if isinstance(raw, str) else raw
    return any(header in data for header in headers)


def _dists_by_importlib_metadata(headers: tuple[bytes, ...]) -> list[metadata.Distribution]:
    # importlib.metadata's own walk (what metadata.entry_points() does), for any layout.
    from importlib import metadata

    seen: set[str] = set()
    dists = []
    for dist in metadata.distributions():
        # importlib.metadata itself tells distributions apart by this name (its _unique()).
        key = getattr(dist, "_normalized_name", None) or (dist.metadata["Name"] or "").lower()
        if key in seen:
            continue
        seen.add(key)
        if _has_header(dist.read_text("entry_points.txt"), headers):
            dists.append(dist)
    return dists


_INFO_SUFFIXES = (".dist-info", ".egg-info")
_UNREADABLE = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _dists_by_directory_listing(headers: tuple[bytes, ...]) -> list[metadata.Distribution] | None:
    """importlib.metadata's walk for the usual layout, without a ``Distribution`` per metadata directory.

    Lists each ``sys.path`` directory once, takes its ``*.dist-info`` / ``*.egg-info`` entries in the order
    and with the de-duplication importlib.metadata uses (by the name before the first ``-``, normalised),
    reads their ``entry_points.txt`` as bytes, and builds a ``PathDistribution`` only for those with a header.
    Returns None (use importlib.metadata) where the layout is unusual: a zip file or ``.egg`` on
    ``sys.path``, another metadata finder on ``sys.meta_path``, a name this shortcut cannot normalise.
    """
    import re
    import sys
    from importlib import machinery

    if any(getattr(f, "find_distributions", None) for f in sys.meta_path if f is not machinery.PathFinder):
        return None
    seen: set[str] = set()
    dists: list[metadata.Distribution] = []
    for root in sys.path:
        if not isinstance(root, str) or root.lower().endswith(".egg"):
            return None
        try:
            children = os.listdir(root or ".")
        except FileNotFoundError:
            continue
        except OSError:
            return None  # a file (zip) or an unreadable directory: importlib.metadata knows what to do
        for child in children:
            if not child.lower().endswith(_INFO_SUFFIXES):
                continue
            stem, _, suffix = child.rpartition(".")
            name = stem.partition("-")[0]
            if "." + suffix not in _INFO_SUFFIXES or not name:
                return None  # importlib.metadata would read METADATA for this one's name
            key = re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")
            if key in seen:
                continue
            seen.add(key)
            try:
                with open(os.path.join(root, child, "entry_points.txt"), "rb") as file:
                    raw = file.read()
            except _UNREADABLE:
                continue
            if _has_header(raw, headers):
                from importlib import metadata  # only now: its import costs ~20 ms of start-up
                from pathlib import Path

                dists.append(metadata.PathDistribution(Path(root, child)))
    return dists


def _dist_of(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    meta = dist.metadata  # parsed on every access: read it once
    return meta["Name"], meta["Version"]


def _load_entry_point(ep: metadata.EntryPoint) -> Any:
    dist, version = _dist_of(ep)
    try:
        return ep.load()
    except Exception as exc:
        where = f"{dist} {version}" if dist else "an unknown distribution"
        raise PluginError(
            f"The {ep.group} entry point {ep.name!r} ({ep.value}) from {where} failed to load: "
            f"{type(exc).__name__}: {exc}. Fix or reinstall {dist or 'the plugin'}, or block it with "
            f"SMC_DISABLE_PLUGINS={ep.name}."
        ) from exc


def select_adapter(adapters: Iterable[metadata.EntryPoint], pinned: str | None) -> metadata.EntryPoint | None:
    """Choose the one adapter to load: the pinned one, else the only one, else None.

    Raises :class:`PluginError` when the pinned adapter is not installed, or when several are
    installed and none is pinned.
    """
    by_name = {ep.name: ep for ep in adapters}
    installed = ", ".join(sorted(by_name)) or "none"
    if pinned:
        if pinned not in by_name:
            raise PluginError(
                f"SMC_ADAPTER={pinned!r}, but no adapter of that name is installed "
                f"(installed adapters: {installed}). Install it (pip install smc-{pinned}) or set "
                "SMC_ADAPTER to one of the installed adapters."
            )
        return by_name[pinned]
    if len(by_name) > 1:
        raise PluginError(
            f"Several adapters are installed ({installed}) and none is chosen. "
            "Set SMC_ADAPTER to the one this job uses, e.g. SMC_ADAPTER="
            f"{sorted(by_name)[0]}."
        )
    return next(iter(by_name.values()), None)


class SmcPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.plugin_info: dict[str, PluginInfo] = {}

    def register_plugin(self, plugin: ModuleType | object, info: PluginInfo) -> None:
        """Register ``plugin`` under ``info.name`` unless that name is blocked."""
        if self.is_blocked(info.name):
            return
        self.register(plugin, name=info.name)
        self.plugin_info[info.name] = info

    @property
    def adapter(self) -> PluginInfo | None:
        """The loaded adapter, if any."""
        return next((i for i in self.plugin_info.values() if i.origin == "adapter"), None)


def get_plugin_manager(
    *,
    environ: Mapping[str, str] | None = None,
    load_entrypoints: bool = True,
    plugins: Iterable[object] = (),
) -> SmcPluginManager:
    """Build a plugin manager with the defaults, the installed plugins and the chosen adapter.

    :param environ: where to read ``SMC_ADAPTER``, ``SMC_PLUGINS`` and ``SMC_DISABLE_PLUGINS``
        (default: ``os.environ``).
    :param load_entrypoints: False builds a manager with the defaults only (and ``plugins``),
        as tests do.
    :param plugins: extra plugin objects to register, first (so they win over everything else).
    """
    environ = os.environ if environ is None else environ
    pm = SmcPluginManager()
    for name in _split(environ.get("SMC_DISABLE_PLUGINS")):
        pm.set_blocked(name)

    for module_name in DEFAULT_PLUGINS:
        pm.register_plugin(
            importlib.import_module(module_name), PluginInfo(module_name, module_name, "default")
        )

    if load_entrypoints:
        entry_points = _entry_points(PLUGIN_GROUP, ADAPTER_GROUP)
        for ep in entry_points[PLUGIN_GROUP]:
            if pm.is_blocked(ep.name):
                continue
            dist, version = _dist_of(ep)
            pm.register_plugin(_load_entry_point(ep), PluginInfo(ep.name, ep.value, "plugin", dist, version))
        adapters = [ep for ep in entry_points[ADAPTER_GROUP] if not pm.is_blocked(ep.name)]
        adapter = select_adapter(adapters, environ.get("SMC_ADAPTER"))
        if adapter is not None:
            dist, version = _dist_of(adapter)
            pm.register_plugin(
                _load_entry_point(adapter), PluginInfo(adapter.name, adapter.value, "adapter", dist, version)
            )

    for module_name in _split(environ.get("SMC_PLUGINS")):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(
                f"SMC_PLUGINS names {module_name!r}, which failed to import: {type(exc).__name__}: {exc}. "
                "Put the module on PYTHONPATH or remove it from SMC_PLUGINS."
            ) from exc
        pm.register_plugin(module, PluginInfo(module_name, module_name, "SMC_PLUGINS"))

    for index, plugin in enumerate(plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        pm.register_plugin(plugin, PluginInfo(name, name, "given"))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"{exc} Hook implementations must be named after a hook in smc_core.hookspecs: "
            f"{', '.join(hook_names())}."
        ) from exc
    return pm


def hook_names() -> list[str]:
    """The names of the hooks in the contract, in the order the runner calls them."""
    return ["load_environment", "fetch_user_code", "prepare_training", "invoke_train"]


def hook_implementations(pm: pluggy.PluginManager, hook_name: str) -> list[str]:
    """The plugin names implementing ``hook_name``, in the order they are called (wrappers first)."""
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    # pluggy calls implementations last-to-first; wrappers enclose the plain ones.
    ordered = [i for i in reversed(impls) if i.hookwrapper or i.wrapper]
    ordered += [i for i in reversed(impls) if not (i.hookwrapper or i.wrapper)]
    return [f"{pm.get_name(i.plugin)}{' (wrapper)' if i.hookwrapper or i.wrapper else ''}" for i in ordered]
