"""Fixtures for the user-code pipeline tests: a scratch interpreter and an offline pip setup."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def scratch_python(tmp_path: Path) -> str:
    """A throwaway virtual environment that sees this one's packages (smc, pip) but installs into its
    own site-packages: installing user requirements there leaves the test venv untouched."""
    venv = tmp_path / "scratch-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    (Path(purelib) / "zz_outer.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in outer)
    )
    return str(python)


@pytest.fixture
def offline_pip_env(tmp_path: Path) -> Callable[[Path], dict[str, str]]:
    """Environment variables making pip and uv install only from ``wheels`` (no index, no pip.conf)."""

    def make(wheels: Path) -> dict[str, str]:
        return {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(wheels),
            "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
            "UV_NO_CONFIG": "1",
        }

    return make
