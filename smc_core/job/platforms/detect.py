"""Which platform runs this job: ``SMC_PLATFORM`` when set, else recognised from the environment.

Order of recognition: SageMaker's job directory (``input/config/hyperparameters.json`` or
``resourceconfig.json`` under the base dir), then Vertex AI's variables (Vertex also sets
``TF_CONFIG``, so it comes before Kubeflow), then Kubeflow's, else SageMaker (the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smc_core.base.settings import PLATFORM, Settings
from smc_core.errors import ConfigError
from smc_core.job.paths import JobPaths

__all__ = [
    "KUBEFLOW_VARIABLES",
    "PLATFORMS",
    "VERTEX_VARIABLES",
    "chosen_platform",
    "detect_platform",
    "kubeflow_variables",
    "require_pinned_variables",
    "sagemaker_job_files",
    "vertex_variables",
]

PLATFORMS = ("sagemaker", "kubeflow", "vertex")
"""The platforms the core reads (``SMC_PLATFORM``'s choices)."""

VERTEX_VARIABLES = (
    "CLUSTER_SPEC",
    "AIP_MODEL_DIR",
    "AIP_CHECKPOINT_DIR",
    "AIP_TENSORBOARD_LOG_DIR",
    "AIP_TRAINING_DATA_URI",
)
"""Any of these (set, non-empty) says Vertex AI."""

KUBEFLOW_VARIABLES = (
    "PET_MASTER_ADDR",
    "PET_NNODES",
    "PET_NODE_RANK",
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
)
"""Any of these says Kubeflow; so do PyTorchJob's ``MASTER_ADDR`` + ``WORLD_SIZE`` + ``RANK`` together,
and a ``TF_CONFIG`` alone (TFJob)."""

_PYTORCHJOB_VARIABLES = ("MASTER_ADDR", "WORLD_SIZE", "RANK")


def _set(environ: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if environ.get(name, "").strip()]


def sagemaker_job_files(base: Path) -> list[Path]:
    """SageMaker's config files present in the job directory ``base``."""
    paths = JobPaths(base)
    return [path for path in (paths.hyperparameters_file, paths.resource_config_file) if path.is_file()]


def vertex_variables(environ: Mapping[str, str]) -> list[str]:
    """The Vertex AI variables set in ``environ``."""
    return _set(environ, VERTEX_VARIABLES)


def kubeflow_variables(environ: Mapping[str, str]) -> list[str]:
    """The Kubeflow variables set in ``environ`` (Trainer v2, PyTorchJob, TFJob)."""
    found = _set(environ, KUBEFLOW_VARIABLES)
    pytorchjob = _set(environ, _PYTORCHJOB_VARIABLES)
    if len(pytorchjob) == len(_PYTORCHJOB_VARIABLES):
        found += pytorchjob
    return found or _set(environ, ("TF_CONFIG",))


def detect_platform(base: Path, environ: Mapping[str, str]) -> tuple[str, str]:
    """The platform recognised from the job directory ``base`` and ``environ``, and why (for the log)."""
    files = sagemaker_job_files(base)
    if files:
        return "sagemaker", f"{files[0]} exists"
    for name, found in (("vertex", vertex_variables(environ)), ("kubeflow", kubeflow_variables(environ))):
        if found:
            return name, f"{', '.join(found)} set"
    return "sagemaker", "no other platform's variables are set (the default)"


def chosen_platform(base: Path, environ: Mapping[str, str], settings: Settings) -> tuple[str, str]:
    """``SMC_PLATFORM`` when set, else :func:`detect_platform`: the platform's name and why."""
    pinned = settings[PLATFORM]
    if pinned:
        return pinned, f"SMC_PLATFORM={pinned}"
    return detect_platform(base, environ)


def require_pinned_variables(platform: str, found: list[str], expected: str) -> None:
    """Raise when ``SMC_PLATFORM`` pins ``platform`` and none of its variables (``found``) is set.

    :param expected: the variables the platform sets, for the message.
    :raises ConfigError: naming the missing variables (exit 2).
    """
    if not found:
        raise ConfigError(
            f"SMC_PLATFORM={platform}, but none of the variables {platform} sets is here: {expected}. "
            f"Run on {platform}, set them as it would, or unset SMC_PLATFORM to recognise the platform."
        )
