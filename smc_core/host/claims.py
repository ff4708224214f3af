"""Hyperparameters that plugins own: named by ``claim_hyperparameters``, kept out of the user's script.

A plugin that takes a hyperparameter of its own (``git_repo`` for a fetch from git) names it with the
``claim_hyperparameters`` hook. :func:`claimed_hyperparameters` collects the names once, before the job
starts; :func:`hand_over` moves each claimed hyperparameter the job sets out of
``training_env.hyperparameters`` (what the script gets: its arguments, ``SM_HPS``, ``SM_HP_*``,
function mode; on a ModelTrainer layout, what the SDK's drivers would render) into
``training_env.plugin_hyperparameters``. A claimed ``sagemaker_*`` name is rendered as the platform's
reference renders it: on SageMaker a framework parameter, as the contract says, never an argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pluggy

from smc_core.base.log import logger
from smc_core.errors import PluginError
from smc_core.host.plugins import hook_implementations
from smc_core.job.environment import FrozenDict, TrainingEnv
from smc_core.job.hyperparameters import RESERVED_HYPERPARAMETERS, SAGEMAKER_PREFIX

__all__ = ["claimed_hyperparameters", "hand_over"]


def claimed_hyperparameters(pm: pluggy.PluginManager) -> frozenset[str]:
    """Every hyperparameter a loaded plugin's ``claim_hyperparameters`` names.

    :raises PluginError: an implementation returned something other than a list of names, or
        claimed a name the toolkit reserves (exit 3).
    """
    claimed: set[str] = set()
    for names in pm.hook.claim_hyperparameters():
        if names is None:
            continue
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise PluginError(
                f"A claim_hyperparameters implementation returned {names!r}; it must return a list of "
                "hyperparameter names (e.g. ['git_repo']), or None."
            )
        for name in names:
            if name in RESERVED_HYPERPARAMETERS:
                raise PluginError(
                    f"A plugin claims the hyperparameter {name!r} (claim_hyperparameters of: "
                    f"{', '.join(hook_implementations(pm, 'claim_hyperparameters'))}), but smc itself reads "
                    f"it (one of {', '.join(sorted(RESERVED_HYPERPARAMETERS))}): claim a name of the "
                    "plugin's own, e.g. 'myplugin_repo'."
                )
        claimed.update(names)
    return frozenset(claimed)


def hand_over(training_env: TrainingEnv, claimed: Iterable[str]) -> TrainingEnv:
    """``training_env`` with each claimed hyperparameter the job sets moved to ``plugin_hyperparameters``.

    The user's hyperparameters (``training_env.hyperparameters``) lose them; a claimed ``sagemaker_*``
    name stays a framework parameter (``additional_framework_parameters``) too.
    """
    names = set(claimed)
    every = {
        **training_env.raw_hyperparameters,
        **training_env.additional_framework_parameters,
        **training_env.hyperparameters,
    }
    owned = {name: value for name, value in every.items() if name in names}
    if not owned:
        return training_env
    logger.info(
        "Hyperparameters for the plugins that claim them, not for the script: %s", ", ".join(sorted(owned))
    )
    user = {name: value for name, value in training_env.hyperparameters.items() if name not in names}
    model_trainer = training_env.model_trainer
    if model_trainer is not None:  # the SDK's drivers render every hyperparameter: not a plain claimed one
        plain = {name for name in names if not name.startswith(SAGEMAKER_PREFIX)}
        rendered = {k: v for k, v in model_trainer.hyperparameters.items() if k not in plain}
        model_trainer = dataclasses.replace(model_trainer, hyperparameters=FrozenDict(rendered))
    return dataclasses.replace(
        training_env,
        hyperparameters=FrozenDict(user),
        plugin_hyperparameters=FrozenDict(owned),
        model_trainer=model_trainer,
    )
