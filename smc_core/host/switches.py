"""Distribution switches: a job that asks for a launch style no loaded plugin provides fails at start.

Each plugin names the switches it launches with the ``claim_switches`` hook. A switch that is on in
the job's hyperparameters and claimed by nobody would otherwise run as one independent copy per
host that "succeeds" without ever training together; :func:`check_switches` turns it into a
:class:`ConfigError` (exit 2) that says what to install or pin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from smc_core.errors import ConfigError, PluginError
from smc_core.job.hyperparameters import DISTRIBUTION_SWITCHES, is_true

if TYPE_CHECKING:
    from smc_core.job.environment import TrainingEnv

SWITCH_PROVIDERS: Mapping[str, tuple[str, ...]] = {
    "sagemaker_multi_worker_mirrored_strategy_enabled": ("tensorflow", "keras"),
    "sagemaker_parameter_server_enabled": ("tensorflow",),
    "sagemaker_torch_distributed_enabled": ("pytorch", "keras"),
    "sagemaker_pytorch_ddp_enabled": ("pytorch",),
    "sagemaker_pytorch_xla_multi_worker_enabled": ("pytorch",),
    "sagemaker_keras_jax_distributed_enabled": ("keras",),
}
"""Switch to the adapters (entry-point names, distribution ``smc-<name>``) known to launch it, for
error messages. Switches not listed here have no smc adapter yet."""


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


def check_switches(training_env: TrainingEnv, claimed: Iterable[str]) -> None:
    """Raise :class:`ConfigError` for the first switch that is on and that no plugin claims.

    :param training_env: the job; its ``additional_framework_parameters`` hold the switches (on a
        ModelTrainer layout, the one ``distributed.json`` stands for, which the message then names).
    :param claimed: the switches the loaded plugins launch (:func:`claimed_switches`).
    """
    claimed = frozenset(claimed)
    job = training_env.model_trainer
    for switch in switches_on(training_env.additional_framework_parameters, claimed):
        if switch in claimed:
            continue
        providers = SWITCH_PROVIDERS.get(switch, ())
        if providers:
            installs = " or ".join(f"pip install smc-{name}" for name in providers)
            pins = " or ".join(f"SMC_ADAPTER={name}" for name in providers)
            fix = f"{installs}, or set {pins}"
        else:
            fix = (
                "no smc adapter launches it yet: remove the switch, or install a plugin that claims it "
                "(claim_switches hook)"
            )
        asked = f"{switch} is on"
        if job is not None and switch in job.framework_parameters():
            asked = f"{job.distributed_file} asks for {job.config_name} (smc launches it as {switch})"
        raise ConfigError(
            f"{asked}, but no loaded adapter handles it: {fix}. Without it every host would "
            "train alone and report success."
        )
