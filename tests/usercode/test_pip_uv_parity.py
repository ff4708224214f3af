"""pip's configuration means the same to uv as to pip: a differential, through real package indexes.

The same ``requirements.txt`` and the same ``pip.conf`` go through pip and through uv, as
:func:`~smc_core.usercode.install.installer_command` runs each, in a clean environment (no
``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` or other variables that happen to help), against indexes on
127.0.0.1: an HTTPS index whose certificate only a private CA signs (reached through ``cert``), a
plain one as ``extra-index-url`` holding a newer release (pip takes the best version across indexes;
uv alone would stop at the first index that has the package), find-links, a constraint, ``pre``,
``only-binary``, ``no-index``, a proxy, and a timeout. What each installed must be the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from smc_core.errors import ConfigError
from smc_core.usercode.install import find_uv, installer_command
from tests.faults.kit import silent_server
from tests.indexes import Index, Proxy, private_ca, sdist, wheel

pytestmark = pytest.mark.skipif(find_uv() is None, reason="uv is not installed")


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The private HTTPS index, the plain extra index, a find-links dir and the CA, for the module."""
    directory = tmp_path_factory.mktemp("indexes")
    ca, context = private_ca(directory)
    private = Index(
        {
            "smcp-alpha": [wheel("smcp-alpha", "1.0")],
            "smcp-beta": [wheel("smcp-beta", "1.0"), wheel("smcp-beta", "1.5")],
            "smcp-delta": [wheel("smcp-delta", "1.0"), wheel("smcp-delta", "2.0rc1")],
            "smcp-epsilon": [sdist("smcp-epsilon", "1.0")],
        },
        context,
    )
    extra = Index({"smcp-alpha": [wheel("smcp-alpha", "2.0")]})
    links = directory / "links"
    links.mkdir()
    name, data = wheel("smcp-gamma", "1.0")
    (links / name).write_bytes(data)
    try:
        yield {"ca": ca, "private": private, "extra": extra, "links": links}
    finally:
        private.close()
        extra.close()


# --- running both ------------------------------------------------------------------------------------------
def clean_environment(tmp: Path, pip_conf: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Only what a fresh container has: PATH, a HOME of its own, no certificate variables; the test's
    pip.conf loaded last (after /etc/pip.conf, as pip does); caches of the test's own."""
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "xdg").mkdir(exist_ok=True)
    conf = tmp / "pip.conf"
    conf.write_text(pip_conf)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp / "home"),
        "XDG_CONFIG_DIRS": str(tmp / "xdg"),
        "PIP_CONFIG_FILE": str(conf),
        "UV_CACHE_DIR": str(tmp / "uv-cache"),
        "PIP_NO_CACHE_DIR": "1",
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def install(
    tmp: Path, installer: str, requirements: str, environ: Mapping[str, str], timeout: float = 120
) -> tuple[int, set[str], str, float]:
    """Install ``requirements`` with ``installer`` into a target dir of its own: exit code, the
    distributions installed (``name==version``), the output, seconds."""
    target = tmp / f"target-{installer}"
    shutil.rmtree(target, ignore_errors=True)
    (tmp / "requirements.txt").write_text(requirements)
    command, env = installer_command(
        ["--target", str(target), "-r", str(tmp / "requirements.txt")],
        python=sys.executable,
        environ=environ,
        installer=installer,
    )
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
    installed = set()
    if target.is_dir():
        for info in target.glob("*.dist-info"):
            name, version = info.name[: -len(".dist-info")].rsplit("-", 1)
            installed.add(f"{name.replace('_', '-')}=={version}")
    return done.returncode, installed, done.stdout + done.stderr, time.monotonic() - started


def both(
    tmp: Path, requirements: str, environ: Mapping[str, str], timeout: float = 120
) -> tuple[tuple[int, set[str], str, float], tuple[int, set[str], str, float]]:
    """pip's outcome and uv's, for the same requirements and environment."""
    return install(tmp, "pip", requirements, environ, timeout), install(
        tmp, "uv", requirements, environ, timeout
    )


# --- the differential --------------------------------------------------------------------------------------
def test_cert_extra_index_find_links_and_constraint_mean_the_same_to_uv(
    tmp_path: Path, indexes: dict[str, Any]
) -> None:
    (tmp_path / "constraints.txt").write_text("smcp-beta<1.5\n")
    conf = (
        f"[global]\nindex-url = {indexes['private'].url}\ncert = {indexes['ca']}\n"
        f"extra-index-url = {indexes['extra'].url}\nfind-links = {indexes['links']}\n"
        f"[install]\nconstraint = {tmp_path / 'constraints.txt'}\n"
    )
    pip, uv = both(tmp_path, "smcp-alpha\nsmcp-beta\nsmcp-gamma\n", clean_environment(tmp_path, conf))
    expected = {"smcp-alpha==2.0", "smcp-beta==1.0", "smcp-gamma==1.0"}
    assert pip[0] == 0 and pip[1] == expected, pip[2]
    assert uv[0] == 0 and uv[1] == expected, uv[2]


def test_pre_only_binary_and_no_index_mean_the_same_to_uv(tmp_path: Path, indexes: dict[str, Any]) -> None:
    base = f"[global]\nindex-url = {indexes['private'].url}\ncert = {indexes['ca']}\n"
    environ = clean_environment(tmp_path, base + "[install]\npre = true\n")
    pip, uv = both(tmp_path, "smcp-delta\n", environ)
    assert pip[:2] == (0, {"smcp-delta==2.0rc1"}), pip[2]
    assert uv[:2] == pip[:2], uv[2]

    environ = clean_environment(tmp_path, base + "only-binary = :all:\n")
    pip, uv = both(tmp_path, "smcp-epsilon\n", environ)
    assert pip[0] != 0 and uv[0] != 0, (pip[2], uv[2])
    assert not pip[1] and not uv[1]

    seen = len(indexes["private"].requests)
    environ = clean_environment(
        tmp_path, base, {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(indexes["links"])}
    )
    pip, uv = both(tmp_path, "smcp-gamma\n", environ)
    assert pip[:2] == (0, {"smcp-gamma==1.0"}) and uv[:2] == pip[:2], (pip[2], uv[2])
    assert len(indexes["private"].requests) == seen, "no-index: neither asked the index"


def test_a_proxy_and_a_timeout_mean_the_same_to_uv(tmp_path: Path, indexes: dict[str, Any]) -> None:
    proxy = Proxy()
    try:
        conf = (
            f"[global]\nindex-url = {indexes['private'].url}\ncert = {indexes['ca']}\nproxy = {proxy.url}\n"
        )
        environ = clean_environment(tmp_path, conf, {"NO_PROXY": "", "no_proxy": ""})
        pip = install(tmp_path, "pip", "smcp-alpha\n", environ)
        through_pip = len(proxy.requests)
        uv = install(tmp_path, "uv", "smcp-alpha\n", environ)
        through_uv = len(proxy.requests) - through_pip
    finally:
        proxy.close()
    assert pip[:2] == (0, {"smcp-alpha==1.0"}) and uv[:2] == pip[:2], (pip[2], uv[2])
    assert through_pip > 0 and through_uv > 0, (through_pip, through_uv, proxy.requests)

    with silent_server() as url:
        conf = f"[global]\nindex-url = {url}/simple\ntimeout = 2\nretries = 0\n"
        pip, uv = both(tmp_path, "smcp-alpha\n", clean_environment(tmp_path, conf), timeout=90)
    assert pip[0] != 0 and uv[0] != 0, (pip[2], uv[2])
    assert pip[3] < 30 and uv[3] < 30, (pip[3], uv[3], uv[2])


def test_an_option_uv_cannot_honour_installs_with_pip_and_says_which(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = clean_environment(tmp_path, "[install]\nprefer-binary = true\n")
    with caplog.at_level("INFO", logger="smc"):
        command, _ = installer_command(["-r", "requirements.txt"], python=sys.executable, environ=environ)
    assert command[1:4] == ["-m", "pip", "install"]
    assert "prefer-binary" in caplog.text and str(tmp_path / "pip.conf") in caplog.text
    with pytest.raises(ConfigError, match="prefer-binary"):
        installer_command(["x"], python=sys.executable, environ=environ, installer="uv")
