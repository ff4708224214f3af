"""The TensorFlow adapter's tests: every job runs through ``smc_job`` with the adapter pinned.

Scripts shared by several tests live in ``tensorflow_helpers`` beside this file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def smc_adapter() -> str:
    """``smc_job`` pins this adapter (``SMC_ADAPTER=tensorflow``)."""
    return "tensorflow"


@pytest.fixture(autouse=True)
def no_stale_tensorflow_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs inherit this process's environment (less ``SM_*``/``SMC_*``/``SAGEMAKER_*``): drop its
    ``TF_*`` variables too, so that what the adapter sets (``TF_CONFIG``, ``TF_CPP_MIN_LOG_LEVEL``) is
    what a job sees, unless the test gives its own."""
    for name in list(os.environ):
        if name.startswith("TF_"):
            monkeypatch.delenv(name)
