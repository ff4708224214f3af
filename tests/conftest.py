"""Fixtures for smc's own tests: really installed fixture distributions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import outside_env, pip_install_target

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def recorder_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where pip installed the fixture distribution ``smc-recorder`` 1.2.3."""
    target = tmp_path_factory.mktemp("recorder")
    return pip_install_target(ROOT / "tests" / "fixtures" / "smc-recorder", target)


# --- smc from its wheels, in a fresh virtualenv outside the repository (built once per session) -----


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """smc-core's and smc-pytorch's wheels, ``{"smc-core": path, "smc-pytorch": path}``, built once from
    a copy of the checkout (what git tracks or would track): nothing left in a build folder here
    reaches them."""
    source = tmp_path_factory.mktemp("smc-source")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheels")
    pip_wheel = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(out),
    ]
    subprocess.run(
        [*pip_wheel, str(source), str(source / "plugins" / "pytorch")],
        check=True,
        capture_output=True,
        timeout=280,
    )
    return {path.name.split("-")[0].replace("_", "-"): path for path in out.glob("*.whl")}


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Path:
    """A new virtualenv (this Python, pip seeded) with smc-core's wheel and ``docs/requirements.txt``.

    uv fills it (smc-core brings uv), as pip would, only faster; what the guides install, pip does.
    """
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    uv = Path(sys.executable).with_name("uv")
    python = venv / "bin" / "python"
    subprocess.run([str(uv), "venv", "-q", "--seed", "--python", sys.executable, str(venv)], check=True)
    requirements = ["-r", str(ROOT / "docs" / "requirements.txt"), "setuptools>=77", "wheel"]
    # setuptools too: the guides' `pip install` of a package builds it here, not in an isolated env
    # fetched anew each time (outside_env turns build isolation off), as a warm developer's pip would.
    subprocess.run(
        [str(uv), "pip", "install", "-q", "--python", str(python), str(wheels["smc-core"]), *requirements],
        check=True,
        timeout=280,
    )
    return venv


@pytest.fixture(scope="session")
def built_docs(tmp_path_factory: pytest.TempPathFactory, fresh_venv: Path, wheels: dict[str, Path]) -> Path:
    """The HTML docs, built as a reader outside the repository builds them: ``sphinx-build -W`` from
    the fresh virtualenv, run in a folder of its own, with smc-pytorch installed beside (its settings
    belong in the reference; a folder on ``PYTHONPATH`` keeps it out of the venv the guides use)."""
    work = tmp_path_factory.mktemp("docs")
    env = outside_env(fresh_venv)
    pip = [str(fresh_venv / "bin" / "pip"), "install", "-q", "--no-deps", "--target", str(work / "site")]
    subprocess.run([*pip, str(wheels["smc-pytorch"])], env=env, check=True, capture_output=True)
    env["PYTHONPATH"] = str(work / "site")
    out = work / "html"
    sphinx = [
        str(fresh_venv / "bin" / "sphinx-build"),
        "-W",
        "-q",
        "-b",
        "html",
        str(ROOT / "docs"),
        str(out),
    ]
    proc = subprocess.run(sphinx, cwd=work, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


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
