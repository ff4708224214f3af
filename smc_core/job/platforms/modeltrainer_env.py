"""What the SageMaker SDK v3's own scripts give the user's process, computed for a ModelTrainer job.

On a ModelTrainer layout the user's script was written against the SDK's ``sm_drivers``:
``scripts/environment.py`` exports the variables below (into ``input/sm_training.env``, which
``sm_train.sh`` sources), and the drivers render the hyperparameters as arguments. smc gives the same
names with the same values, beside the classic ones (:func:`smc_core.job.exports.env_vars`):

* :func:`sdk_variables`: ``SM_MODEL_DIR`` ... ``SM_OUTPUT_FAILURE``, ``SM_INPUT_DATA_DIR``,
  ``SM_LOG_LEVEL``, ``SM_MASTER_ADDR``, ``SM_MASTER_PORT``, ``SM_SOURCE_DIR``, ``SM_ENTRY_SCRIPT``,
  ``SM_DISTRIBUTED_DRIVER_DIR``, ``SM_DISTRIBUTED_CONFIG``, ``SM_CHANNEL_<NAME>``, ``SM_CHANNELS``
  (``inputdataconfig.json``'s order), ``SM_HP_<NAME>`` (``-`` written as ``_``), ``SM_HPS`` (every
  hyperparameter), ``SM_CURRENT_HOST``, ``SM_CURRENT_INSTANCE_TYPE``, ``SM_HOSTS`` (sorted),
  ``SM_NETWORK_INTERFACE_NAME``, ``SM_HOST_COUNT``, ``SM_CURRENT_HOST_RANK`` (in the sorted hosts),
  ``SM_NUM_CPUS``, ``SM_NUM_GPUS``, ``SM_NUM_NEURONS``, ``SM_RESOURCE_CONFIG``, ``SM_INPUT_DATA_CONFIG``
  and ``SM_TRAINING_ENV`` (the classic object with the SDK's keys added: ``master_addr``,
  ``master_port``, ``input_data_dir``). Values are written as the SDK writes them
  (:func:`~smc_core.job.platforms.modeltrainer.sdk_serialize`: JSON with ``json.dumps``' spacing).
* :func:`sdk_cli_args`: each hyperparameter as ``--key value`` in ``hyperparameters.json``'s order,
  the value decoded and re-encoded as the drivers do (``"1.50"`` arrives as ``1.5``, ``true`` as
  ``true``), less the keys smc reserves (``sagemaker_program``, ``sagemaker_submit_directory`` ...,
  which a tuning job adds).

Where the SDK's value is a fixed ``/opt/ml`` path, smc's is the same path under the job directory
(``SAGEMAKER_BASE_DIR``); on a tuning job ``SM_SOURCE_DIR`` is where the code really is (the code dir),
not the ``code`` channel that the SDK names although a tuning job has none.
"""

from __future__ import annotations

import json
import os
from typing import Any

from smc_core.job.environment import TrainingEnv
from smc_core.job.hyperparameters import RESERVED_HYPERPARAMETERS
from smc_core.job.platforms.modeltrainer import ModelTrainerJob, sdk_deserialize, sdk_serialize

__all__ = ["SDK_MASTER_PORT", "sdk_cli_args", "sdk_training_env", "sdk_variables"]

SDK_MASTER_PORT = 7777
"""``environment.py``'s ``SM_MASTER_PORT``."""


def _job(training_env: TrainingEnv) -> ModelTrainerJob:
    job = training_env.model_trainer
    if job is None:
        raise ValueError("not a ModelTrainer job: training_env.model_trainer is None")
    return job


def _log_level(training_env: TrainingEnv) -> Any:
    # environment.py: os.environ.get("SM_LOG_LEVEL", 20), the string when the job sets it. After
    # sm_train.sh, SM_LOG_LEVEL is environment.py's own export: what it read is in its SM_TRAINING_ENV.
    environ = training_env.environ
    if _job(training_env).sdk_script_ran:
        try:
            return json.loads(environ["SM_TRAINING_ENV"])["log_level"]
        except (KeyError, TypeError, ValueError):
            pass
    return environ.get("SM_LOG_LEVEL", 20)


def _cpu_count() -> int:
    # environment.py: multiprocessing.cpu_count(), every CPU of the machine
    return os.cpu_count() or 1


def sdk_training_env(training_env: TrainingEnv) -> dict[str, Any]:
    """``environment.py``'s ``SM_TRAINING_ENV`` object for ``training_env``."""
    job = _job(training_env)
    env = training_env
    hosts = sorted(env.hosts)
    return {
        "channel_input_dirs": {name: f"{env.paths.input_data_dir}/{name}" for name in env.input_data_config},
        "current_host": env.current_host,
        "current_instance_type": env.current_instance_type,
        "hosts": hosts,
        "master_addr": env.master_hostname,
        "master_port": env.master_port or SDK_MASTER_PORT,
        "hyperparameters": dict(job.hyperparameters),
        "input_data_config": dict(env.input_data_config),
        "input_config_dir": str(env.input_config_dir),
        "input_data_dir": str(env.paths.input_data_dir),
        "input_dir": str(env.input_dir),
        "job_name": env.job_name,
        "log_level": _log_level(env),
        "model_dir": str(env.model_dir),
        "network_interface_name": env.network_interface_name,
        "num_cpus": _cpu_count(),
        "num_gpus": env.num_gpus,
        "num_neurons": env.num_neurons,
        "output_data_dir": str(env.output_data_dir),
        "resource_config": dict(env.resource_config),
    }


def sdk_variables(training_env: TrainingEnv, classic_training_env: dict[str, Any]) -> dict[str, str]:
    """Every variable ``environment.py`` exports, with its value (see the module docstring).

    :param classic_training_env: the classic ``SM_TRAINING_ENV`` object; ``SM_TRAINING_ENV`` is it
        with the SDK's keys added (the SDK's values win where both have a key).
    """
    job = _job(training_env)
    env = training_env
    paths = env.paths
    hosts = sorted(env.hosts)
    values: dict[str, Any] = {
        "SM_MODEL_DIR": str(env.model_dir),
        "SM_INPUT_DIR": str(paths.input_dir),
        "SM_INPUT_DATA_DIR": str(paths.input_data_dir),
        "SM_INPUT_CONFIG_DIR": str(paths.input_config_dir),
        "SM_OUTPUT_DIR": str(paths.output_dir),
        "SM_OUTPUT_FAILURE": str(paths.failure_file),
        "SM_OUTPUT_DATA_DIR": str(paths.output_data_dir),
        "SM_LOG_LEVEL": _log_level(env),
        "SM_MASTER_ADDR": env.master_hostname,
        "SM_MASTER_PORT": env.master_port or SDK_MASTER_PORT,
    }
    if job.source_code:
        values["SM_SOURCE_DIR"] = str(env.code_dir)
        values["SM_ENTRY_SCRIPT"] = job.source_code.get("entry_script", "")
    if job.distributed:
        values["SM_DISTRIBUTED_DRIVER_DIR"] = str(job.driver_dir)
        values["SM_DISTRIBUTED_CONFIG"] = dict(job.distributed)
    channels = list(env.input_data_config)
    for name in channels:
        values[f"SM_CHANNEL_{name.upper()}"] = f"{paths.input_data_dir}/{name}"
    values["SM_CHANNELS"] = channels
    for key, value in job.hyperparameters.items():
        values[f"SM_HP_{key.replace('-', '_').upper()}"] = value
    values["SM_HPS"] = dict(job.hyperparameters)
    values.update(
        SM_CURRENT_HOST=env.current_host,
        SM_CURRENT_INSTANCE_TYPE=env.current_instance_type,
        SM_HOSTS=hosts,
        SM_NETWORK_INTERFACE_NAME=env.network_interface_name,
        SM_HOST_COUNT=len(hosts),
        SM_CURRENT_HOST_RANK=hosts.index(env.current_host),
        SM_NUM_CPUS=_cpu_count(),
        SM_NUM_GPUS=env.num_gpus,
        SM_NUM_NEURONS=env.num_neurons,
        SM_RESOURCE_CONFIG=dict(env.resource_config),
        SM_INPUT_DATA_CONFIG=dict(env.input_data_config),
        SM_TRAINING_ENV={**classic_training_env, **sdk_training_env(env)},
    )
    return {name: sdk_serialize(value) for name, value in values.items()}


def sdk_cli_args(job: ModelTrainerJob, *, booleans_as_flags: bool = False) -> list[str]:
    """The entry script's arguments as the SDK's drivers render them (``hyperparameters_to_cli_args``):
    ``--key value`` per hyperparameter, in ``hyperparameters.json``'s order, each value decoded once
    more and written as the SDK writes it; the keys smc reserves are left out.

    :param booleans_as_flags: ``SMC_BOOL_FLAGS``: ``True`` as the bare ``--key``, ``False`` left out.
    """
    args: list[str] = []
    for key, value in job.hyperparameters.items():
        if key in RESERVED_HYPERPARAMETERS:
            continue
        value = sdk_deserialize(value)
        if booleans_as_flags and isinstance(value, bool):
            if value:
                args.append(f"--{key}")
            continue
        args += [f"--{key}", sdk_serialize(value)]
    return args
