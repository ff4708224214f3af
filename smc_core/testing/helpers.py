"""Plain helpers for tests of smc and of plugins: fake distributions, pip installs, running smc."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SMC_ENV_PREFIXES", "pip_install_target", "run_smc", "write_fake_dist"]

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
