# ruff: noqa: E501
"""Helpers for smc's own tests (not shipped): fake distributions, pip installs, archives, tiny wheels
and packages, and running ``train``/``smc`` with the project's own conventions.

Plugin and adapter authors use :mod:`smc_core.testing` (the ``smc_job`` fixture) instead.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SMC_ENV_PREFIXES = ("SM_", "SMC_", "SAGEMAKER_")
"""Variables dropped from the parent environment by :func:`run_smc`, so tests start clean."""


def pip_install_target(source: Path, target: Path) -> Path:
    """Really install the distribution at ``source`` into ``target`` (a directory for PYTHONPATH).

    pip writes the distribution's ``dist-info`` there, so importlib.metadata finds its entry points.
    """
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    return target


def write_fake_dist(
    site: Path,
    name: str,
    version: str,
    entry_points: Mapping[str, Mapping[str, str]],
    modules: Mapping[str, str] | None = None,
) -> Path:
    """Write a distribution as bare ``dist-info`` metadata in ``site`` (as conda's tests do).

    :param entry_points: ``{group: {name: "module:attr"}}``.
    :param modules: ``{module name: source}`` written as ``site/<module>.py``.
    :return: ``site``, to put on PYTHONPATH.
    """
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines: list[str] = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, text in (modules or {}).items():
        (site / f"{module}.py").write_text(text)
    return site


def run_smc(
    *args: str,
    env: Mapping[str, str] | None = None,
    pythonpath: Path | str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run one of this environment's console scripts (``train``, ``smc``) and capture its output.

    :param args: the script name and its arguments, e.g. ``run_smc("smc", "plugins", "--json")``.
    :param env: variables added to a copy of this process's environment (less ``SM_*``/``SMC_*``).
    :param pythonpath: prepended to ``PYTHONPATH`` (a directory holding fixture distributions).
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(SMC_ENV_PREFIXES)}
    full_env.update(env or {})
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), full_env.get("PYTHONPATH")]))
    script = Path(sys.executable).parent / args[0]
    return subprocess.run(
        [str(script), *args[1:]], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


TRAIN = str(  # the console script beside this interpreter
    Path(sys.executable).parent / "train"
)


def tar_bytes(files: Mapping[str, str | bytes], *, mode: str = "w:gz") -> bytes:
    """A tar archive of ``{name: content}`` (files; names ending in / are directories)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, content in files.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
                continue
            data = content.encode() if isinstance(content, str) else content
            info.size, info.mode = len(data), 0o755 if name.endswith(".sh") else 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_train(
    base: Path,
    *,
    env: Mapping[str, str] | None = None,
    python: str | None = None,
    timeout: float = 120,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``train`` (the console script, or ``python``'s smc) on the job dir ``base``."""
    full_env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SMC_GRACE_PERIOD": "10", **(env or {})}
    if "SMC_FUNCTION_MODE" not in (env or {}):
        full_env.pop("SMC_FUNCTION_MODE", None)
    command = (
        [TRAIN]
        if python is None
        else [python, "-c", "import sys; from smc_core.cli.train import main; sys.exit(main())"]
    )
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=timeout, **kwargs)


def failure_text(base: Path) -> str:
    """The job's output/failure."""
    return (base / "output" / "failure").read_text()


def make_wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """Write a minimal pure-Python wheel of ``name`` (one module ``name``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module_source,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: smc-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


IN_TREE_BACKEND = textwrap.dedent('''
    """A PEP 517 backend that needs nothing from an index: it zips the package by hand."""
    import base64, hashlib, os, zipfile

    NAME, VERSION = "userpkg", "0.1"

    def get_requires_for_build_wheel(config_settings=None):
        return []

    def _files():
        dist = f"{NAME}-{VERSION}.dist-info"
        files = {}
        for root, _, names in os.walk(NAME):
            for n in names:
                if n.endswith(".py"):
                    p = os.path.join(root, n)
                    files[p.replace(os.sep, "/")] = open(p, "rb").read()
        files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode()
        files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
        record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
                  for p, d in files.items()]
        files[f"{dist}/RECORD"] = ("\\n".join(record + [f"{dist}/RECORD,,"]) + "\\n").encode()
        return files

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        name = f"{NAME}-{VERSION}-py3-none-any.whl"
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
            for p, d in _files().items():
                z.writestr(p, d)
        return name
''')

PACKAGE_PYPROJECT = textwrap.dedent("""
    [build-system]
    requires = []
    build-backend = "backend"
    backend-path = ["."]

    [project]
    name = "userpkg"
    version = "0.1"
""")


def outside_env(venv: Path) -> dict[str, str]:
    """The environment of a user of the virtualenv ``venv``: its ``bin`` first, none of smc's variables,
    no ``PYTHONPATH`` into this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SMC_ENV_PREFIXES)}
    env.pop("PYTHONPATH", None)
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv))
    env["PYTEST_ADDOPTS"] = "-p no:cacheprovider"
    # Build what the guides install with the venv's own setuptools (pip reads this one inverted: "0"
    # turns build isolation off), and from no index: everything they need is in the venv already.
    env.update(PIP_NO_BUILD_ISOLATION="0", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env
