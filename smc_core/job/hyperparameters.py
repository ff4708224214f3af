"""Hyperparameters: reading ``hyperparameters.json``, decoding each value, and splitting off the
keys the toolkit reserves and the framework parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from smc_core.base.messages import quoted
from smc_core.errors import ConfigError
from smc_core.job.config import load_object
from smc_core.job.paths import job_paths

__all__ = [
    "DISTRIBUTION_SWITCHES",
    "FALSE_WORDS",
    "RESERVED_HYPERPARAMETERS",
    "SAGEMAKER_PREFIX",
    "TRUE_WORDS",
    "SplitHyperparameters",
    "count_parameter",
    "decode_hyperparameters",
    "is_true",
    "load_hyperparameters",
    "split_hyperparameters",
]

SAGEMAKER_PREFIX = "sagemaker_"

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
"""How a switch given as a string (an environment variable, a bare hyperparameter) says "on"."""
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})
"""How a switch given as a string says "off"."""


def is_true(value: Any) -> bool:
    """Whether a switch is on: a string in :data:`TRUE_WORDS` (any case), a mapping whose
    ``enabled`` is on (``{"enabled": true}``, as the SDK's ``distribution=`` sends some switches),
    else the value's truth."""
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    if isinstance(value, Mapping):
        return is_true(value.get("enabled", False))
    return bool(value)


RESERVED_HYPERPARAMETERS = frozenset(
    {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_region",
        "sagemaker_container_log_level",
        "sagemaker_job_name",
        "sagemaker_enable_cloudwatch_metrics",
        "sagemaker_s3_output",
        "default_user_module_name",
        "_tuning_objective_metric",
    }
)
"""Hyperparameters the toolkit consumes: never passed to the user's script, never framework parameters."""

DISTRIBUTION_SWITCHES = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)
"""Framework parameters that make the current instance group a distribution group by default."""


def count_parameter(
    framework: Mapping[str, Any], key: str, where: Path | str = "hyperparameters.json"
) -> int | None:
    """The framework parameter ``key`` (``sagemaker_mpi_num_of_processes_per_host`` ...) as a whole
    number >= 1; None when it is absent or empty.

    :raises ConfigError: any other value, naming ``where`` (the file), the key and the value.
    """
    value = framework.get(key)
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(
            f"{where}: {key!r} is {quoted(value)}, which is not a whole number >= 1: give e.g. 2, or "
            "leave it out."
        )
    return number


def decode_hyperparameters(raw: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-decode each value, as the SDK encoded it; a value that is not JSON is kept as it is.

    ``{"epochs": "10", "name": "\\"resnet\\"", "note": "plain"}`` gives
    ``{"epochs": 10, "name": "resnet", "note": "plain"}``.
    """
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # other clients send bare strings: keep the raw string
        decoded[key] = value
    return decoded


def load_hyperparameters(base: Path | str | None = None) -> dict[str, Any]:
    """Every hyperparameter of the job, each JSON-decoded, reserved ``sagemaker_*`` keys included.

    A missing ``hyperparameters.json`` means no hyperparameters. Use :func:`split_hyperparameters`
    to separate the user's hyperparameters from the reserved and framework keys.

    :param base: the job directory (default: ``$SAGEMAKER_BASE_DIR`` or ``/opt/ml``).
    :raises ConfigError: malformed JSON, a file that is not an object, a key that cannot be an
        environment variable name.
    """
    path = job_paths(base).hyperparameters_file
    raw = load_object(path, {}, '{"epochs": "10"}')
    for key in raw:
        if "=" in key or "\0" in key:
            raise ConfigError(
                f"{path}: the hyperparameter name {key!r} contains {'=' if '=' in key else 'a NUL byte'}, "
                "which no environment variable name may hold (SM_HP_<NAME>). Rename it."
            )
    return decode_hyperparameters(raw)


class SplitHyperparameters(NamedTuple):
    """Hyperparameters sorted into the user's, the reserved ones, and the framework parameters."""

    user: dict[str, Any]
    """Passed to the entry point as arguments and ``SM_HP_*``."""
    reserved: dict[str, Any]
    """:data:`RESERVED_HYPERPARAMETERS` present in the job (program, submit directory, region ...)."""
    framework: dict[str, Any]
    """Every other ``sagemaker_*`` key (``SM_FRAMEWORK_PARAMS``): distribution switches and the like."""


def split_hyperparameters(hyperparameters: Mapping[str, Any]) -> SplitHyperparameters:
    """Split decoded hyperparameters into user, reserved and framework keys (see the contract)."""
    user: dict[str, Any] = {}
    reserved: dict[str, Any] = {}
    framework: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        if key in RESERVED_HYPERPARAMETERS:
            reserved[key] = value
        elif key.startswith(SAGEMAKER_PREFIX):
            framework[key] = value
        else:
            user[key] = value
    return SplitHyperparameters(user, reserved, framework)
