"""The environments the benchmark compares: the reference toolkit's and smc's, small and framework-sized.

Every environment is built from the same base interpreter, with pip upgraded, under ``benchmarks/.work``.
A stamp file in each records what it was built from, so a later run rebuilds only what changed (smc's
sources, the reference's pinned version, the number of fake distributions).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work"

REFERENCE_REQUIREMENT = "sagemaker-training==5.1.4"
"""The reference toolkit, pinned so that figures stay comparable from run to run."""


def _smc_dependencies() -> list[str]:
    import tomllib

    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


SMC_DEPENDENCIES = _smc_dependencies()
"""smc-core's dependencies, read from ``pyproject.toml``: what ``pip install smc-core`` installs."""

FRAMEWORK_SIZE = 300
"""Installed distributions in a framework-sized environment (framework images carry hundreds)."""

STAMP = "smc-bench-stamp.json"


@dataclass(frozen=True)
class Venv:
    """A benchmark virtual environment."""

    path: Path
    runner: str
    """``reference`` or ``smc``."""
    size: str
    """``small`` or ``framework``."""

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.path / "bin" / "python"

    @property
    def train(self) -> Path:
        """The ``train`` console script of the runner installed in it."""
        return self.path / "bin" / "train"

    @property
    def site_packages(self) -> Path:
        """Its ``site-packages`` directory."""
        return next((self.path / "lib").glob("python3*/site-packages"))

    def distributions(self) -> int:
        """How many distributions are installed (``*.dist-info`` and ``*.egg-info`` in site-packages)."""
        return sum(1 for p in self.site_packages.iterdir() if p.suffix in (".dist-info", ".egg-info"))

    def pip(self, *args: str, quiet: bool = True) -> None:
        """Run this environment's pip."""
        cmd = [str(self.python), "-m", "pip", *(["-q"] if quiet else []), *args]
        subprocess.run(cmd, check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def base_python() -> str:
    """The interpreter every environment is made from: the one behind the harness's own venv."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _read_stamp(path: Path) -> dict[str, object]:
    try:
        return json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def _create(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    subprocess.run([base_python(), "-m", "venv", str(path)], check=True)
    subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def smc_source_digest() -> str:
    """A digest of the smc sources installed into the benchmark environments."""
    digest = hashlib.sha256()
    roots = [REPO / "pyproject.toml", REPO / "smc_core", REPO / "plugins" / "pytorch"]
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for file in files:
            if file.is_file() and file.suffix in (".py", ".toml", ".typed", ".txt", ".json", ".cfg"):
                if "egg-info" in str(file) or "__pycache__" in str(file):
                    continue
                digest.update(str(file.relative_to(REPO)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _copy_source(dest: Path) -> Path:
    # Build from a copy, so that building writes nothing into the working tree.
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "smc_core", dest / "smc_core", ignore=ignore)
    adapter = REPO / "plugins" / "pytorch"
    if (adapter / "pyproject.toml").exists():
        shutil.copytree(
            adapter,
            dest / "plugins" / "pytorch",
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "tests"),
        )
    return dest


def ensure_reference(size: str, *, log: bool = True) -> Venv:
    """The reference toolkit's environment (``small``, or ``framework``-sized with fake distributions)."""
    venv = Venv(WORK / f"ref-{size}-venv", "reference", size)
    want = {"requirement": REFERENCE_REQUIREMENT, "fake": FRAMEWORK_SIZE if size == "framework" else 0}
    if _read_stamp(venv.path) != want:
        if log:
            print(f"[setup] building {venv.path.name}: {REFERENCE_REQUIREMENT}", flush=True)
        _create(venv.path)
        venv.pip("install", REFERENCE_REQUIREMENT)
        if size == "framework":
            fill_with_fake_distributions(venv, FRAMEWORK_SIZE)
        (venv.path / STAMP).write_text(json.dumps(want))
    return venv


def ensure_smc(size: str, *, log: bool = True) -> Venv:
    """smc's environment: smc-core (a regular, non-editable install of the working tree) and its dependencies.

    The framework-sized one also carries the PyTorch adapter (without torch, which it imports lazily) and
    fake distributions up to :data:`FRAMEWORK_SIZE`.
    """
    venv = Venv(WORK / f"smc-{size}-venv", "smc", size)
    digest = smc_source_digest()
    stamp = _read_stamp(venv.path)
    base = {"deps": SMC_DEPENDENCIES, "fake": FRAMEWORK_SIZE if size == "framework" else 0}
    if {k: stamp.get(k) for k in base} != base:
        if log:
            print(f"[setup] building {venv.path.name}", flush=True)
        _create(venv.path)
        venv.pip("install", *SMC_DEPENDENCIES)
        stamp = dict(base)
    if stamp.get("smc") != digest:
        if log:
            print(f"[setup] installing smc ({digest}) into {venv.path.name}", flush=True)
        src = _copy_source(WORK / "smc-src")
        venv.pip("install", "--no-deps", "--force-reinstall", str(src))
        if size == "framework" and (src / "plugins" / "pytorch").exists():
            venv.pip("install", "--no-deps", "--force-reinstall", str(src / "plugins" / "pytorch"))
        if size == "framework":
            fill_with_fake_distributions(venv, FRAMEWORK_SIZE)
        stamp["smc"] = digest
        (venv.path / STAMP).write_text(json.dumps(stamp))
    return venv


def existing_venv(path: Path) -> Venv:
    """An already-built environment with smc installed (``--smc-venv``, as the smoke test uses)."""
    return Venv(path.resolve(), "smc", "given")


# --- framework-sized environments -------------------------------------------------------------------------

_GROUPS = [
    "console_scripts",
    "pytest11",
    "jupyter_server.extensions",
    "fsspec.specs",
    "numba_extensions",
    "keras.backends",
    "torch.backends",
    "paste.app_factory",
    "sphinx.html_themes",
    "flake8.extension",
]


def _fake_metadata(name: str, index: int) -> str:
    requires = "".join(f"Requires-Dist: fwfake-{(index + k) % 97:03d}>=1.0\n" for k in range(index % 4))
    classifiers = "".join(f"Classifier: Topic :: Scientific/Engineering :: Item {k}\n" for k in range(8))
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: 1.{index}.0\n"
        f"Summary: Stand-in for one of the hundreds of distributions a framework image carries ({index})\n"
        "Home-page: https://example.invalid/\nAuthor: smc benchmarks\nLicense: Apache-2.0\n"
        f"{classifiers}Requires-Python: >=3.8\n{requires}"
        "Description-Content-Type: text/markdown\n\n"
        + f"# {name}\n\n"
        + "A paragraph of long description that real packages carry.\n" * 20
    )


def fill_with_fake_distributions(venv: Venv, total: int) -> int:
    """Write tiny distributions into ``venv`` until it holds ``total`` installed distributions.

    Each has a package, ``METADATA``, ``RECORD``, ``INSTALLER``, ``top_level.txt``; about half also have an
    ``entry_points.txt`` with entry points in groups that frameworks use (never the ``smc.*`` groups),
    which is what entry-point scanning reads. Returns how many were written.
    """
    site = venv.site_packages
    for old in site.glob("fwfake_*"):
        shutil.rmtree(old)
    need = total - venv.distributions()
    for index in range(max(need, 0)):
        name = f"fwfake-{index:03d}"
        module = name.replace("-", "_")
        package = site / module
        package.mkdir()
        (package / "__init__.py").write_text(
            f'"""Fake distribution {index}."""\n__version__ = "1.{index}.0"\n'
        )
        info = site / f"{module}-1.{index}.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(_fake_metadata(name, index))
        (info / "INSTALLER").write_text("pip\n")
        (info / "top_level.txt").write_text(module + "\n")
        (info / "WHEEL").write_text(
            "Wheel-Version: 1.0\nGenerator: smc-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        if index % 2 == 0:
            groups = [_GROUPS[index % len(_GROUPS)], _GROUPS[(index * 7 + 3) % len(_GROUPS)]]
            text = "".join(
                f"[{group}]\n" + "".join(f"{module}-{k} = {module}:main{k}\n" for k in range(3)) + "\n"
                for group in dict.fromkeys(groups)
            )
            (info / "entry_points.txt").write_text(text)
        record = [
            f"{module}/__init__.py,,",
            *(f"{info.name}/{f.name},," for f in info.iterdir()),
            f"{info.name}/RECORD,,",
        ]
        (info / "RECORD").write_text("\n".join(record) + "\n")
    return max(need, 0)
