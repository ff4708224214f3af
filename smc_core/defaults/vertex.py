"""Default ``load_environment`` for Vertex AI custom training jobs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.base.settings import PLATFORM, Settings
from smc_core.job.environment import TrainingEnv, create_environment
from smc_core.job.platforms.detect import chosen_platform, require_pinned_variables, vertex_variables
from smc_core.job.platforms.vertex import vertex_facts


@hookimpl(trylast=True)
def load_environment(base_dir: Path, environ: Mapping[str, str], settings: Settings) -> TrainingEnv | None:
    """On Vertex AI (``SMC_PLATFORM=vertex``, or its variables set): the replica's variables as a
    :class:`TrainingEnv`: :func:`~smc_core.job.platforms.vertex.vertex_facts`'s record, read by
    :func:`~smc_core.job.environment.create_environment`; None elsewhere.
    """
    platform, reason = chosen_platform(base_dir, environ, settings)
    if platform != "vertex":
        return None
    if settings[PLATFORM]:
        require_pinned_variables("vertex", vertex_variables(environ), "CLUSTER_SPEC, AIP_MODEL_DIR ...")
    logger.info("Platform: Vertex AI (%s).", reason)
    facts = vertex_facts(base_dir, environ, settings)
    return create_environment(base_dir, environ, settings=settings, platform=facts)
