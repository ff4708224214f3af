"""Fixtures for smc's own tests: really installed fixture distributions."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import pip_install_target

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def recorder_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where pip installed the fixture distribution ``smc-recorder`` 1.2.3."""
    target = tmp_path_factory.mktemp("recorder")
    return pip_install_target(ROOT / "tests" / "fixtures" / "smc-recorder", target)
