"""Backend choice: the framework parameter, then KERAS_BACKEND, then the first installed; errors at start."""

from __future__ import annotations

import dataclasses
import json

import pytest
from keras_helpers import INSTALLED_BACKENDS, PLAIN_SCRIPT, single_host
from smc_keras.backend import BACKENDS, choose_backend
from smc_keras.plugin import register_settings

from smc_core import ConfigError, Settings, create_environment


@pytest.mark.parametrize("backend", INSTALLED_BACKENDS)
def test_the_same_script_runs_on_each_backend(smc_job, backend):
    other = next(name for name in BACKENDS if name != backend)
    done = smc_job(
        hyperparameters={"epochs": 2, "sagemaker_keras_backend": backend},
        code={"train.py": PLAIN_SCRIPT},
        entry_point="train.py",
        env={"KERAS_BACKEND": other},  # the framework parameter wins over the environment
    )
    done.assert_success()
    run = json.loads((done.model_dir / "run.json").read_text())
    assert (run["env"], run["keras"], run["epochs"]) == (backend, backend, 2)
    assert run["argv"] == ["--epochs", "2"] and run["hps"] == {"epochs": 2}  # a reserved key: not passed on
    assert f"Keras backend: {backend} (from sagemaker_keras_backend)" in done.logs


def environment(job_dir, environ=None, **hyperparameters):
    base = job_dir(hyperparameters=hyperparameters, resource_config=single_host())
    environ = environ or {}
    settings = Settings(register_settings(), environ)  # as the runner parses the declared settings
    return dataclasses.replace(create_environment(base, environ), settings=settings)


def test_keras_backend_from_the_environment_then_the_first_installed(job_dir):
    chosen = choose_backend(environment(job_dir, {"KERAS_BACKEND": "jax"}), lambda name: object())
    assert (chosen.name, chosen.source) == ("jax", "KERAS_BACKEND")
    only_torch = choose_backend(environment(job_dir), lambda name: object() if name == "torch" else None)
    assert (only_torch.name, only_torch.source) == ("torch", "first installed")


def test_a_missing_backend_says_what_to_install(job_dir):
    env = environment(job_dir, sagemaker_keras_backend="jax")
    with pytest.raises(
        ConfigError, match=r"'sagemaker_keras_backend' is 'jax', but jax is not installed.*pip install jax"
    ):
        choose_backend(env, lambda name: None)
    with pytest.raises(ConfigError, match=r"none is installed.*pip install tensorflow"):
        choose_backend(environment(job_dir), lambda name: None)


def test_an_unknown_backend_fails_the_job_at_start(smc_job):
    done = smc_job(
        hyperparameters={"sagemaker_keras_backend": "mxnet"},
        code={"train.py": "raise SystemExit('must not run')"},
        entry_point="train.py",
    )
    assert "'sagemaker_keras_backend' is 'mxnet'" in done.assert_failure(2)


@pytest.mark.parametrize(
    ("switch", "backend"),
    [
        ("sagemaker_multi_worker_mirrored_strategy_enabled", "torch"),
        ("sagemaker_torch_distributed_enabled", "jax"),
    ],
)
def test_a_switch_of_another_backend_fails_at_start(smc_job, switch, backend):
    done = smc_job(
        hyperparameters={switch: True, "sagemaker_keras_backend": backend},
        code={"train.py": "raise SystemExit('must not run')"},
        entry_point="train.py",
    )
    failure = done.assert_failure(2)
    assert f"{switch} is on" in failure and f"this job runs Keras on {backend}" in failure
