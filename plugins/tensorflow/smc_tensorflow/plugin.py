"""The TensorFlow adapter's hook implementations (TensorFlow is imported only inside functions).

* ``register_settings``: ``SMC_TF_PS_WAIT_TIMEOUT``, ``SMC_TF_PEER_WAIT_TIMEOUT`` (fields of the job's
  supervision policy).
* ``claim_switches``: ``sagemaker_multi_worker_mirrored_strategy_enabled``,
  ``sagemaker_parameter_server_enabled``.
* ``tuning_model_dir`` (a ``load_environment`` wrapper): a tuning job's ``s3://`` ``model_dir``
  hyperparameter gets the training job's name appended, as the reference toolkit does.
* ``prepare_training``: waits for peer hosts (multi-host jobs), logs the GPUs, and contributes
  ``TF_CONFIG``, ``TF_CPP_MIN_LOG_LEVEL`` and the S3 variables (:mod:`smc_tensorflow.distribution`).
* ``invoke_train``: multi-host MultiWorkerMirrored and parameter-server jobs run through
  :mod:`smc_tensorflow.launch` (parameter server beside the worker, failures end every host); anything
  else returns None and the core runs the entry point once.
* ``save_and_check`` (an ``invoke_train`` wrapper): saves a model ``train()`` returned (function mode,
  :mod:`smc_tensorflow.saving`), adds hints for known upstream failures (:mod:`smc_tensorflow.hints`),
  and warns when the model dir holds no SavedModel version directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping
from typing import Any

from smc_core import (
    ConfigError,
    EntryKind,
    Setting,
    TrainingEnv,
    TrainingResult,
    UserCode,
    hookimpl,
    logger,
    wait_for_hosts,
)
from smc_tensorflow.distribution import (
    PARAMETER_SERVER_SWITCH,
    SETTINGS,
    SWITCHES,
    LaunchStyle,
    cluster_hosts,
    gpu_summary,
    launch_style,
    process_variables,
    with_tuning_model_dir,
)
from smc_tensorflow.hints import with_hints
from smc_tensorflow.saving import is_saveable, save_model, serving_warning


@hookimpl
def register_settings() -> tuple[Setting[Any], ...]:
    """The adapter's settings (see the README)."""
    return SETTINGS


@hookimpl
def claim_switches() -> tuple[str, ...]:
    """The switches this adapter launches."""
    return SWITCHES


@hookimpl(specname="load_environment", wrapper=True)
def tuning_model_dir(base_dir: Any, environ: Mapping[str, str], settings: Any) -> Generator[None, Any, Any]:
    """A hyperparameter tuning job's ``model_dir``: the job name appended to an ``s3://`` one."""
    training_env = yield
    return None if training_env is None else with_tuning_model_dir(training_env)


@hookimpl
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> dict[str, str]:
    """Wait for peer hosts (multi-host jobs), log the GPUs; return ``TF_CONFIG`` and the others."""
    style = launch_style(training_env)
    hosts = cluster_hosts(training_env)
    if style is not LaunchStyle.ONE_PROCESS and len(hosts) > 1:
        wait_for_hosts(hosts)  # bounded by the job's SMC_HOST_WAIT_TIMEOUT
    logger.info("%s", gpu_summary(training_env, training_env.environ))
    variables = process_variables(training_env, style)
    if "TF_CONFIG" in variables:
        logger.info("%s on %s: TF_CONFIG=%s", style.value, training_env.current_host, variables["TF_CONFIG"])
    return variables


@hookimpl
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult | None:
    """Run a multi-host MultiWorkerMirrored or parameter-server job on this host; None otherwise."""
    style = launch_style(training_env, quiet=True)  # prepare_training logged why, where it matters
    if style is LaunchStyle.ONE_PROCESS or len(cluster_hosts(training_env)) == 1:
        return None
    if user_code.kind is EntryKind.FUNCTION:
        if style is LaunchStyle.PARAMETER_SERVER:
            raise ConfigError(
                f"{PARAMETER_SERVER_SWITCH} is on, but function mode runs train() inside smc, where no "
                "parameter server can run beside it: use a script entry point (unset SMC_FUNCTION_MODE)."
            )
        logger.warning(
            "Function mode runs train() inside smc on every host: TF_CONFIG is set, but a failure on one "
            "host does not stop the others (a script entry point gets that)."
        )
        return None
    from smc_tensorflow.launch import run_on_host

    return run_on_host(training_env, user_code, process_env, style)


@hookimpl(specname="invoke_train", wrapper=True)
def save_and_check(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> Generator[None, Any, Any]:
    """Save a returned Keras model or ``tf.Module`` (master host), add failure hints, check the model dir."""
    result = yield
    if result is None:
        return result
    if not result.succeeded:
        return dataclasses.replace(result, failure=with_hints(result.failure))
    if is_saveable(result.model):
        if training_env.is_master:
            save_model(result.model, training_env.model_dir)
        else:
            logger.info(
                "Not the master host: the returned model is saved on %s.", training_env.master_hostname
            )
        result = dataclasses.replace(result, model_handled_by="smc-tensorflow")
    if training_env.is_master:
        warning = serving_warning(training_env.model_dir)
        if warning:
            logger.warning("%s", warning)
    return result
