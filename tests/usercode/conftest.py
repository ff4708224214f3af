"""Fixtures for the user-code pipeline tests: a scratch interpreter, an offline pip setup, and a package
index on the loopback interface."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import site
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
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


@pytest.fixture
def loopback_index(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """A package index (PEP 503 "simple" pages) served over HTTP on 127.0.0.1, on a port of its own:
    ``loopback_index(wheels)`` serves every wheel in ``wheels`` and returns the index URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(wheels: Path) -> str:
        root = tmp_path / f"index-{len(servers)}"
        projects: dict[str, list[str]] = {}
        for wheel in sorted(wheels.glob("*.whl")):
            projects.setdefault(wheel.name.split("-")[0].replace("_", "-").lower(), []).append(wheel.name)
            (root / "files").mkdir(parents=True, exist_ok=True)
            shutil.copy(wheel, root / "files" / wheel.name)
        for project, files in projects.items():
            page = root / "simple" / project / "index.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            links = "".join(f'<a href="../../files/{name}">{name}</a>\n' for name in files)
            page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
        handler = functools.partial(_QuietHandler, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/simple"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no access log in the test output
        pass
