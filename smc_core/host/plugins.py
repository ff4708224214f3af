"""Plugin discovery: the plugin manager factory, adapters and general plugins.

* ``smc.adapters`` entry points (entry name = framework name): exactly one is loaded, the one named by
  ``SMC_ADAPTER``, else the only one installed, else none (the core alone runs any script).
* ``smc.plugins`` entry points: all are loaded.
* ``SMC_PLUGINS=pkg.module,...`` registers modules directly, without packaging.
* ``SMC_DISABLE_PLUGINS=name,...`` blocks plugins by entry-point or module name.

Registration order, and so call order: :func:`get_plugin_manager` registers the defaults first, then
the ``smc.plugins`` entry points, then the adapter, then the ``SMC_PLUGINS`` modules, then the
``plugins`` it is given. pluggy calls the most recently registered implementation first (among those
with the same ``tryfirst``/``trylast`` mark), so for a first-result hook the later ones win: a
``plugins`` object over an ``SMC_PLUGINS`` module over the adapter over an ``smc.plugins`` entry point
over the defaults (which are also ``trylast``). ``smc plugins`` prints each hook's call order.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from smc_core import hookspecs
from smc_core.base.settings import ADAPTER, DISABLE_PLUGINS, PLUGINS, SettingsRegistry
from smc_core.errors import PluginError
from smc_core.host.entrypoints import EntryPointLike, find_entry_points

ADAPTER_GROUP = "smc.adapters"
PLUGIN_GROUP = "smc.plugins"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "smc_core.defaults.environment",
    "smc_core.defaults.kubeflow",
    "smc_core.defaults.vertex",
    "smc_core.defaults.usercode",
    "smc_core.defaults.exports",
    "smc_core.defaults.accelerators",
    "smc_core.defaults.install",
    # before invoke: among trylast implementations the one registered first is called first
    "smc_core.mpi.plugin",
    "smc_core.mpi.smddp",
    "smc_core.defaults.invoke",
    "smc_core.defaults.intermediate",
    "smc_core.defaults.reporting",
)
"""Module names of the default plugins (:mod:`smc_core.defaults`, and the MPI launch :mod:`smc_core.mpi`,
which uses only the public API), imported by name and registered in this order by ``get_plugin_manager``,
as any plugin is: the defaults sit a layer above the host."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from, for ``smc plugins`` and error messages."""

    name: str
    module: str
    origin: str
    """``default``, ``adapter``, ``plugin`` (an ``smc.plugins`` entry point) or ``SMC_PLUGINS``."""
    distribution: str | None = None
    version: str | None = None


def _dist_of(ep: EntryPointLike) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    meta = dist.metadata  # parsed on every access: read it once
    return meta["Name"], meta["Version"]


def _load_entry_point(ep: EntryPointLike) -> Any:
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


def select_adapter(adapters: Iterable[EntryPointLike], pinned: str | None) -> EntryPointLike | None:
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
        try:
            self.register(plugin, name=info.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            where = f"{info.distribution} {info.version}" if info.distribution else info.module
            raise PluginError(
                f"The plugin {info.name!r} ({info.origin}, from {where}) cannot be registered: {exc}. "
                "Hook implementations take the hook's own argument names (see smc_core/hookspecs.py), and "
                f"a plugin is registered once: block one copy with SMC_DISABLE_PLUGINS={info.name}."
            ) from exc
        self.plugin_info[info.name] = info

    @property
    def adapter(self) -> PluginInfo | None:
        """The loaded adapter, if any."""
        return next((i for i in self.plugin_info.values() if i.origin == "adapter"), None)


def get_plugin_manager(
    *,
    environ: Mapping[str, str] | None = None,
    registry: SettingsRegistry | None = None,
    load_entrypoints: bool = True,
    plugins: Iterable[object] = (),
) -> SmcPluginManager:
    """Build a plugin manager with the defaults, the installed plugins and the chosen adapter.

    ``SMC_ADAPTER``, ``SMC_PLUGINS`` and ``SMC_DISABLE_PLUGINS`` come from the job's settings
    registry, where the core's settings are parsed before any plugin loads (plugins declare theirs
    once loaded; the runner then freezes it).

    :param environ: the environment to parse them from when no ``registry`` is given (default:
        ``os.environ``).
    :param registry: the job's settings registry (the runner's); give this or ``environ``.
    :param load_entrypoints: False builds a manager with the defaults only (and ``plugins``),
        as tests do.
    :param plugins: extra plugin objects, registered last, so they are called first and win over
        everything else (see the module docstring for the order).
    :raises ConfigError: one of the three settings has a bad value (the message lists every bad
        value of the core's settings).
    """
    if registry is None:
        registry = SettingsRegistry(os.environ if environ is None else environ)
    elif environ is not None:
        raise TypeError("get_plugin_manager takes environ or registry, not both")
    pinned = registry.value(ADAPTER)
    extra_modules = registry.value(PLUGINS)
    disabled = registry.value(DISABLE_PLUGINS)
    pm = SmcPluginManager()
    for name in disabled:
        pm.set_blocked(name)

    for module_name in DEFAULT_PLUGINS:
        pm.register_plugin(
            importlib.import_module(module_name), PluginInfo(module_name, module_name, "default")
        )

    if load_entrypoints:
        entry_points = find_entry_points(PLUGIN_GROUP, ADAPTER_GROUP)
        for ep in entry_points[PLUGIN_GROUP]:
            if pm.is_blocked(ep.name):
                continue
            dist, version = _dist_of(ep)
            pm.register_plugin(_load_entry_point(ep), PluginInfo(ep.name, ep.value, "plugin", dist, version))
        adapters = [ep for ep in entry_points[ADAPTER_GROUP] if not pm.is_blocked(ep.name)]
        adapter = select_adapter(adapters, pinned)
        if adapter is not None:
            dist, version = _dist_of(adapter)
            pm.register_plugin(
                _load_entry_point(adapter), PluginInfo(adapter.name, adapter.value, "adapter", dist, version)
            )

    for module_name in extra_modules:
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
    """The names of the hooks in the contract, in the order the runner calls them (their order in
    :mod:`smc_core.hookspecs`)."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return [name for name, value in vars(hookspecs).items() if hasattr(value, marker)]


def hook_implementations(pm: pluggy.PluginManager, hook_name: str) -> list[str]:
    """The plugin names implementing ``hook_name``, in the order they are called (wrappers first)."""
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    # pluggy calls implementations last-to-first; wrappers enclose the plain ones.
    ordered = [i for i in reversed(impls) if i.hookwrapper or i.wrapper]
    ordered += [i for i in reversed(impls) if not (i.hookwrapper or i.wrapper)]
    return [f"{pm.get_name(i.plugin)}{' (wrapper)' if i.hookwrapper or i.wrapper else ''}" for i in ordered]


def raising_plugin(pm: pluggy.PluginManager, error: BaseException) -> str | None:
    """The plugin whose own code raised ``error`` (``"name (distribution version)"``), or None when
    smc's code did.

    The traceback is read from the innermost frame outwards; the first frame in smc's own package
    (``smc_core``) or in a registered plugin's top-level package decides. Frames of libraries that
    a plugin calls (torch, the standard library) are passed over, so an error raised inside torch on
    behalf of ``smc_pytorch`` is ``smc_pytorch``'s.
    """
    packages: dict[str, str] = {}
    infos = getattr(pm, "plugin_info", {})
    for name, plugin in pm.list_name_plugin():
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        top = module.split(".")[0]
        if top == "smc_core" or top in packages:
            continue
        info = infos.get(name)
        where = f" ({info.distribution} {info.version})" if info is not None and info.distribution else ""
        packages[top] = f"{name}{where}"
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        top = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if top == "smc_core":
            return None
        if top in packages:
            return packages[top]
    return None
