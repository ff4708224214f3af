"""Curves 2 and 4 of issue 28: the archive's shape, and the size of ``requirements.txt``.

Both run smc and the reference toolkit side by side on the same job directories, with the harness of
``benchmarks/run.py`` (:func:`measure.interleave`: A B A B ..., each runner in its own environment,
cold caches, the same environment variables).

* **Archive shape** (:data:`SHAPES`): 1,000 / 10,000 / 100,000 files of 1-10 KB (a source tree with a
  vendored dependency: text, compressible) and 1 GB of large files (ten incompressible 100 MB blobs,
  as weights are), each as ``sourcedir.tar.gz`` on the static loopback S3 endpoint
  (``s3static.py``). The time to the user script's first line, against the limit measured in the same
  rounds: the transfer alone (one GET, read and dropped) plus GNU ``tar xzf`` of the same file;
  and the runner's peak resident memory (``VmHWM``, read by the user script).
* **Requirements** (:data:`PACKAGES`): the first 1, 10 and 50 of fifty small distributions that no
  benchmark environment has, from a PEP 503 index on loopback, cold caches: smc (uv) against the
  reference (pip). After every run what it installed is removed again.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import envs
import jobs
import measure
import services

SHAPES: dict[str, dict[str, int]] = {
    "train.py": {"files": 0},  # the start-up on the S3 path, to tell the fetch alone
    "1k": {"files": 1_000},
    "10k": {"files": 10_000},
    "100k": {"files": 100_000},
    "1GB": {"blobs": 10, "blob_mb": 100},
}
"""Archive shapes: many small files, or a few large ones."""

PACKAGES = [
    "attrs", "click", "idna", "tabulate", "toml", "tqdm", "packaging", "pyparsing", "certifi", "colorama",
    "decorator", "more-itertools", "zipp", "toolz", "cloudpickle", "platformdirs", "filelock", "distlib",
    "iniconfig", "tomli", "tomlkit", "typing-extensions", "mccabe", "pycodestyle", "pyflakes", "sniffio",
    "h11", "wcwidth", "termcolor", "tenacity", "pytz", "soupsieve", "cachetools", "pyasn1", "ply",
    "xmltodict", "text-unidecode", "humanize", "natsort", "sortedcontainers", "jsonpointer", "pathspec",
    "semver", "appdirs", "blinker", "itsdangerous", "markdown", "chardet", "asttokens", "executing",
]  # fmt: skip
"""Fifty small distributions without dependencies that neither runner's environment holds."""
REQUIREMENT_SIZES = (0, 1, 10, 50)
"""0: the same job without ``requirements.txt`` (each runner's start-up, to tell the install alone)."""

_WORDS = [
    "def", "return", "self", "import", "tensor", "batch", "loss", "model", "for", "in", "if", "else", "x",
    "y", "optimizer", "step", "epoch", "grad", "config", "data", "(", ")", ":", "=", "+", ".", "vendor",
    "request", "session", "json", "yield", "lambda", "class", "None", "True",
]  # fmt: skip


def make_shape(path: Path, shape: str, *, log: Callable[[str], None] = print) -> Path:
    """Write (once) the ``sourcedir.tar.gz`` of ``shape`` (see :data:`SHAPES`) with ``train.py``."""
    spec = SHAPES[shape]
    stamp = path.with_suffix(".stamp")
    want = json.dumps({**spec, "script": hashlib.sha256(jobs.USER_SCRIPT.encode()).hexdigest()[:12]})
    if path.exists() and stamp.exists() and stamp.read_text() == want:
        return path
    log(f"[setup] writing the {shape} archive {path.name} (once)")
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(28)
    # Large blobs of random bytes do not compress: gzip level 1 writes them as fast and as big as 6.
    level = 1 if "blobs" in spec else 6
    with tarfile.open(path, "w:gz", compresslevel=level) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))

        add("train.py", jobs.USER_SCRIPT.encode())
        for index in range(spec.get("files", 0)):
            # A source tree of packages, and a vendored dependency of nested modules (about 100 a directory).
            top = "src" if index % 3 else "vendor/dep"
            name = f"{top}/pkg{index % 37:02d}/sub{(index // 37) % 28:02d}/mod{index:06d}.py"
            size = rng.randint(1_000, 10_000)
            text = " ".join(rng.choices(_WORDS, k=size // 4)).encode()[:size]
            add(name, text + b"\n" * (size - len(text)))
        for index in range(spec.get("blobs", 0)):
            add(f"weights/shard{index:02d}.bin", rng.randbytes(spec["blob_mb"] * 1_000_000))
    stamp.write_text(want)
    return path


def archive_curve(
    work: Path,
    small: dict[str, envs.Venv],
    common: dict[str, str],
    shapes: list[str],
    runs: int,
    warmup: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every shape, both runners interleaved; returns ``{shape: {"series", "limits", "members",
    "bytes", "load"}}``."""
    import os

    result: dict[str, Any] = {}
    root = work / "s3root-curves"
    data = work / "data"
    tarballs = {shape: make_shape(data / f"shape-{shape}.tar.gz", shape, log=log) for shape in shapes}
    for shape, tarball in tarballs.items():
        services.place(root, jobs.BUCKET, f"curves/{shape}/sourcedir.tar.gz", tarball)
    jobs_root = work / "jobs"
    with services.static_s3_endpoint(root, work) as endpoint:
        env = {**common, "AWS_ENDPOINT_URL": endpoint}
        for shape, tarball in tarballs.items():
            key = f"curves/{shape}/sourcedir.tar.gz"
            job = jobs.make_job(jobs_root, f"shape-{shape}", s3_uri=f"s3://{jobs.BUCKET}/{key}")
            manifest = jobs.tar_manifest(tarball)
            limits: dict[str, list[float]] = {}
            url = f"{endpoint}/{jobs.BUCKET}/{key}"

            def limit_after(
                venv: envs.Venv,
                url: str = url,
                tarball: Path = tarball,
                limits: dict[str, list[float]] = limits,
            ) -> None:
                if venv.runner != "smc":
                    return
                transfer = services.transfer_seconds(url)
                tar = jobs.gnu_tar_seconds(tarball, work / "tar-limit")
                limits.setdefault("transfer", []).append(transfer)
                if tar is not None:
                    limits.setdefault("tar", []).append(tar)
                    limits.setdefault("sum", []).append(transfer + tar)
                log(f"  {'limit':<22} transfer {transfer:.3f} s + GNU tar {tar or 0:.3f} s")

            log(
                f"[archive {shape}] {len(manifest):,} files, {tarball.stat().st_size / 1e6:.0f} MB compressed"
            )
            load_before = os.getloadavg()[0]
            series = measure.interleave(
                [(name, small[name]) for name in ("reference", "smc") if name in small],
                job,
                env,
                runs=runs,
                warmup=warmup,
                verify=lambda venv, job=job, manifest=manifest: jobs.check_extracted(
                    job.base / "code", manifest, digests=False
                ),
                after_each=limit_after,
                progress=log,
            )
            result[shape] = {
                "series": [asdict(s) for s in series],
                "limits": limits,
                "members": len(manifest),
                "bytes": sum(size for size, _ in manifest.values()),
                "compressed_bytes": tarball.stat().st_size,
                "load": [load_before, os.getloadavg()[0]],
            }
            shutil.rmtree(job.base / "code", ignore_errors=True)
    return result


# --- requirements --------------------------------------------------------------------------------------


def make_wheelhouse(root: Path, packages: list[str], *, log: Callable[[str], None] = print) -> Path:
    """Download (once) wheels of ``packages`` (and anything they need) as a PEP 503 index under ``root``."""
    stamp = root / "packages.json"
    if (root / "simple").exists() and stamp.exists() and json.loads(stamp.read_text()) == packages:
        return root
    log(f"[setup] downloading wheels of {len(packages)} packages for the requirements curve (once)")
    shutil.rmtree(root, ignore_errors=True)
    files = root / "files"
    files.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(files), *packages],
        check=True,
    )
    by_project: dict[str, list[str]] = {}
    for wheel in sorted(files.glob("*.whl")):
        project = wheel.name.split("-")[0].lower().replace("_", "-").replace(".", "-")
        by_project.setdefault(project, []).append(wheel.name)
    for project, wheels in by_project.items():
        page = root / "simple" / project
        page.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{w}">{w}</a><br>\n' for w in wheels)
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    links = "".join(f'<a href="{p}/">{p}</a><br>\n' for p in sorted(by_project))
    (root / "simple" / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    stamp.write_text(json.dumps(packages))
    return root


def _installed(venv: envs.Venv) -> set[str]:
    return {p.name.split("-")[0].lower() for p in venv.site_packages.glob("*.dist-info")}


def requirements_curve(
    work: Path,
    small: dict[str, envs.Venv],
    common: dict[str, str],
    sizes: list[int],
    runs: int,
    warmup: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every size, both runners interleaved; returns ``{str(size): {"series", "load"}}``."""
    import os

    before = {name: _installed(venv) for name, venv in small.items()}
    # The first of PACKAGES that no environment holds (all of them in the benchmark's own environments;
    # the smoke test runs in the test environment, which holds a few): the same list for both runners.
    present = set().union(*before.values())
    candidates = [p for p in PACKAGES if p.replace("-", "_") not in present]
    if len(candidates) < max(sizes):
        raise RuntimeError(
            f"only {len(candidates)} of the requirements curve's packages are absent from "
            f"{', '.join(v.path.name for v in small.values())}; {max(sizes)} are needed"
        )
    index_root = make_wheelhouse(work / "index-curves", candidates[: max(sizes)], log=log)
    uv = shutil.which("uv", path=str(small["smc"].path / "bin")) if "smc" in small else shutil.which("uv")

    def uninstall(venv: envs.Venv) -> None:
        # Whatever the run added, removed again (uv is quick at it; this is not timed).
        added = sorted(_installed(venv) - before[venv.runner])
        if added:
            cmd = [uv, "pip", "uninstall", "-q", "--python", str(venv.python), *added] if uv else None
            if cmd is None:
                cmd = [str(venv.python), "-m", "pip", "uninstall", "-q", "-y", *added]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    result: dict[str, Any] = {}
    with services.package_index(index_root, work) as index_url:
        env = {**common, "PIP_INDEX_URL": index_url}
        for venv in small.values():
            uninstall(venv)
        for size in sizes:
            wanted = candidates[:size]  # 0: no requirements.txt, the start-up to subtract
            job = jobs.make_job(work / "jobs", f"requirements-{size}", requirements=wanted or None)
            check = (
                "import importlib.metadata as m, sys\n"
                "missing = [n for n in sys.argv[1:] if not m.version(n)]\n"
                "sys.exit(1 if missing else 0)\n"
            )

            def installed(venv: envs.Venv, wanted: list[str] = wanted, check: str = check) -> str | None:
                done = subprocess.run(
                    [str(venv.python), "-c", check, *wanted], capture_output=True, check=False
                )
                return (
                    None if done.returncode == 0 else f"not all of {len(wanted)} requirements were installed"
                )

            log(f"[requirements {size}] {', '.join(wanted[:6])}{' ...' if size > 6 else ''}")
            load_before = os.getloadavg()[0]
            series = measure.interleave(
                [(name, small[name]) for name in ("reference", "smc") if name in small],
                job,
                env,
                runs=runs,
                warmup=warmup,
                verify=installed,
                after_each=uninstall,
                progress=log,
            )
            result[str(size)] = {
                "series": [asdict(s) for s in series],
                "load": [load_before, os.getloadavg()[0]],
            }
    return result
