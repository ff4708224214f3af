"""Bringing the user's code into the code dir: download, extract, and the rules around them.

:func:`fetch_code` is what the default ``fetch_user_code`` calls; :func:`fetch_source` is the
transfer alone, into any directory. Sources: ``s3://bucket/key.tar.gz`` (streamed from S3 into the
extractor: no temporary copy, no second pass, resumed at the byte where a transient error broke it),
``file://PATH`` or a plain path (a directory, a tarball or zip, or a single file), or None for the
code dir as it is. A truncated or corrupt archive, or an object that is no archive at all, is a
:class:`~smc_core.errors.FetchError` (exit 4) and nothing of it runs.

The code dir rule (``SMC_EXISTING_CODE``)
-----------------------------------------
When a source is given, the code run is always the source's. smc records what it fetched in
``source.json`` in its bookkeeping dir beside the code dir (:func:`bookkeeping_dir`:
``/opt/ml/.smc-code`` for ``/opt/ml/code``), never inside it, so the user's code sees only its own
files; when the code dir already holds that same source (same URI, same S3 ETag or the same local
files), it is reused as is (another process on this host fetched it, or the job is re-run). When the
code dir holds anything else:

* ``replace`` (default): what is there is removed, with a warning that lists it, and the source is
  fetched. The reference toolkit instead skips the download and silently runs the stale code.
* ``keep``: the download is skipped and what is there runs, with a warning saying so (the reference
  toolkit's behaviour, made visible).
* ``error``: the job stops with a :class:`~smc_core.errors.FetchError` (exit code 4).

Several processes on one host fetching into one code dir take turns on an exclusive lock
(``lock`` in the bookkeeping dir); the first fetches, the others find the marker and reuse its work.
The archive is extracted into ``code_dir/.smc-staging-*`` (on the code dir's file system, so that it
can be moved into place) and moved into place only once complete, so a failed or refused download
leaves the code dir as it was; the staging dir is gone before the user's code starts, and one left by
a run that was killed is removed by the next fetch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

from smc_core.base.files import open_own_file, write_own_file
from smc_core.base.log import logger
from smc_core.base.settings import EXISTING_CODE
from smc_core.errors import ConfigError, FetchError
from smc_core.usercode.progress import Progress, ProgressReader
from smc_core.usercode.s3 import S3ObjectReader, open_s3_object, parse_s3_uri, s3_client
from smc_core.usercode.warmpool import WarmPoolCache

__all__ = [
    "EXISTING_CODE_POLICIES",
    "MARKER_NAME",
    "bookkeeping_dir",
    "check_local_source",
    "code_dir_lock",
    "download_and_extract",
    "fetch_code",
    "fetch_source",
    "local_source_path",
    "remove_stale_staging",
]

EXISTING_CODE_POLICIES = ("replace", "keep", "error")
MARKER_NAME = "source.json"
"""What was fetched (source and version), in :func:`bookkeeping_dir`."""
LOCK_NAME = "lock"
_OWN_PREFIX = ".smc-"


def bookkeeping_dir(code_dir: Path) -> Path:
    """Where smc keeps its lock and fetch marker for ``code_dir``: ``.smc-<name>`` beside it
    (``/opt/ml/.smc-code`` for ``/opt/ml/code``), created when missing. Outside the code dir, so
    nothing of smc's is seen by the user's code or copied with it."""
    path = code_dir.absolute().parent / f"{_OWN_PREFIX}{code_dir.absolute().name}"
    try:
        if path.is_symlink():  # smc's own dir: never written through a link someone put there
            logger.warning("Replacing the symbolic link %s with smc's own directory.", path)
            path.unlink()
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(
            f"Cannot create {path}, where smc keeps its lock and fetch marker for the code dir "
            f"{code_dir}: {error.strerror or error}. Make the code dir's parent writable."
        ) from None
    return path


def local_source_path(source: str) -> Path | None:
    """The local path of ``source`` (``file://`` URI or plain path), or None for a remote URI."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(unquote(parsed.netloc + parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # "c:" is a drive, not a scheme
        return None
    return Path(source)


@contextlib.contextmanager
def code_dir_lock(code_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``code_dir`` (``lock`` in :func:`bookkeeping_dir`) while inside the block."""
    code_dir.mkdir(parents=True, exist_ok=True)
    fd = open_own_file(bookkeeping_dir(code_dir) / LOCK_NAME)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("Waiting for another process fetching into %s ...", code_dir)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _visible_entries(code_dir: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(code_dir) if not n.startswith(_OWN_PREFIX))
    except FileNotFoundError:
        return []


def _read_marker(code_dir: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((bookkeeping_dir(code_dir) / MARKER_NAME).read_text())
        return marker if isinstance(marker, dict) else None
    except (OSError, ValueError):
        return None


def _local_version(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(full)
                    # os.fsencode: a file name that is not valid UTF-8 is bytes the OS gave, not an error
                    relative = os.fsencode(os.path.relpath(full, path))
                    digest.update(relative + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        st = path.stat()
        digest.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _existing_policy(policy: str | None) -> str:
    value = policy or EXISTING_CODE.default
    if value not in EXISTING_CODE_POLICIES:
        raise ConfigError(
            f"The existing-code policy is {value!r}; expected one of {', '.join(EXISTING_CODE_POLICIES)} "
            "(replace: fetch the source over what is in the code dir; keep: run what is there; error: stop)."
        )
    return value


def fetch_code(
    source: str | None,
    code_dir: Path | str,
    *,
    region: str | None = None,
    policy: str | None = None,
    environ: Mapping[str, str] | None = None,
    s3_timeout: float = 120.0,
    s3_retries: int = 8,
    cache: WarmPoolCache | None = None,
) -> str:
    """Make ``source`` the content of ``code_dir``, by the rules in this module's docstring.

    :param source: ``s3://bucket/key.tar.gz``, ``file://PATH``, a local directory, tarball, zip or
        file; None or empty for the code dir as it is.
    :param code_dir: the code dir (created when missing).
    :param region: the S3 region (default: from the environment).
    :param policy: ``replace`` (default), ``keep`` or ``error`` for a code dir holding other code; the
        default hook passes ``training_env.settings[EXISTING_CODE]`` (``SMC_EXISTING_CODE``).
    :param environ: the environment to read the S3 endpoint (``AWS_ENDPOINT_URL``...) and the default
        region from (default: this process's).
    :param s3_timeout: the overall bound in seconds on reading an S3 object, retries included.
    :param s3_retries: how many times one S3 request is retried after a transient error.
    :param cache: a warm pool's cache (:mod:`smc_core.usercode.warmpool`): an ``s3://`` source whose
        ETag it holds, intact, is copied from there instead of downloaded; one it lacks is kept there.
    :return: what was done: ``"as-is"`` (no source), ``"fetched"``, ``"reused"`` (already fetched
        from the same source) or ``"kept"`` (policy ``keep``).
    :raises FetchError: the source cannot be read, is not an archive, is truncated, or is hostile.

    Example::

        from smc_core import fetch_code

        fetch_code(training_env.module_dir, training_env.code_dir, policy="error")
    """
    code_dir = Path(code_dir)
    if not source:
        code_dir.mkdir(parents=True, exist_ok=True)
        return "as-is"
    environ = os.environ if environ is None else environ
    policy = _existing_policy(policy)
    local = _checked_source(source, code_dir)
    if local is not None and local.is_dir() and local.resolve() == code_dir.resolve():
        return "as-is"
    with code_dir_lock(code_dir):
        remove_stale_staging(code_dir)
        reader: Any = None
        try:
            if local is not None:
                version = _local_version(local)
            else:
                reader = _open_s3(source, region, environ, s3_timeout, s3_retries)
                version = reader.etag
            existing = _existing_to_replace(code_dir, source, version, policy)
            if existing is None:
                return "reused"
            if existing is _KEEP:
                return "kept"
            if code_dir.is_symlink():
                existing = _unlink_code_dir(code_dir)
            _stage_and_swap(
                source, code_dir, existing, region=region, reader=reader, cache=cache, version=version
            )
            _write_marker(code_dir, source, version)
            logger.info("Fetched %s into %s.", source, code_dir)
            return "fetched"
        finally:
            if reader is not None:
                reader.close()


_KEEP: list[str] = []  # a sentinel: run what is there


def _unlink_code_dir(code_dir: Path) -> list[str]:
    """Replace the symbolic link ``code_dir`` with an empty directory: the fetched code replaces the
    link, never the files it points to (outside the job dir: the user's own project, say)."""
    logger.warning(
        "The code dir %s is a symbolic link to %s: replacing the link (not what it points to, which is "
        "left as it is) with a directory for the fetched code.",
        code_dir,
        os.path.realpath(code_dir),
    )
    code_dir.unlink()
    code_dir.mkdir()
    return []


NOT_A_SOURCE = ("/", "/proc", "/sys", "/dev", "/run")
"""Directories that cannot be the user's code: the whole file system, and the kernel's own."""


def check_local_source(path: Path, what: str) -> None:
    """Refuse a local source that cannot be the user's code: one that does not exist, a named pipe,
    socket or device, or a directory of :data:`NOT_A_SOURCE` (copying ``/`` copies the whole file
    system).

    :param what: how the message names the source (``"file:///"``, ``"source dir /"``).
    :raises FetchError: naming it and what to give instead.
    """
    if not path.exists():
        raise FetchError(f"{what}: no such file or directory. Give an s3:// URI, or a path that exists here.")
    if not path.is_dir() and not path.is_file():
        raise FetchError(
            f"{what}: not a directory, archive or regular file (a named pipe, socket or device), so it "
            "cannot be the code. Give the directory that holds the code, or an archive of it."
        )
    resolved = os.path.realpath(path)
    if resolved in NOT_A_SOURCE:
        raise FetchError(
            f"{what}: that is {'the whole file system' if resolved == '/' else 'a system directory'} "
            f"({resolved}), not a folder of code: copying it would copy everything under it. Give the "
            "directory that holds the code (e.g. ./src)."
        )


def _checked_source(source: str, code_dir: Path) -> Path | None:
    """The local path of ``source`` (checked: :func:`check_local_source`), or None for an ``s3://``
    URI; else a refusal."""
    local = local_source_path(source)
    if local is not None:
        check_local_source(local, source)
        return local
    if not source.startswith("s3://"):
        raise FetchError(
            f"{source}: unsupported code source. Use s3://bucket/key.tar.gz, file://PATH or a local path; "
            "for anything else (git, http), implement the fetch_user_code hook in a plugin."
        )
    return None


def _open_s3(
    source: str, region: str | None, environ: Mapping[str, str], timeout: float, retries: int
) -> Any:
    bucket, key = parse_s3_uri(source)
    client = s3_client(region, environ=environ, timeout=timeout)
    return S3ObjectReader(client, bucket, key, attempts=retries, timeout=timeout)


def remove_stale_staging(code_dir: Path | str) -> list[str]:
    """Remove ``.smc-staging-*`` directories left in ``code_dir`` (and marker temporaries left in its
    :func:`bookkeeping_dir`) by a run that was killed; call it holding :func:`code_dir_lock`.
    Returns the names removed."""
    removed = []
    for name in _own_entries(code_dir):
        if name.startswith(_OWN_PREFIX + "staging-"):
            _remove(Path(code_dir) / name)
            removed.append(name)
    keeping = bookkeeping_dir(Path(code_dir))
    for name in _own_entries(keeping, prefix=MARKER_NAME + "."):
        _remove(keeping / name)
        removed.append(name)
    if removed:
        logger.warning("Removed %s, left in %s by an interrupted fetch.", ", ".join(removed), code_dir)
    return removed


def _own_entries(directory: Path | str, prefix: str = _OWN_PREFIX) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _existing_to_replace(code_dir: Path, source: str, version: str, policy: str) -> list[str] | None:
    """What in ``code_dir`` the fetch replaces: None when it already holds ``source`` (reuse it),
    :data:`_KEEP` when policy ``keep`` runs what is there; raises for policy ``error``."""
    marker = _read_marker(code_dir)
    existing = _visible_entries(code_dir)
    if marker == {"source": source, "version": version} and existing:
        logger.info("Code dir %s already holds %s: reusing it.", code_dir, source)
        return None
    if not existing:  # an emptied code dir is fetched again, whatever the marker says
        return existing
    shown = ", ".join(existing[:8]) + (f" and {len(existing) - 8} more" if len(existing) > 8 else "")
    what = f"code fetched from {marker['source']}" if marker else "code not fetched from it"
    if policy == "error":
        raise FetchError(
            f"The code dir {code_dir} already holds {what} ({shown}), and the job names "
            f"{source}. Empty the code dir, or set SMC_EXISTING_CODE=replace (fetch the source) "
            "or keep (run what is there)."
        )
    if policy == "keep":
        logger.warning(
            "NOT fetching %s: the code dir %s already holds %s (%s), which runs instead "
            "(SMC_EXISTING_CODE=keep).",
            source,
            code_dir,
            what,
            shown,
        )
        return _KEEP
    logger.warning(
        "The code dir %s holds %s (%s): replacing it with %s (SMC_EXISTING_CODE=keep runs it instead).",
        code_dir,
        what,
        shown,
        source,
    )
    return existing


def _stage_and_swap(
    source: str,
    code_dir: Path,
    existing: list[str],
    *,
    region: str | None,
    reader: Any,
    cache: WarmPoolCache | None = None,
    version: str = "",
) -> None:
    """Extract ``source`` into a staging dir inside ``code_dir`` (or copy it from a warm pool's
    ``cache``); only once complete, replace ``existing`` with it. The staging dir is removed whatever
    happens (a signal included)."""
    staging = Path(tempfile.mkdtemp(prefix=_OWN_PREFIX + "staging-", dir=code_dir))
    cached = cache is not None and reader is not None
    try:
        if not (cached and cache is not None and cache.restore_code(source, version, staging)):
            download_and_extract(source, staging, region=region, reader=reader)
            if cached and cache is not None:
                cache.store_code(source, version, staging)
        for name in existing:
            _remove(code_dir / name)
        with contextlib.suppress(FileNotFoundError):
            (bookkeeping_dir(code_dir) / MARKER_NAME).unlink()
        for name in os.listdir(staging):
            os.replace(staging / name, code_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_marker(code_dir: Path, source: str, version: str) -> None:
    marker_path = bookkeeping_dir(code_dir) / MARKER_NAME
    marker_tmp = marker_path.with_name(f"{MARKER_NAME}.{os.getpid()}")
    write_own_file(marker_tmp, json.dumps({"source": source, "version": version}).encode())
    marker_tmp.replace(marker_path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def fetch_source(
    source: str | os.PathLike[str],
    dest: Path | str,
    *,
    region: str | None = None,
    environ: Mapping[str, str] | None = None,
    s3_timeout: float = 120.0,
    s3_retries: int = 8,
) -> Path:
    """Put the files of ``source`` into the directory ``dest`` (created when missing) and return it.

    Sources: ``s3://bucket/key.tar.gz`` (streamed from S3 into the extractor, resumed where a
    transient error broke it), or ``file://PATH`` or a plain path: a directory (copied, symlinks as
    symlinks), a tarball or zip (extracted safely: :func:`~smc_core.usercode.archive.extract_archive`),
    or a single file (copied into ``dest``). What is already in ``dest`` stays, unless the source
    has a file of the same name. No lock and no code-dir rule: :func:`fetch_code` adds those for the
    job's code dir.

    :param region: the S3 region (default: from ``environ``).
    :param environ: where to read the S3 endpoint (``AWS_ENDPOINT_URL``...), the region and the
        credentials from (default: this process's environment).
    :param s3_timeout: the overall bound in seconds on reading an S3 object, retries included.
    :param s3_retries: how many times one S3 request is retried after a transient error.
    :raises FetchError: the source cannot be read, is not an archive, is truncated, or is hostile
        (exit code 4 in a job).

    Example::

        from smc_core import fetch_source

        fetch_source("s3://my-bucket/my-job/source/sourcedir.tar.gz", "/tmp/code")
        fetch_source("file:///home/me/project", "/tmp/code")
    """
    source = os.fspath(source)
    dest = Path(dest)
    local = _checked_source(source, dest)
    reader = None
    try:
        if local is None:
            reader = _open_s3(
                source, region, os.environ if environ is None else environ, s3_timeout, s3_retries
            )
        download_and_extract(source, dest, region=region, reader=reader)
    finally:
        if reader is not None:
            reader.close()
    return dest


def download_and_extract(
    source: str, dest: Path | str, *, region: str | None = None, reader: IO[bytes] | None = None
) -> None:
    """Put ``source``'s files into ``dest`` (no locking, no marker: see :func:`fetch_code` for those).

    An ``s3://`` object and a local tarball are streamed through
    :func:`~smc_core.usercode.archive.extract_tar` (with progress for large ones); a local
    directory is copied (symlinks as symlinks); a single local file is copied into ``dest``.

    :param reader: an already opened :class:`~smc_core.usercode.s3.S3ObjectReader` for ``source`` (optional).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    local = local_source_path(source)
    if local is None:
        owned = reader is None
        stream: Any = reader if reader is not None else open_s3_object(source, region=region)
        try:
            _extract_with_progress(stream, stream.size or 0, dest, source)
            if getattr(stream, "retries", 0):
                logger.info(
                    "%s: completed after %d transient error(s), resumed each time.", source, stream.retries
                )
        finally:
            if owned:
                stream.close()
    elif local.is_dir():
        shutil.copytree(local, dest, symlinks=True, dirs_exist_ok=True, ignore=_copyable(dest))
    elif _is_archive(local):
        with open(local, "rb") as file:
            _extract_with_progress(file, local.stat().st_size, dest, source)
    elif local.name.endswith(_ARCHIVE_SUFFIXES):
        raise FetchError(
            f"{source}: named like an archive, but not one (neither tar nor zip: it begins "
            f"{local.read_bytes()[:16]!r}). Upload the code as sourcedir.tar.gz "
            "(e.g. `tar -czf sourcedir.tar.gz -C src .`)."
        )
    else:
        shutil.copy2(local, dest / local.name)


def _copyable(dest: Path) -> Any:
    """A ``copytree`` filter leaving out the directory that holds ``dest`` (``smc local .`` run in the
    source dir puts the job dir, and so the code dir, inside the source: copied, it would recurse),
    and what cannot be copied as a file (named pipes, sockets, devices: reading a pipe would wait
    forever), each named in a warning."""
    target = os.path.realpath(dest)

    def ignore(directory: str, names: list[str]) -> list[str]:
        skipped = []
        for name in names:
            full = os.path.join(directory, name)
            path = os.path.realpath(full)
            if target == path or target.startswith(path + os.sep):
                skipped.append(name)
                continue
            with contextlib.suppress(OSError):
                mode = os.lstat(full).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    logger.warning(
                        "Not copying %s: not a regular file or directory (a pipe, socket or device).", full
                    )
                    skipped.append(name)
        return skipped

    return ignore


_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip", ".gz")


def _is_archive(path: Path) -> bool:
    from smc_core.usercode.archive import is_archive  # tarfile, zipfile: imported only for archives

    return is_archive(path)


def _extract_with_progress(stream: Any, size: int, dest: Path, source: str) -> None:
    from smc_core.usercode.archive import extract_tar  # tarfile, zipfile: imported only for archives

    progress = Progress(f"Downloading {source}", size)
    extract_tar(ProgressReader(stream, progress), dest, source=source)
    progress.finish()
