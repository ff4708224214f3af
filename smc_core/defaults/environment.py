"""Default ``load_environment``: the SageMaker job directory as the container contract lays it out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smc_core import hookimpl
from smc_core.environment import TrainingEnv, create_environment


@hookimpl(trylast=True)
def load_environment(base_dir: Path, environ: Mapping[str, str]) -> TrainingEnv:
    """Read ``base_dir/input/config`` and ``environ`` with :func:`create_environment`."""
    return create_environment(base_dir, environ)
