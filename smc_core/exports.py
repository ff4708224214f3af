"""What the user's processes see: SM_* environment variables and command-line arguments."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core.environment import TrainingEnv


def training_env_dict(training_env: TrainingEnv) -> dict[str, Any]:
    """The ``SM_TRAINING_ENV`` object: every key of the contract, JSON-ready."""
    return {
        "channel_input_dirs": {k: str(v) for k, v in training_env.channel_input_dirs.items()},
        "current_host": training_env.current_host,
        "hosts": list(training_env.hosts),
        "hyperparameters": dict(training_env.hyperparameters),
        "model_dir": str(training_env.model_dir),
        "output_data_dir": str(training_env.output_data_dir),
        "user_entry_point": training_env.user_entry_point,
    }


def encode_value(value: Any) -> str:
    """A value as an environment variable holds it: str raw, None empty, else compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def env_vars(training_env: TrainingEnv) -> dict[str, str]:
    """Every ``SM_*`` variable for ``training_env``."""
    out = {f"SM_{k.upper()}": encode_value(v) for k, v in training_env_dict(training_env).items()}
    out["SM_TRAINING_ENV"] = json.dumps(training_env_dict(training_env), sort_keys=True)
    return out


def cmd_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """The entry point's arguments: ``--key value`` for each hyperparameter, sorted by key."""
    return [item for k, v in sorted(hyperparameters.items()) for item in (f"--{k}", str(v))]


def user_args(training_env: TrainingEnv) -> list[str]:
    """The arguments the entry point gets for ``training_env`` (``SM_USER_ARGS``)."""
    return cmd_args(training_env.hyperparameters)
