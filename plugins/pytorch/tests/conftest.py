"""The PyTorch adapter's tests: every job runs through ``smc_job`` with the adapter pinned.

Scripts shared by several tests live in ``pytorch_helpers`` beside this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def smc_adapter() -> str:
    """``smc_job`` pins this adapter (``SMC_ADAPTER=pytorch``)."""
    return "pytorch"
