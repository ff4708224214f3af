"""Warm pools: what one job installed and fetched, kept for the next job on the same instances.

Where the platform offers a directory that outlives the job (a SageMaker managed warm pool's
persistent cache, ``/opt/ml/sagemaker/warmpoolcache``, or under ``SAGEMAKER_BASE_DIR``:
:attr:`~smc_core.job.environment.TrainingEnv.persistent_cache_dir`), smc keeps there, in a folder of
its own (``smc/``):

* **uv's and pip's caches** (``UV_CACHE_DIR``, ``PIP_CACHE_DIR`` for the installer; a cache the job's
  environment already names is left as it is): a second job with the same requirements installs from
  them without downloading or building anything. Where the cache is on another file system than the
  environment's ``site-packages`` (a warm pool's volume), uv is told to copy (``UV_LINK_MODE=copy``,
  unless the job sets it) rather than try a hard link per file and warn;
* **the extracted code** of an ``s3://`` source, by URI and ETag: a job whose ``sourcedir.tar.gz`` is
  the same object copies it instead of downloading and extracting it again.

Nothing there is trusted blindly. smc writes ``smc/cache.json`` (its format) when it makes the folder,
and a manifest of every file (size and modification time; for code, each file's SHA-256) each time it
leaves a part complete. At the next job:

* a folder ``smc/`` that smc did not make (no ``cache.json``, or another format) is **foreign**: it
  is not used, not touched, and the log says so; the job installs and fetches as without a cache;
* a part whose files do not match its manifest (a file missing, cut short, changed, or one more: a job
  that was killed while it wrote there) is **corrupt**: it is removed, the job installs (or fetches)
  clean and fills it anew, and the log says so.

``SMC_WARM_POOL_CACHE=0`` turns all of this off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core.base.log import logger
from smc_core.base.settings import WARM_POOL_CACHE
from smc_core.job.environment import TrainingEnv

__all__ = ["CACHE_FORMAT", "WarmPoolCache", "warm_pool"]

CACHE_FORMAT = 1
"""The layout of ``smc/`` in the persistent cache directory; another is a foreign cache."""
_INSTALLERS = {"UV_CACHE_DIR": "uv", "PIP_CACHE_DIR": "pip"}


def _files(root: Path) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` of every file under ``root`` (symlinks as links)."""
    found: dict[str, list[int]] = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            with contextlib.suppress(OSError):
                st = path.lstat()
                found[str(path.relative_to(root))] = [st.st_size, st.st_mtime_ns]
    return found


def _same_filesystem(cache: Path) -> bool:
    """Whether ``cache`` is on the file system of this Python's ``site-packages`` (where the job's
    requirements are installed)."""
    try:
        return os.stat(cache).st_dev == os.stat(sysconfig.get_paths()["purelib"]).st_dev
    except (OSError, KeyError):
        return True  # unknown: uv's own default (hard links, else a copy)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


class WarmPoolCache:
    """smc's folder in the platform's persistent cache directory (see the module docstring).

    :param directory: the persistent cache directory (``/opt/ml/sagemaker/warmpoolcache``).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.root = self.directory / "smc"
        self.usable = False
        """Whether the folder is smc's own (set by :meth:`open`)."""

    def open(self) -> bool:
        """Make the folder when it is missing; True when it is smc's own and may be used, False (with a
        log line saying why) when it is foreign or cannot be made."""
        marker = self.root / "cache.json"
        try:
            if not self.root.exists():
                self.root.mkdir(parents=True)
                marker.write_text(json.dumps({"owner": "smc", "format": CACHE_FORMAT}))
            stamp = json.loads(marker.read_text())
            foreign = not isinstance(stamp, dict) or stamp.get("format") != CACHE_FORMAT
        except (OSError, ValueError):
            foreign = True
        if foreign:
            logger.warning(
                "Warm pool: %s was not made by this smc (no cache.json of format %d): not trusted, "
                "not used; this job installs and fetches without it. Remove the folder to let smc make "
                "its own.",
                self.root,
                CACHE_FORMAT,
            )
            return False
        self.usable = True
        return True

    # --- the installers' caches ---------------------------------------------------------------------
    def installer_environ(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``UV_CACHE_DIR`` and ``PIP_CACHE_DIR`` in the cache (those the job sets itself are kept);
        each part is checked first, and removed when corrupt."""
        chosen: dict[str, str] = {}
        for variable, part in _INSTALLERS.items():
            if environ.get(variable):
                logger.info("Warm pool: the job sets %s=%s: kept.", variable, environ[variable])
                continue
            self.check(part)
            chosen[variable] = str(self.root / part)
        if "UV_CACHE_DIR" in chosen and not environ.get("UV_LINK_MODE") and not _same_filesystem(self.root):
            # uv hard-links from its cache where it can; across file systems (a warm pool's volume
            # against the image's site-packages) each attempt fails and uv warns before it copies.
            chosen["UV_LINK_MODE"] = "copy"
        if chosen:
            logger.info(
                "Warm pool: the installers' caches are in %s (%s).", self.root, ", ".join(sorted(chosen))
            )
        return chosen

    def check(self, part: str) -> bool:
        """Whether ``part`` (``uv``, ``pip``) matches its manifest; a corrupt part is removed (the log
        says what did not match). A part never sealed is new: it is emptied."""
        folder, manifest = self.root / part, self.root / f"{part}.manifest.json"
        try:
            expected = json.loads(manifest.read_text())
        except (OSError, ValueError):
            expected = None
        if expected is None:
            if folder.exists() and any(folder.iterdir()):
                self._corrupt(part, "its manifest is missing (a job was stopped while it wrote there)")
            return False
        found = _files(folder)
        if found == expected:
            return True
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        changed = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
        what = "; ".join(
            f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
            for label, names in (("missing", missing), ("changed", changed), ("unknown", extra))
            if names
        )
        self._corrupt(part, f"its files do not match its manifest ({what})")
        return False

    def _corrupt(self, part: str, reason: str) -> None:
        logger.warning(
            "Warm pool: the %s cache in %s is corrupt, %s: removed; this job installs clean and fills it "
            "anew.",
            part,
            self.root,
            reason,
        )
        shutil.rmtree(self.root / part, ignore_errors=True)
        (self.root / f"{part}.manifest.json").unlink(missing_ok=True)

    def seal(self, part: str) -> None:
        """Record ``part``'s files as complete (after a successful install)."""
        folder = self.root / part
        if folder.is_dir():
            self._write(self.root / f"{part}.manifest.json", _files(folder))

    def seal_installers(self) -> None:
        """Seal uv's and pip's caches."""
        for part in _INSTALLERS.values():
            self.seal(part)

    def forget_installers(self) -> None:
        """Remove the manifests of the installers' caches (an install that failed may have left them
        half written): the next job checks them as unsealed and starts them anew."""
        for part in _INSTALLERS.values():
            (self.root / f"{part}.manifest.json").unlink(missing_ok=True)

    # --- the extracted code -------------------------------------------------------------------------
    def _code_entry(self, source: str, version: str) -> Path:
        key = hashlib.sha256(f"{source}\0{version}".encode()).hexdigest()[:32]
        return self.root / "code" / key

    def restore_code(self, source: str, version: str, dest: Path) -> bool:
        """Copy the code extracted from ``source`` at ``version`` (its ETag) into ``dest``, when the
        cache holds it intact; False otherwise (a corrupt entry is removed, and the log says so)."""
        entry = self._code_entry(source, version)
        try:
            manifest = json.loads((entry / "manifest.json").read_text())
        except (OSError, ValueError):
            return False
        files = entry / "files"
        if manifest.get("source") != source or manifest.get("version") != version:
            return False
        expected: dict[str, str] = manifest.get("sha256") or {}
        found = {str(p.relative_to(files)) for p in files.rglob("*") if p.is_file() or p.is_symlink()}
        bad = sorted(found ^ set(expected))
        bad += [
            name
            for name in sorted(found & set(expected))
            if not (files / name).is_symlink() and _digest(files / name) != expected[name]
        ]
        if bad:
            logger.warning(
                "Warm pool: the cached code of %s (ETag %s) is corrupt (%s): removed; fetching it again.",
                source,
                version,
                ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""),
            )
            shutil.rmtree(entry, ignore_errors=True)
            return False
        shutil.copytree(files, dest, symlinks=True, dirs_exist_ok=True)
        logger.info("Warm pool: the code of %s (ETag %s) comes from the cache, intact.", source, version)
        return True

    def store_code(self, source: str, version: str, extracted: Path) -> None:
        """Keep a copy of the code extracted from ``source`` at ``version`` (best effort)."""
        entry = self._code_entry(source, version)
        if entry.exists():
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".new-", dir=entry.parent))
        try:
            shutil.copytree(extracted, staging / "files", symlinks=True)
            digests = {
                str(p.relative_to(staging / "files")): _digest(p)
                for p in (staging / "files").rglob("*")
                if p.is_file() and not p.is_symlink()
            }
            links = [p for p in (staging / "files").rglob("*") if p.is_symlink()]
            digests.update({str(p.relative_to(staging / "files")): "" for p in links})
            self._write(staging / "manifest.json", {"source": source, "version": version, "sha256": digests})
            staging.rename(entry)
        except OSError as error:
            logger.warning("Warm pool: could not keep the code of %s: %s.", source, error)
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _write(path: Path, data: Any) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


def warm_pool(training_env: TrainingEnv) -> WarmPoolCache | None:
    """The warm pool's cache of this job, when the platform offers a persistent cache directory,
    ``SMC_WARM_POOL_CACHE`` is on and the folder there is smc's own; else None."""
    directory = training_env.persistent_cache_dir
    if directory is None or not training_env.settings[WARM_POOL_CACHE]:
        return None
    cache = WarmPoolCache(directory)
    return cache if cache.open() else None
