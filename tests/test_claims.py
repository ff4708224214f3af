"""Hyperparameters that plugins claim (``claim_hyperparameters``): theirs, never the script's."""

from __future__ import annotations

import dataclasses

import pytest

from smc_core import PluginError, create_environment, exported_vars, hookimpl, user_args
from smc_core.host.claims import claimed_hyperparameters, hand_over


def test_a_plugin_cannot_claim_a_reserved_hyperparameter(register_plugin, plugin_manager):
    class Greedy:
        @hookimpl
        def claim_hyperparameters(self):
            return ["sagemaker_program"]

    register_plugin(Greedy())
    with pytest.raises(PluginError, match=r"'sagemaker_program'.*smc itself reads it"):
        claimed_hyperparameters(plugin_manager)


def test_claims_must_be_a_list_of_names(register_plugin, plugin_manager):
    class Sloppy:
        @hookimpl
        def claim_hyperparameters(self):
            return "git_repo"

    register_plugin(Sloppy())
    with pytest.raises(PluginError, match=r"must return a list of hyperparameter names"):
        claimed_hyperparameters(plugin_manager)


def test_a_claimed_hyperparameter_leaves_every_rendering_of_the_scripts(job_dir):
    job = job_dir(hyperparameters={"epochs": 2, "git_repo": "https://x/y.git", "sagemaker_git_depth": 1})
    training_env = hand_over(create_environment(job, {}), ["git_repo", "sagemaker_git_depth", "absent"])
    assert training_env.plugin_hyperparameters == {"git_repo": "https://x/y.git", "sagemaker_git_depth": 1}
    assert dict(training_env.hyperparameters) == {"epochs": 2}
    assert user_args(training_env) == ["--epochs", "2"]
    exported = exported_vars(training_env)
    assert exported["SM_HPS"] == '{"epochs":2}' and "SM_HP_GIT_REPO" not in exported
    assert '"git_repo"' not in exported["SM_TRAINING_ENV"]
    # a sagemaker_* name stays a framework parameter, as the container contract says
    assert exported["SM_FRAMEWORK_PARAMS"] == '{"sagemaker_git_depth":1}'


def test_on_a_model_trainer_layout_the_sdk_rendering_loses_a_plain_claimed_name(job_dir, tmp_path):
    from smc_core.job.platforms.modeltrainer import ModelTrainerJob

    job = job_dir(hyperparameters={"epochs": 2, "git_repo": "https://x/y.git"})
    sdk = ModelTrainerJob(
        drivers_dir=tmp_path, source_code={}, distributed={}, hyperparameters={"epochs": 2, "git_repo": "u"}
    )
    training_env = dataclasses.replace(create_environment(job, {}), model_trainer=sdk)
    assert user_args(training_env) == ["--epochs", "2", "--git_repo", "u"]  # the SDK's drivers: every one
    assert user_args(hand_over(training_env, ["git_repo"])) == ["--epochs", "2"]
