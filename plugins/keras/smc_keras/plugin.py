"""The Keras adapter's hook implementations (keras and its backends are imported only inside functions).

* ``register_settings``: ``KERAS_BACKEND`` and ``SMC_KERAS_RENDEZVOUS_PORT``.
* ``claim_switches``: the three switches of :mod:`smc_keras.distribution`; one that does not fit the
  chosen backend fails in ``prepare_training`` (exit 2).
* ``prepare_training``: chooses the backend (:mod:`smc_keras.backend`, logged), waits for peer hosts
  when a switch is on, and returns ``KERAS_BACKEND``, ``SMC_KERAS_CHECKPOINT_DIR`` and the backend's
  distribution variables (``KERAS_DISTRIBUTION_*``, ``TF_CONFIG``, ``MASTER_ADDR`` ...).
* ``invoke_train``: with ``sagemaker_torch_distributed_enabled`` in script mode, runs torchrun
  (``python -m torch.distributed.run``) on this host, with torchrun's EFA and NCCL variables
  (:func:`smc_core.network_variables`); otherwise None and the default runs one process.
* ``save_returned_model`` (an ``invoke_train`` wrapper): in function mode, saves a ``keras.Model``
  that ``train()`` returned (:mod:`smc_keras.saving`), and explains the known Keras 3 failure under
  MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from smc_core import (
    ConfigError,
    EntryKind,
    Setting,
    TrainingEnv,
    TrainingResult,
    UserCode,
    UserCodeError,
    hookimpl,
    logger,
    network_variables,
    run_process,
    user_args,
    wait_for_hosts,
)
from smc_keras.backend import KERAS_BACKEND, choose_backend, is_installed
from smc_keras.distribution import (
    DISTRIBUTION_SWITCHES,
    RENDEZVOUS_PORT,
    TF_SWITCH,
    TORCH_SWITCH,
    distribution_env,
    distribution_switch,
    job_hosts,
    torchrun_command,
)
from smc_keras.saving import is_chief, is_keras_model, not_a_model_error, save_model

CHECKPOINT_DIR_VAR = "SMC_KERAS_CHECKPOINT_DIR"
"""Where :func:`smc_keras.callbacks` keeps its checkpoints: exported to the user's processes."""

MWMS_SIGNATURE = ("distribute.values.PerReplica'>) to a Tensor",)
"""The last line of the known failure of Keras 3's fit() under MultiWorkerMirroredStrategy
(Keras 3.15, TensorFlow 2.21): ``ValueError: Attempt to convert a value (PerReplica:{...}) with an
unsupported type (<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor.``"""

MWMS_EXPLANATION = (
    "smc-keras: this looks like the known upstream failure of Keras 3 under "
    "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585, tensorflow/tensorflow#72388): "
    "Keras 3's fit() does not support multi-worker tf.distribute strategies. Train across hosts with "
    'sagemaker_keras_backend "jax" and sagemaker_keras_jax_distributed_enabled, or "torch" and '
    "sagemaker_torch_distributed_enabled; or use tf-keras (Keras 2: pip install tf-keras, "
    "TF_USE_LEGACY_KERAS=1) for MultiWorkerMirroredStrategy."
)


@hookimpl
def register_settings() -> list[Setting[Any]]:
    """The environment variables smc-keras reads."""
    return [KERAS_BACKEND, RENDEZVOUS_PORT]


@hookimpl
def claim_switches() -> tuple[str, ...]:
    """The switches this adapter launches (each on its own backend)."""
    return DISTRIBUTION_SWITCHES


def checkpoint_dir(training_env: TrainingEnv) -> Path:
    """``checkpointconfig.json``'s ``LocalPath``, else ``checkpoints/`` in the job dir
    (``/opt/ml/checkpoints``)."""
    local = training_env.checkpoint_config.get("LocalPath")
    if local not in (None, "") and not isinstance(local, str):
        raise ConfigError(
            f"checkpointconfig.json: 'LocalPath' is {local!r}, which is not a path: give a directory, "
            'e.g. "/opt/ml/checkpoints".'
        )
    return Path(local) if local else training_env.paths.checkpoint_dir


@hookimpl
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> dict[str, str]:
    """Choose the backend, wait for peers when distributed, and return the variables Keras reads."""
    if not is_installed("keras"):
        raise ConfigError(
            "smc-keras runs Keras 3, which is not installed in this image: pip install keras "
            "(tensorflow 2.16+ brings it)."
        )
    choice = choose_backend(training_env)
    logger.info("Keras backend: %s (from %s).", choice.name, choice.source)
    switch = distribution_switch(training_env, choice.name)
    function_mode = user_code.kind is EntryKind.FUNCTION
    variables = {"KERAS_BACKEND": choice.name, CHECKPOINT_DIR_VAR: str(checkpoint_dir(training_env))}
    if switch is not None:
        hosts = job_hosts(training_env)
        if len(hosts) > 1:
            wait_for_hosts(hosts)  # bounded by the job's SMC_HOST_WAIT_TIMEOUT
        variables.update(distribution_env(training_env, choice.name, switch, function_mode=function_mode))
        logger.info("%s: %s across %d host(s).", switch, choice.name, len(hosts))
    return variables


@hookimpl
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult | None:
    """Run torchrun on this host for ``sagemaker_torch_distributed_enabled``; None otherwise."""
    if user_code.kind is EntryKind.FUNCTION:
        return None  # train() runs in this process; torch gets RANK/WORLD_SIZE from prepare_training
    backend = process_env.get("KERAS_BACKEND") or choose_backend(training_env).name
    if distribution_switch(training_env, backend) != TORCH_SWITCH:
        return None
    command = torchrun_command(training_env, user_code, user_args(training_env))
    logger.info("%s: %s", TORCH_SWITCH, " ".join(command))
    env = {**network_variables(training_env, "torchrun"), **process_env}  # the job's own win
    return run_process(command, env=env, cwd=user_code.code_dir)  # the job's policy applies


@hookimpl(specname="invoke_train", wrapper=True)
def save_returned_model(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> Generator[None, Any, Any]:
    """Function mode: save the ``keras.Model`` that ``train()`` returned (master host, rank 0 only);
    any job: explain the known Keras 3 failure under MultiWorkerMirroredStrategy."""
    result = yield
    if result is None:
        return result
    if not result.succeeded:
        return explain_failure(training_env, process_env, result)
    if result.model is None or user_code.kind is not EntryKind.FUNCTION:
        return result
    model = result.model
    user_save = user_save_function(user_code)
    if user_save is None and not is_keras_model(model):
        raise not_a_model_error(model)
    if not is_chief(training_env, process_env):
        logger.info("Not the chief: the returned model is saved by %s.", training_env.master_hostname)
    elif user_save is not None:
        logger.info("Saving the returned model with %s.save(model, model_dir).", user_code.module_name)
        try:
            user_save(model, str(training_env.model_dir))
        except Exception as exc:
            raise UserCodeError(
                f"{user_code.module_name}.save(model, model_dir) failed: {type(exc).__name__}: {exc}. "
                "Fix it, or remove it to let smc-keras save a keras.Model as model_dir/model.keras."
            ) from exc
    else:
        save_model(model, training_env.model_dir, process_env.get("KERAS_BACKEND", ""))
    return dataclasses.replace(result, model_handled_by="smc-keras")


def user_save_function(user_code: UserCode) -> Any:
    """The user module's own ``save(model, model_dir)`` (the original design's hook), or None.

    Only a function defined in the module counts (not, say, ``from numpy import save``).
    """
    module = sys.modules.get(user_code.module_name or "")
    save = getattr(module, "save", None)
    if callable(save) and getattr(save, "__module__", None) == getattr(module, "__name__", None):
        return save
    return None


def explain_failure(
    training_env: TrainingEnv, process_env: Mapping[str, str], result: TrainingResult
) -> TrainingResult:
    """``result`` with :data:`MWMS_EXPLANATION` added when a TensorFlow multi-worker job failed in
    a way that matches the known upstream issue; ``result`` unchanged otherwise."""
    if process_env.get("KERAS_BACKEND") != "tensorflow":
        return result
    try:
        if distribution_switch(training_env, "tensorflow") != TF_SWITCH:
            return result
    except ConfigError:
        return result
    text = result.failure or ""
    if not any(signature in text for signature in MWMS_SIGNATURE):
        return result
    logger.error("%s", MWMS_EXPLANATION)
    return dataclasses.replace(result, failure=f"{MWMS_EXPLANATION}\n{text}")
