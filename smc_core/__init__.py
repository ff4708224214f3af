"""smc: the toolkit that runs inside machine-learning training containers.

Plugin authors need two names from here: :data:`hookimpl`, the marker for hook implementations,
and the hook contract in :mod:`smc_core.hookspecs`.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("smc")
"""Marks a function as an smc hook implementation: ``@hookimpl`` above ``def prepare_training(...)``."""

__all__ = ["__version__", "hookimpl"]
