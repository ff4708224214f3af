"""What the user's processes see: ``SM_*`` environment variables and command-line arguments.

Everything here renders a :class:`~smc_core.job.environment.TrainingEnv` exactly as the container
contract describes (and as SageMaker's framework containers do):

* :func:`env_vars`: every ``SM_*`` variable. Names are ``SM_`` + the key upper-cased, hyphens and
  dots kept (``SM_HP_LEARNING-RATE``); values by :func:`encode_value`: a str as is, None as empty,
  anything else as compact JSON with sorted keys and non-ASCII characters ``\\u``-escaped.
  smc adds ``SM_MASTER_ADDR``, ``SM_HOST_COUNT`` and ``SM_CURRENT_HOST_RANK``. On a SageMaker SDK v3
  ``ModelTrainer`` layout, every variable of the SDK's ``environment.py`` is added with its value
  (:mod:`smc_core.job.platforms.modeltrainer_env`), replacing the classic value of the same name.
* :func:`exported_vars`: what the default ``prepare_training`` exports: :func:`env_vars` plus
  ``CURRENT_HOST``, ``SAGEMAKER_JOB_NAME``, ``SAGEMAKER_REGION``, ``PYTHONPATH`` (the code dir first,
  then the inherited path) and ``PYTHONUNBUFFERED=1`` unless the environment already sets it.
* :func:`cmd_args` / :func:`user_args`: the entry point's arguments: user hyperparameters sorted by
  key, ``--key value`` (``-k value`` for one-letter keys), values rendered with Python ``str()``
  (dicts as ``k=v,k2=v2``, None as empty), each argument one argv item.

Booleans as bare flags (opt-in)
-------------------------------
Scripts that declare ``parser.add_argument("--use-amp", action="store_true")`` cannot take the
contract's ``--use-amp True``. Set ``SMC_BOOL_FLAGS=1`` in the job's environment (the estimator's
``environment=`` argument, or the image) and a ``True`` hyperparameter becomes the bare argument
``--use-amp`` while a ``False`` one is left out. Every other value renders as the contract says, and
``SM_USER_ARGS`` shows the arguments actually given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from smc_core.errors import ConfigError
from smc_core.job.environment import TrainingEnv, module_name

__all__ = [
    "TRAINING_ENV_KEYS",
    "cmd_args",
    "encode_value",
    "env_vars",
    "exported_vars",
    "python_path",
    "render_arg",
    "training_env_dict",
    "user_args",
]

TRAINING_ENV_KEYS = (
    "additional_framework_parameters",
    "channel_input_dirs",
    "current_host",
    "current_instance_group",
    "current_instance_group_hosts",
    "current_instance_type",
    "distribution_hosts",
    "distribution_instance_groups",
    "framework_module",
    "hosts",
    "hyperparameters",
    "input_config_dir",
    "input_data_config",
    "input_dir",
    "instance_groups",
    "instance_groups_dict",
    "is_hetero",
    "is_master",
    "is_modelparallel_enabled",
    "job_name",
    "log_level",
    "master_hostname",
    "model_dir",
    "module_dir",
    "module_name",
    "network_interface_name",
    "num_cpus",
    "num_gpus",
    "num_neurons",
    "output_data_dir",
    "output_dir",
    "output_intermediate_dir",
    "resource_config",
    "user_entry_point",
)
"""The keys of ``SM_TRAINING_ENV``, as the contract lists them (:func:`training_env_dict` adds
``is_smddprun_installed``, ``is_smddpmprun_installed`` and ``topology``, as sagemaker-training 5.x does,
and smc's ``checkpoint_dir``)."""


class FetchedCode(Protocol):
    """What the renderers read of the fetched code: its entry point. The
    :class:`~smc_core.usercode.describe.UserCode` that ``fetch_user_code`` returns is one; it is
    described a layer above the job's, so this module names only what it reads."""

    @property
    def entry_point(self) -> str | None:
        """The entry point as given (``train.py``), or None when the job names none."""


def _entry_point(training_env: TrainingEnv, user_code: FetchedCode | None) -> str | None:
    if user_code is not None and user_code.entry_point:
        return user_code.entry_point
    return training_env.user_entry_point


def training_env_dict(training_env: TrainingEnv, user_code: FetchedCode | None = None) -> dict[str, Any]:
    """The ``SM_TRAINING_ENV`` object: every key of the contract, JSON-ready.

    :param user_code: the fetched code, when known: its entry point wins over the job's.
    """
    env = training_env
    entry_point = _entry_point(env, user_code)
    return {
        "additional_framework_parameters": dict(env.additional_framework_parameters),
        "channel_input_dirs": {k: str(v) for k, v in env.channel_input_dirs.items()},
        "current_host": env.current_host,
        "current_instance_group": env.current_instance_group,
        "current_instance_group_hosts": list(env.current_instance_group_hosts),
        "current_instance_type": env.current_instance_type,
        "distribution_hosts": list(env.distribution_hosts),
        "distribution_instance_groups": list(env.distribution_instance_groups),
        "framework_module": env.framework_module,
        "hosts": list(env.hosts),
        "hyperparameters": dict(env.hyperparameters),
        "input_config_dir": str(env.input_config_dir),
        "input_data_config": dict(env.input_data_config),
        "input_dir": str(env.input_dir),
        "instance_groups": list(env.instance_groups),
        "instance_groups_dict": dict(env.instance_groups_dict),
        "is_hetero": env.is_hetero,
        "is_master": env.is_master,
        "is_modelparallel_enabled": env.is_modelparallel_enabled,
        "job_name": env.job_name,
        "log_level": env.log_level,
        "master_hostname": env.master_hostname,
        "model_dir": str(env.model_dir),
        "module_dir": env.module_dir or str(env.code_dir),
        "module_name": module_name(entry_point),
        "network_interface_name": env.network_interface_name,
        "num_cpus": env.num_cpus,
        "num_gpus": env.num_gpus,
        "num_neurons": env.num_neurons,
        "output_data_dir": str(env.output_data_dir),
        "output_dir": str(env.output_dir),
        "output_intermediate_dir": str(env.output_intermediate_dir),
        "resource_config": dict(env.resource_config),
        "user_entry_point": entry_point,
        # keys sagemaker-training 5.x adds beyond the contract's list
        "is_smddpmprun_installed": env.is_smddpmprun_installed,
        "is_smddprun_installed": env.is_smddprun_installed,
        "topology": env.topology,
        # smc's addition: checkpointconfig.json's LocalPath (or the default), for resuming jobs
        "checkpoint_dir": str(env.checkpoint_dir),
    }


def encode_value(value: Any) -> str:
    """A value as an environment variable holds it: str raw, None empty, else compact JSON.

    ``encode_value([64, 32]) == "[64,32]"``, ``encode_value(True) == "true"``,
    ``encode_value({"b": 1, "a": "é"}) == '{"a":"\\\\u00e9","b":1}'``.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def env_vars(training_env: TrainingEnv, user_code: FetchedCode | None = None) -> dict[str, str]:
    """Every ``SM_*`` variable for ``training_env`` (see the module docstring for the encoding).

    :param user_code: the fetched code, when known: ``SM_USER_ENTRY_POINT`` and ``SM_MODULE_NAME``
        follow its entry point.
    """
    env = training_env
    document = training_env_dict(env, user_code)
    values: dict[str, Any] = {
        "hosts": document["hosts"],
        "network_interface_name": env.network_interface_name,
        "hps": document["hyperparameters"],
        "user_entry_point": document["user_entry_point"],
        "framework_params": document["additional_framework_parameters"],
        "resource_config": document["resource_config"],
        "input_data_config": document["input_data_config"],
        "output_data_dir": document["output_data_dir"],
        "channels": sorted(env.channel_input_dirs),
        "current_host": env.current_host,
        "current_instance_type": env.current_instance_type,
        "current_instance_group": env.current_instance_group,
        "current_instance_group_hosts": document["current_instance_group_hosts"],
        "instance_groups": document["instance_groups"],
        "instance_groups_dict": document["instance_groups_dict"],
        "distribution_instance_groups": document["distribution_instance_groups"],
        "is_hetero": env.is_hetero,
        "module_name": document["module_name"],
        "log_level": env.log_level,
        "framework_module": env.framework_module,
        "input_dir": document["input_dir"],
        "input_config_dir": document["input_config_dir"],
        "output_dir": document["output_dir"],
        "num_cpus": env.num_cpus,
        "num_gpus": env.num_gpus,
        "num_neurons": env.num_neurons,
        "model_dir": document["model_dir"],
        "module_dir": document["module_dir"],
        "training_env": document,
        "user_args": user_args(env),
        "output_intermediate_dir": document["output_intermediate_dir"],
        # smc's additions, names other platforms use
        "master_addr": env.master_hostname,
        "host_count": env.host_count,
        "current_host_rank": env.current_host_rank,
        "checkpoint_dir": str(env.checkpoint_dir),
    }
    if "topology" in env.resource_config:  # as the reference, for GB200 UltraServers
        values["topology"] = env.resource_config["topology"]
    for name, path in env.channel_input_dirs.items():
        values[f"channel_{name}"] = str(path)
    for key, value in env.hyperparameters.items():
        values[f"hp_{key}"] = value
    out = {f"SM_{key.upper()}": encode_value(value) for key, value in values.items()}
    if env.model_trainer is not None:  # what the SDK's environment.py gives, by its names and values
        from smc_core.job.platforms.modeltrainer_env import sdk_variables

        out.update(sdk_variables(env, document))
    for name, value in out.items():
        if "\0" in value:
            raise ConfigError(
                f"{name}: the value holds a NUL byte, which no environment variable can carry "
                f"({value[:80]!r}). Remove it from the hyperparameter or config value."
            )
    return out


def python_path(training_env: TrainingEnv) -> str:
    """``PYTHONPATH`` for the user's process: the code dir first, then the inherited entries."""
    code_dir = str(training_env.code_dir)
    inherited = training_env.environ.get("PYTHONPATH", "")
    rest = [p for p in inherited.split(os.pathsep) if p and p != code_dir]
    return os.pathsep.join([code_dir, *rest])


def exported_vars(training_env: TrainingEnv, user_code: FetchedCode | None = None) -> dict[str, str]:
    """Every variable the user's process gets from smc: :func:`env_vars` plus the process-wide ones.

    ``CURRENT_HOST``, ``SAGEMAKER_JOB_NAME``, ``SAGEMAKER_REGION``, ``PYTHONPATH`` (see
    :func:`python_path`) and ``PYTHONUNBUFFERED=1`` unless ``training_env.environ`` sets it.
    """
    out = env_vars(training_env, user_code)
    out["CURRENT_HOST"] = training_env.current_host
    out["SAGEMAKER_JOB_NAME"] = training_env.job_name or ""
    out["SAGEMAKER_REGION"] = training_env.region or ""
    out["PYTHONPATH"] = python_path(training_env)
    if "PYTHONUNBUFFERED" not in training_env.environ:
        out["PYTHONUNBUFFERED"] = "1"
    return out


def render_arg(value: Any) -> str:
    """One argument value: Python ``str()``; a dict as ``k=v,k2=v2`` (sorted keys); None as empty."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def cmd_args(hyperparameters: Mapping[str, Any], *, booleans_as_flags: bool = False) -> list[str]:
    """The entry point's arguments: ``--key value`` (``-k value``) per hyperparameter, sorted by key.

    :param booleans_as_flags: render True as the bare ``--key`` and leave False out (for argparse
        ``store_true`` options); off by default, as the contract says.
    """
    args: list[str] = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        name = (f"--{key}" if len(key) > 1 else f"-{key}") if key else ""
        if booleans_as_flags and isinstance(value, bool):
            if value:
                args.append(name)
            continue
        args += [name, render_arg(value)]
    return args


def user_args(training_env: TrainingEnv) -> list[str]:
    """The arguments the entry point gets for ``training_env`` (``SM_USER_ARGS``).

    Booleans become bare flags when ``training_env.booleans_as_flags`` (``SMC_BOOL_FLAGS=1``). Off
    SageMaker, the container's own arguments (``train --epochs 3``) are passed on as they were given.
    On a ModelTrainer layout the hyperparameters are rendered as the SDK's drivers render them
    (:func:`~smc_core.job.platforms.modeltrainer_env.sdk_cli_args`).
    """
    if training_env.script_args is not None:
        return list(training_env.script_args)
    if training_env.model_trainer is not None:
        from smc_core.job.platforms.modeltrainer_env import sdk_cli_args

        return sdk_cli_args(training_env.model_trainer, booleans_as_flags=training_env.booleans_as_flags)
    return cmd_args(training_env.hyperparameters, booleans_as_flags=training_env.booleans_as_flags)
