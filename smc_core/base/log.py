"""smc's logger (``smc``) and how its lines are written: ``smc INFO: message`` on stderr, every line
(its traceback included) with secrets redacted (:func:`smc_core.base.redact.redact`)."""

from __future__ import annotations

import logging
import sys

from smc_core.base.redact import redact

__all__ = ["configure_logging", "logger"]

logger = logging.getLogger("smc")
"""smc's logger (``logging.getLogger("smc")``): plugins and adapters log through it, so that their
lines carry smc's format and the job's level (``sagemaker_container_log_level``) and reach the job's
log beside smc's own."""


class RedactingFormatter(logging.Formatter):
    """A formatter whose every line goes through :func:`~smc_core.base.redact.redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    """Send smc's log lines to stderr as ``smc INFO: message``, secrets redacted (idempotent)."""
    if not any(getattr(h, "_smc", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter("smc %(levelname)s: %(message)s"))
        handler._smc = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
