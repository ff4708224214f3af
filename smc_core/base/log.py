"""smc's logger (``smc``) and how its lines are written: ``smc INFO: message`` on stderr."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging", "logger"]

logger = logging.getLogger("smc")
"""smc's logger (``logging.getLogger("smc")``): plugins and adapters log through it, so that their
lines carry smc's format and the job's level (``sagemaker_container_log_level``) and reach the job's
log beside smc's own."""


def configure_logging(level: int = logging.INFO) -> None:
    """Send smc's log lines to stderr as ``smc INFO: message`` (idempotent)."""
    if not any(getattr(h, "_smc", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("smc %(levelname)s: %(message)s"))
        handler._smc = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
