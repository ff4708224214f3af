"""The Keras adapter's tests: every job runs through ``smc_job`` with the adapter pinned.

Scripts shared by several tests live in ``keras_helpers`` beside this file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from keras_helpers import QUIET


@pytest.fixture
def smc_adapter() -> str:
    """``smc_job`` pins this adapter (``SMC_ADAPTER=keras``)."""
    return "keras"


@pytest.fixture(autouse=True)
def quiet_jobs_without_stale_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs inherit this process's environment (less ``SM_*``/``SMC_*``/``SAGEMAKER_*``): drop its
    ``KERAS_*`` and ``TF_*`` variables too, so that the backend a job runs on is the one the test
    chooses, and keep the frameworks quiet and on one thread (``QUIET``)."""
    for name in list(os.environ):
        if name.startswith(("KERAS_", "TF_")):
            monkeypatch.delenv(name)
    for name, value in QUIET.items():
        monkeypatch.setenv(name, value)
