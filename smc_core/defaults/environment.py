"""Default ``load_environment``: the SageMaker job directory as the container contract lays it out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core import hookimpl
from smc_core.host.settings import CORE_SETTINGS, Setting, Settings
from smc_core.job.environment import TrainingEnv, create_environment


@hookimpl
def register_settings() -> tuple[Setting[Any], ...]:
    """The core's own settings (:data:`smc_core.host.settings.CORE_SETTINGS`)."""
    return CORE_SETTINGS


@hookimpl(trylast=True)
def load_environment(base_dir: Path, environ: Mapping[str, str], settings: Settings) -> TrainingEnv:
    """Read ``base_dir/input/config`` and ``environ`` with :func:`create_environment`.

    Hyperparameters JSON-decoded with reserved keys split off, hosts and instance groups checked,
    channel directories checked, CPUs (affinity, cgroup quota), GPUs (``nvidia-smi``) and Neuron
    cores counted. Bad input raises :class:`~smc_core.errors.ConfigError`.
    """
    return create_environment(base_dir, environ, settings=settings)
