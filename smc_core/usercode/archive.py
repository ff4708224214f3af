"""Safe extraction of tar (and zip) archives, read as a stream (no temporary copy, no second pass).

:func:`extract_tar` reads a tar archive (plain, gzip, bzip2 or xz) from a path or any readable
binary stream, one member at a time. A compressed archive must be complete: the compressed stream
must reach its own end (for gzip, the CRC and length in its trailer are checked), so a truncated or
corrupt archive is refused, naming where it ended, and never half-extracted into a job that runs.
A zip archive (as some SageMaker ``sourcedir`` uploads are) is extracted with the same rules by
:func:`extract_zip`; anything else is refused as not an archive.

A hostile archive is refused: a member whose name is absolute or climbs out with ``..``, a symlink or
hard link that points outside the destination, a
device file or a FIFO. The error names the member. Every path is checked against the real
(symlink-resolved) destination before anything is written, so nothing outside it is touched.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from smc_core.errors import FetchError

__all__ = ["archive_kind", "extract_archive", "extract_tar", "extract_zip", "is_archive", "is_tarball"]

_CHUNK = 1024 * 1024


def is_tarball(path: Path | str) -> bool:
    """True when ``path`` is a file that holds a tar archive (compressed or not)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip
)


def archive_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is: ``gzip``, ``bzip2``, ``xz``, ``zip``, ``tar``, or None."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) >= 512 and _tar_checksum_ok(head[:512]):
        return "tar"  # an old (v7) tar header
    return None


def _tar_checksum_ok(block: bytes) -> bool:
    try:
        return tarfile.nti(block[148:156]) in tarfile.calc_chksums(block)  # type: ignore[attr-defined]
    except (tarfile.HeaderError, ValueError):
        return False


def is_archive(path: Path | str) -> bool:
    """True when ``path`` is a file that begins like a tar, gzip, bzip2, xz or zip archive."""
    try:
        with open(path, "rb") as file:
            return archive_kind(file.read(512)) is not None
    except OSError:
        return False


class _Checked(io.RawIOBase):
    """The decompressed bytes of ``stream`` (which began with ``head``), refusing a truncated stream."""

    def __init__(self, stream: Any, head: bytes, kind: str, label: str) -> None:
        super().__init__()
        self.stream, self.pending, self.kind, self.label = stream, head, kind, label
        self.consumed = 0
        self.decompressor = self._new()
        self.out = b""
        self.finished = False
        self.delivered = 0  # decompressed bytes handed on

    def _new(self) -> Any:
        if self.kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)  # checks the trailer's CRC and length
        if self.kind == "bzip2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self.out and not self.finished:
            data = self.pending or self.stream.read(_CHUNK)
            self.pending = b""
            if not data:
                if not self.decompressor.eof:
                    raise FetchError(
                        f"{self.label}: the {self.kind} archive is truncated: it ends after {self.consumed} "
                        "bytes, before the end of its compressed stream. Upload the complete archive "
                        "again (the file may have been cut short in transfer)."
                    )
                self.finished = True
                break
            self.consumed += len(data)
            try:
                self.out = self.decompressor.decompress(data)
            except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
                raise FetchError(
                    f"{self.label}: the {self.kind} archive is corrupt near byte {self.consumed}: {exc}. "
                    "Upload an intact archive (e.g. `tar -czf sourcedir.tar.gz -C src .`)."
                ) from exc
            rest = getattr(self.decompressor, "unused_data", b"")
            if self.decompressor.eof and rest:  # another gzip member follows (concatenated files)
                self.decompressor = self._new()
                self.pending = rest
        count = min(len(view), len(self.out))
        self.delivered += count
        view[:count] = self.out[:count]
        self.out = self.out[count:]
        return count


def _inside(root: str, path: str) -> bool:
    return (bool(path) and path == root) or path.startswith(root.rstrip(os.sep) + os.sep)


def _refuse(source: str, member: str, why: str) -> FetchError:
    return FetchError(
        f"{source}: refusing to extract member {member!r}: {why}. Nothing was extracted outside the "
        "code directory. Rebuild the archive from the source directory (e.g. `tar -czf sourcedir.tar.gz "
        "-C src .`) without absolute paths, '..', or links that point outside it."
    )


def _target(root: str, name: str, source: str) -> str:
    """The real path member ``name`` lands on under ``root``, or a refusal."""
    posix = PurePosixPath(name)
    if posix.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(source, name, "its path is absolute")
    if ".." in posix.parts:
        raise _refuse(source, name, "its path contains '..'")
    parts = [p for p in posix.parts if p not in ("", ".")]
    if not parts:
        return root
    parent = os.path.realpath(os.path.join(root, *parts[:-1]))
    if not _inside(root, parent):
        raise _refuse(source, name, f"its parent directory resolves to {parent}, outside the destination")
    return os.path.join(parent, parts[-1])


def extract_tar(
    src: Path | str | IO[bytes] | io.RawIOBase,
    dest: Path | str,
    *,
    source: str | None = None,
    on_member: Callable[[tarfile.TarInfo], None] | None = None,
) -> list[str]:
    """Extract the tar archive ``src`` (a path or a readable binary stream) into ``dest``, safely.

    The archive is read once, front to back (``tarfile`` stream mode), so ``src`` may be a network
    stream. Regular files, directories, symlinks and hard links that stay inside ``dest`` are
    created; file modes are kept (without set-uid/set-gid bits), owners are not.

    :param src: the archive: a path, or a binary stream positioned at its start.
    :param dest: the destination directory (created when missing).
    :param source: how to name the archive in errors (default: ``src``).
    :param on_member: called with each member before it is extracted (progress, logging).
    :return: the names of the members extracted, in archive order.
    :raises FetchError: the archive is not a tar archive, is truncated, or holds a hostile member
        (the message names it).
    """
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest_path)
    label = source or (os.fspath(src) if isinstance(src, (str, Path)) else "archive")
    names: list[str] = []
    try:
        if isinstance(src, (str, Path)):
            with open(src, "rb") as stream:
                _extract_stream(stream, root, label, names, on_member)
        else:
            _extract_stream(src, root, label, names, on_member)
    except FetchError:
        raise
    except OSError as exc:
        raise FetchError(
            f"{label}: cannot extract into {dest_path}: {exc}. Check that the code directory is writable "
            "and the disk has room."
        ) from exc
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise FetchError(
            f"{label}: cannot extract: {type(exc).__name__}: {exc}. Expected a tar archive "
            "(a .tar.gz as the SageMaker SDK uploads); check that the object is complete and not corrupt."
        ) from exc
    return names


def _read_head(stream: Any, size: int) -> bytes:
    head = b""
    while len(head) < size:
        data = stream.read(size - len(head))
        if not data:
            break
        head += data
    return head


def _extract_stream(
    stream: IO[bytes] | io.RawIOBase,
    root: str,
    label: str,
    names: list[str],
    on_member: Callable[[tarfile.TarInfo], None] | None,
) -> None:
    head = _read_head(stream, 512)
    kind = archive_kind(head)
    if kind is None:
        shown = head[:16]
        raise FetchError(
            f"{label}: not an archive: it is {len(head)}{'+' if len(head) == 512 else ''} bytes beginning "
            f"{shown!r}, neither tar (.tar, .tar.gz, .tar.bz2, .tar.xz) nor zip. Upload the code as "
            "sourcedir.tar.gz (e.g. `tar -czf sourcedir.tar.gz -C src .`)."
        )
    if kind == "zip":
        _extract_zip_stream(stream, head, root, label, names)
        return
    tar_stream: Any = _Checked(stream, head, kind, label) if kind != "tar" else _Prefixed(stream, head)
    with tarfile.open(fileobj=tar_stream, mode="r|") as archive:
        for member in archive:
            if on_member is not None:
                on_member(member)
            _extract_member(archive, member, root, label)
            names.append(member.name)
        # A tar archive ends with zero blocks; one cut exactly between two members just stops, which
        # tarfile takes for the end. Stopping with no end-of-archive block read means it was cut.
        if tar_stream.delivered < archive.offset + tarfile.BLOCKSIZE:
            raise FetchError(
                f"{label}: the tar archive is truncated: it ends after {archive.offset} bytes of tar data, "
                f"after the member {names[-1] if names else '(none)'!r}, without the end-of-archive "
                "marker. Upload the complete archive again."
            )


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``stream``."""

    def __init__(self, stream: Any, head: bytes) -> None:
        super().__init__()
        self.stream, self.head = stream, head
        self.delivered = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.head[: len(view)] if self.head else self.stream.read(len(view))
        self.head = self.head[len(data) :] if self.head else b""
        view[: len(data)] = data
        self.delivered += len(data)
        return len(data)


def _extract_zip_stream(stream: Any, head: bytes, root: str, label: str, names: list[str]) -> None:
    """Spool a zip archive (which needs seeking) next to ``root``, then extract it safely."""
    with tempfile.TemporaryFile(dir=os.path.dirname(root) or None) as spool:
        spool.write(head)
        shutil.copyfileobj(stream, spool, _CHUNK)
        spool.seek(0)
        _extract_zip_file(spool, root, label, names)


def extract_zip(src: Path | str, dest: Path | str, *, source: str | None = None) -> list[str]:
    """Extract the zip archive ``src`` into ``dest`` by the same rules as :func:`extract_tar`.

    :raises FetchError: a member is absolute, climbs out with ``..``, or is a symlink; or the file
        is not a complete zip archive.
    """
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    with open(src, "rb") as file:
        _extract_zip_file(file, os.path.realpath(dest_path), source or os.fspath(src), names)
    return names


def _extract_zip_file(file: Any, root: str, label: str, names: list[str]) -> None:
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                target = _target(root, info.filename, label)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise _refuse(label, info.filename, "it is a symlink (not accepted from zip archives)")
                if info.is_dir():
                    os.makedirs(target, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    _replace(target)
                    with archive.open(info) as member, open(target, "xb") as out:
                        shutil.copyfileobj(member, out, _CHUNK)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode:
                        os.chmod(target, mode | stat.S_IRUSR | stat.S_IWUSR)
                names.append(info.filename)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise FetchError(
            f"{label}: the zip archive is truncated or corrupt: {exc}. Upload the complete archive "
            "again (or as sourcedir.tar.gz)."
        ) from exc


def extract_archive(src: Path | str, dest: Path | str, *, source: str | None = None) -> list[str]:
    """Extract ``src`` (tar in any compression, or zip) into ``dest``: see :func:`extract_tar`."""
    return extract_tar(src, dest, source=source)


def _replace(path: str) -> None:
    """Remove what is at ``path`` (a member given twice: the later one wins, as tar does)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, root: str, label: str) -> None:
    target = _target(root, member.name, label)
    mode = member.mode & 0o777  # no set-uid, set-gid or sticky bits
    if member.isdir():
        if os.path.lexists(target) and not os.path.isdir(target):
            _replace(target)
        if target != root:
            os.makedirs(target, exist_ok=True)
            os.chmod(target, mode | stat.S_IRWXU)
        return
    if target == root:
        raise _refuse(label, member.name, "it would replace the destination directory itself")
    os.makedirs(os.path.dirname(target), exist_ok=True)  # archives need not list parent directories
    if member.isreg():
        _replace(target)
        fileobj: Any = archive.extractfile(member)
        with open(target, "xb") as out:
            while True:
                chunk = fileobj.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
        os.chmod(target, mode | stat.S_IRUSR | stat.S_IWUSR)
        return
    if member.issym():
        link = member.linkname
        if os.path.isabs(link) or link.startswith("\\"):
            raise _refuse(label, member.name, f"it is a symlink to the absolute path {link!r}")
        resolved = os.path.realpath(os.path.join(os.path.dirname(target), link))
        if not _inside(root, resolved):
            raise _refuse(
                label, member.name, f"it is a symlink to {link!r}, which points outside the destination"
            )
        _replace(target)
        os.symlink(link, target)
        return
    if member.islnk():
        try:
            linked = os.path.realpath(_target(root, member.linkname, label))
        except FetchError:
            linked = ""
        if not _inside(root, linked) or linked == root:
            raise _refuse(
                label, member.name, f"it is a hard link to {member.linkname!r}, outside the destination"
            )
        if not os.path.isfile(linked):
            raise _refuse(
                label,
                member.name,
                f"it is a hard link to {member.linkname!r}, which is not an extracted file",
            )
        _replace(target)
        os.link(linked, target)
        return
    kind = (
        "a character device"
        if member.ischr()
        else "a block device"
        if member.isblk()
        else ("a FIFO" if member.isfifo() else f"of an unsupported type ({member.type!r})")
    )
    raise _refuse(label, member.name, f"it is {kind}")
