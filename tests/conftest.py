"""Fixtures for smc's own tests: really installed fixture distributions."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import pip_install_target

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def recorder_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where pip installed the fixture distribution ``smc-recorder`` 1.2.3."""
    target = tmp_path_factory.mktemp("recorder")
    return pip_install_target(ROOT / "tests" / "fixtures" / "smc-recorder", target)


PROCESS_TAG = "PYTEST_SMC_PROCESS_TAG"  # not SM_/SMC_: the helpers that clean the environment keep it
"""Set in this process's environment for the length of each test: every process the test starts
inherits it, wherever it ends up (in its own session, re-parented to PID 1)."""


def _tagged(tag: str) -> list[object]:
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            mine = proc.pid != os.getpid() and proc.environ().get(PROCESS_TAG) == tag
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(autouse=True)
def no_process_left_running() -> Iterator[None]:
    """After every test, no process the test started may still run (checked for 5 s, then killed)."""
    tag = uuid.uuid4().hex
    previous = os.environ.get(PROCESS_TAG)
    os.environ[PROCESS_TAG] = tag
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROCESS_TAG, None)
        else:
            os.environ[PROCESS_TAG] = previous
    deadline = time.monotonic() + 5
    left = _tagged(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _tagged(tag)
    if left:
        described = []
        for proc in left:
            try:
                described.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")  # type: ignore[attr-defined]
                proc.kill()  # type: ignore[attr-defined]
            except Exception:
                described.append(f"pid {proc.pid}")  # type: ignore[attr-defined]
        pytest.fail("processes left running by the test (now killed):\n" + "\n".join(described))
