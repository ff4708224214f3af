"""Distribution switches: a job that asks for a launch style no loaded plugin provides fails at start.

Each plugin names the switches it launches with the ``claim_switches`` hook. A switch that is on in
the job's hyperparameters and claimed by nobody would otherwise run as one independent copy per
host that "succeeds" without ever training together; :func:`check_switches` turns it into a
:class:`ConfigError` (exit 2) that says what to install or pin.

The core keeps no list of adapters: what to do comes from the plugins, in this order.

1. **Installed, not loaded.** A distribution declares the switches its plugin launches in its
   metadata, beside the plugin's own entry point (read without importing anything)::

       [project.entry-points."smc.adapters"]
       myfw = "smc_myfw.plugin"

       [project.entry-points."smc.switches"]    # the switch = the plugin module that claims it
       sagemaker_myfw_distributed_enabled = "smc_myfw.plugin"

   When such a plugin is installed but not loaded (another adapter is chosen, or it is blocked),
   the message says how to load it: ``set SMC_ADAPTER=myfw``, or take it out of
   ``SMC_DISABLE_PLUGINS``. (:func:`switch_declarations` reads them; the declaration must match what
   the plugin's ``claim_switches`` returns, which a test of each adapter checks.)
2. **Not installed at all.** Nothing on this machine can say what launches the switch, so the
   message names the distributions :data:`WELL_KNOWN_SWITCHES` lists for it (``pip install
   smc-pytorch``): a table of data, documented in ``docs/writing-an-adapter.md``, that no code path
   branches on; a plugin needs no entry in it to work.
3. **Unknown.** Otherwise the message says that no plugin known to smc launches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from smc_core.errors import ConfigError, PluginError
from smc_core.host.entrypoints import EntryPointLike, find_entry_points
from smc_core.job.hyperparameters import DISTRIBUTION_SWITCHES, is_true

if TYPE_CHECKING:
    from smc_core.job.environment import TrainingEnv

SWITCH_GROUP = "smc.switches"
"""The entry-point group in which a distribution declares the switches its plugins launch (entry name:
the switch; value: the module of the plugin that claims it)."""


@dataclass(frozen=True)
class KnownSwitch:
    """What a well-known switch launches, and the distributions known to provide it."""

    launches: str
    """The launch style, for the message (``torchrun on every host``)."""
    install: tuple[str, ...]
    """Requirements that provide a plugin launching it, the usual one first (``smc-pytorch``)."""


WELL_KNOWN_SWITCHES: Mapping[str, KnownSwitch] = {
    "sagemaker_torch_distributed_enabled": KnownSwitch(
        "torchrun on every host", ("smc-pytorch", "smc-keras")
    ),
    "sagemaker_pytorch_ddp_enabled": KnownSwitch("PyTorch DDP through torchrun", ("smc-pytorch",)),
    "sagemaker_pytorch_xla_multi_worker_enabled": KnownSwitch("PyTorch/XLA across hosts", ("smc-pytorch",)),
    "sagemaker_multi_worker_mirrored_strategy_enabled": KnownSwitch(
        "TensorFlow's MultiWorkerMirroredStrategy", ("smc-tensorflow", "smc-keras")
    ),
    "sagemaker_parameter_server_enabled": KnownSwitch("TensorFlow parameter servers", ("smc-tensorflow",)),
    "sagemaker_keras_jax_distributed_enabled": KnownSwitch("Keras on JAX across hosts", ("smc-keras",)),
}
"""Switches whose plugins smc knows of, for the message when no installed distribution declares the
switch (point 2 of the module docstring). Data only: installed plugins speak for themselves."""


@dataclass(frozen=True)
class SwitchDeclaration:
    """An installed distribution's declaration that one of its plugins launches a switch."""

    switch: str
    module: str
    """The plugin module that claims it (the entry point's value)."""
    distribution: str | None
    version: str | None
    plugin: str | None
    """The plugin's entry-point name (``smc.adapters`` or ``smc.plugins``), when it has one."""
    adapter: bool
    """Whether that entry point is an adapter (loaded only when chosen)."""


def _dist(ep: EntryPointLike) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    meta = dist.metadata
    return meta["Name"], meta["Version"]


def switch_declarations(switch: str) -> list[SwitchDeclaration]:
    """What the installed distributions declare about ``switch`` in the ``smc.switches`` group, each
    with the ``smc.adapters`` or ``smc.plugins`` entry point of the same module, if any."""
    found = find_entry_points(SWITCH_GROUP, "smc.adapters", "smc.plugins")
    plugins = {ep.value: (ep.name, False) for ep in found["smc.plugins"]}
    plugins.update({ep.value: (ep.name, True) for ep in found["smc.adapters"]})
    declarations = []
    for ep in found[SWITCH_GROUP]:
        if ep.name != switch:
            continue
        name, adapter = plugins.get(ep.value, (None, False))
        distribution, version = _dist(ep)
        declarations.append(SwitchDeclaration(switch, ep.value, distribution, version, name, adapter))
    return declarations


def claimed_switches(pm: pluggy.PluginManager) -> frozenset[str]:
    """Every switch named by a loaded plugin's ``claim_switches``."""
    claimed: set[str] = set()
    for contribution in pm.hook.claim_switches():
        if contribution is None:
            continue
        if isinstance(contribution, str) or not all(isinstance(s, str) for s in contribution):
            raise PluginError(
                f"A claim_switches implementation returned {contribution!r}; it must return a list of "
                "switch names (e.g. ['sagemaker_torch_distributed_enabled']), or None."
            )
        claimed.update(contribution)
    return frozenset(claimed)


def switches_on(framework_parameters: Mapping[str, Any], known: Iterable[str] = ()) -> list[str]:
    """The distribution switches that are on: the contract's, ``known`` ones, and any other
    ``sagemaker_*_enabled`` framework parameter."""
    names = {*DISTRIBUTION_SWITCHES, *known}
    names.update(k for k in framework_parameters if k.startswith("sagemaker_") and k.endswith("_enabled"))
    return sorted(name for name in names if is_true(framework_parameters.get(name, False)))


def _loaded_modules(pm: pluggy.PluginManager) -> set[str]:
    modules = {getattr(plugin, "__name__", "") for plugin in pm.get_plugins()}
    modules.update(info.module for info in getattr(pm, "plugin_info", {}).values())
    return modules


def _how_to_load(declaration: SwitchDeclaration, pm: pluggy.PluginManager) -> str:
    where = " ".join(filter(None, (declaration.distribution, declaration.version))) or declaration.module
    name = declaration.plugin or declaration.module
    if declaration.module in _loaded_modules(pm):
        return (
            f"{where} declares that its plugin {name} launches it, but the loaded plugin does not claim it "
            "(claim_switches): report it to its maintainers"
        )
    if pm.is_blocked(name):
        return f"{where} launches it with its plugin {name}, which SMC_DISABLE_PLUGINS blocks: unblock it"
    if declaration.adapter:
        loaded = next(
            (i.name for i in getattr(pm, "plugin_info", {}).values() if i.origin == "adapter"), None
        )
        instead = f"the adapter {loaded} is loaded instead" if loaded else "it is not loaded"
        return f"{where} (installed) launches it, but {instead}: set SMC_ADAPTER={name}"
    return (
        f"{where} (installed) launches it with {name}, which is not loaded: register it (SMC_PLUGINS={name})"
    )


def unclaimed_switch_fix(switch: str, pm: pluggy.PluginManager | None = None) -> str:
    """What to do about ``switch``, which is on and claimed by no loaded plugin: load the installed
    plugin that declares it, else install a well-known one, else a generic hint (module docstring)."""
    declarations = switch_declarations(switch) if pm is not None else []
    if declarations and pm is not None:
        return "; or ".join(_how_to_load(declaration, pm) for declaration in declarations)
    known = WELL_KNOWN_SWITCHES.get(switch)
    if known is not None:
        first, *others = known.install
        alternatives = f" (or {' or '.join(others)})" if others else ""
        return (
            f"it asks for {known.launches}, which no installed plugin declares: pip install {first}"
            f"{alternatives}, and pin the adapter with SMC_ADAPTER if several are installed"
        )
    return (
        "no plugin known to smc launches it: remove the switch, or install a plugin that claims it "
        "(claim_switches hook)"
    )


def check_switches(
    training_env: TrainingEnv,
    claimed: Iterable[str],
    pm: pluggy.PluginManager | None = None,
) -> None:
    """Raise :class:`ConfigError` for the first switch that is on and that no plugin claims.

    :param training_env: the job; its ``additional_framework_parameters`` hold the switches (on a
        ModelTrainer layout, the one ``distributed.json`` stands for, which the message then names).
    :param claimed: the switches the loaded plugins launch (:func:`claimed_switches`).
    :param pm: the plugin manager, to say which installed plugin to load (:func:`unclaimed_switch_fix`).
    """
    claimed = frozenset(claimed)
    job = training_env.model_trainer
    for switch in switches_on(training_env.additional_framework_parameters, claimed):
        if switch in claimed:
            continue
        asked = f"{switch} is on"
        if job is not None and switch in job.framework_parameters():
            asked = f"{job.distributed_file} asks for {job.config_name} (smc launches it as {switch})"
        raise ConfigError(
            f"{asked}, but no loaded adapter handles it: {unclaimed_switch_fix(switch, pm)}. Without it "
            "every host would train alone and report success."
        )
