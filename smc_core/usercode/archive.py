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
import queue
import shutil
import stat
import tarfile
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from smc_core.errors import FetchError

__all__ = [
    "archive_kind",
    "extract_archive",
    "extract_tar",
    "extract_zip",
    "gzip_decompressor",
    "is_archive",
    "is_tarball",
]

_CHUNK = 1024 * 1024
_READ_SIZE = 1024 * 1024  # compressed bytes per read of the source
_PIECE = 4 * 1024 * 1024  # decompressed bytes at most per piece handed on
_QUEUE_DEPTH = 4  # pieces read or decoded ahead of the next stage


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


def gzip_decompressor() -> Any:
    """A gzip decompressor: ``isal``'s (ISA-L, several times faster) when installed, else zlib's.

    Both check the trailer's CRC and length. isal comes with smc-core where it has a wheel.
    """
    try:
        from isal import isal_zlib  # optional: no wheel on some platforms

        return isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
    except ImportError:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)


def _corrupt_errors() -> tuple[type[BaseException], ...]:
    """What decompressors raise on corrupt data (ISA-L's error is none of the standard ones)."""
    errors: list[type[BaseException]] = [zlib.error, OSError, lzma.LZMAError, EOFError]
    try:
        from isal import isal_zlib  # optional (above)

        errors.append(isal_zlib.error)  # type: ignore[arg-type]  # a class; its stub says instance
    except ImportError:
        pass
    return tuple(errors)


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return gzip_decompressor()
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


_END = b""


class _Ahead(threading.Thread):
    """Runs ``produce`` on a thread of its own, handing what it yields on through a bounded queue.

    Two of these make the extraction a pipeline: one reads the source (the network), one
    decompresses (zlib and ISA-L release the interpreter lock); the caller parses the archive and
    writes the files, all at the same time. An exception in ``produce`` reaches the caller of
    :meth:`get`, which raises it; :meth:`stop` ends the thread early (the reader gave up).
    """

    def __init__(self, produce: Callable[[], Iterator[bytes]], name: str) -> None:
        super().__init__(daemon=True, name=name)
        self.produce = produce
        self.items: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.stopped = threading.Event()
        self.ended = False

    def run(self) -> None:
        try:
            for item in self.produce():
                if not item:
                    continue
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def get(self) -> bytes:
        """The next item; ``b""`` at the end."""
        if self.ended:
            return _END
        while True:
            try:
                item = self.items.get(timeout=0.1)
                break
            except queue.Empty:
                if self.stopped.is_set() or (not self.is_alive() and self.items.empty()):
                    self.ended = True  # stopped early: nothing more comes
                    return _END
        if isinstance(item, BaseException):
            self.ended = True
            raise item
        if not item:
            self.ended = True
        return item

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self.get()
            if not item:
                return
            yield item

    def stop(self) -> None:
        """Stop producing."""
        self.stopped.set()

    def _put(self, item: bytes | BaseException) -> bool:
        while not self.stopped.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def _reads(stream: Any, head: bytes) -> Iterator[bytes]:
    """``head``, then ``stream`` read to its end."""
    yield head
    while True:
        data = stream.read(_READ_SIZE)
        if not data:
            return
        yield data


def _decoded(compressed: Iterator[bytes], kind: str, label: str) -> Iterator[bytes]:
    """The decompressed bytes of ``compressed``, refusing a truncated or corrupt stream."""
    consumed = 0
    decompressor = _decompressor(kind)
    pending = b""
    while True:
        data = pending or next(compressed, b"")
        pending = b""
        if not data:
            if not decompressor.eof:
                raise FetchError(
                    f"{label}: the {kind} archive is truncated: it ends after {consumed} "
                    "bytes, before the end of its compressed stream. Upload the complete archive "
                    "again (the file may have been cut short in transfer)."
                )
            return
        consumed += len(data)
        try:
            yield from _decompress(decompressor, data)
        except _corrupt_errors() as exc:
            raise FetchError(
                f"{label}: the {kind} archive is corrupt near byte {consumed}: {exc}. "
                "Upload an intact archive (e.g. `tar -czf sourcedir.tar.gz -C src .`)."
            ) from exc
        rest = getattr(decompressor, "unused_data", b"")
        if decompressor.eof and rest:  # another gzip member follows (concatenated files)
            decompressor = _decompressor(kind)
            pending = rest


def _decompress(decompressor: Any, data: bytes) -> Iterator[bytes]:
    """``data`` decompressed, in pieces of at most :data:`_PIECE` bytes (a bomb stays bounded)."""
    if hasattr(decompressor, "unconsumed_tail"):  # zlib and isal
        while data:
            out = decompressor.decompress(data, _PIECE)
            data = decompressor.unconsumed_tail
            if out:
                yield out
            if decompressor.eof:
                return
        return
    out = decompressor.decompress(data, _PIECE)  # bz2, lzma
    while True:
        if out:
            yield out
        if decompressor.eof or decompressor.needs_input:
            return
        out = decompressor.decompress(b"", _PIECE)


class _Forward:
    """The decompressed archive as a file that reads front to back and seeks only forward, which is
    all :class:`tarfile.TarFile` needs to extract members in order (no 10 KiB stream records, no
    re-joined buffers as in ``tarfile``'s stream mode)."""

    def __init__(self, source: _Ahead, stages: list[_Ahead]) -> None:
        self.source, self.stages = source, stages
        self.chunk = b""
        self.offset = 0  # in chunk
        self.position = 0  # in the archive
        self.ended = False

    def _next_chunk(self) -> bool:
        if self.ended:
            return False
        try:
            item = self.source.get()
        except BaseException:
            self.ended = True
            raise
        if not item:
            self.ended = True
            return False
        self.chunk, self.offset = item, 0
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative)."""
        want = size if size is not None and size >= 0 else 1 << 62
        parts: list[bytes] = []
        while want > 0:
            if self.offset >= len(self.chunk) and not self._next_chunk():
                break
            take = min(want, len(self.chunk) - self.offset)
            if self.offset == 0 and take == len(self.chunk):
                parts.append(self.chunk)
            else:
                parts.append(self.chunk[self.offset : self.offset + take])
            self.offset += take
            self.position += take
            want -= take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def seek(self, position: int, whence: int = 0) -> int:
        """Move forward to ``position`` (only forward: the archive is read once)."""
        if whence != 0 or position < self.position:
            raise tarfile.StreamError(f"cannot seek back in a stream (to {position}, at {self.position})")
        skip = position - self.position
        while skip > 0:
            if self.offset >= len(self.chunk) and not self._next_chunk():
                break
            take = min(skip, len(self.chunk) - self.offset)
            self.offset += take
            self.position += take
            skip -= take
        return self.position

    def tell(self) -> int:
        """The position in the decompressed archive."""
        return self.position

    def drain(self) -> None:
        """Read to the end, so that a truncated or corrupt tail is refused too."""
        while self._next_chunk():
            self.position += len(self.chunk) - self.offset
            self.offset = len(self.chunk)

    def close(self) -> None:
        """Stop the threads feeding this (and wait until they have ended)."""
        for stage in self.stages:
            stage.stop()
        for stage in self.stages:
            stage.join()


def _inside(root: str, path: str) -> bool:
    return (bool(path) and path == root) or path.startswith(root.rstrip(os.sep) + os.sep)


def _refuse(source: str, member: str, why: str) -> FetchError:
    return FetchError(
        f"{source}: refusing to extract member {member!r}: {why}. Nothing was extracted outside the "
        "code directory. Rebuild the archive from the source directory (e.g. `tar -czf sourcedir.tar.gz "
        "-C src .`) without absolute paths, '..', or links that point outside it."
    )


class _Dirs:
    """The directories under the destination known to be real (no symlink on the way) and present.

    Resolving every member's parent (``realpath``: an ``lstat`` a path component) and creating it
    (``makedirs``) made a source tree of 100,000 small files cost several times GNU tar's system
    calls. A parent found here is neither resolved nor created again. What could make an entry wrong
    empties the whole record: a symlink extracted (it may re-route a path), a directory removed (a
    later member of the same name replaced it).
    """

    def __init__(self) -> None:
        self.parents: dict[tuple[str, ...], str] = {}

    def forget(self) -> None:
        self.parents.clear()


def _target(root: str, name: str, source: str, dirs: _Dirs | None = None) -> tuple[str, tuple[str, ...]]:
    """The real path member ``name`` lands on under ``root`` and its parent's key in ``dirs``, or a
    refusal."""
    posix = PurePosixPath(name)
    if posix.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(source, name, "its path is absolute")
    if ".." in posix.parts:
        raise _refuse(source, name, "its path contains '..'")
    parts = tuple(p for p in posix.parts if p not in ("", "."))
    if not parts:
        return root, ()
    key = parts[:-1]
    parent = dirs.parents.get(key) if dirs is not None else None
    if parent is None:
        parent = os.path.realpath(os.path.join(root, *key))
        if not _inside(root, parent):
            raise _refuse(source, name, f"its parent directory resolves to {parent}, outside the destination")
    return os.path.join(parent, parts[-1]), key


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
    raw = _Ahead(lambda: _reads(stream, head), "smc-extract-read")
    stages = [raw]
    if kind != "tar":
        stages.append(_Ahead(lambda: _decoded(iter(raw), kind, label), "smc-extract-decompress"))
    forward = _Forward(stages[-1], stages)
    for stage in stages:
        stage.start()
    dirs = _Dirs()
    try:
        with tarfile.TarFile(fileobj=forward, mode="r") as archive:  # type: ignore[arg-type]
            for member in archive:
                if on_member is not None:
                    on_member(member)
                _extract_member(archive, member, root, label, dirs)
                names.append(member.name)
                # tarfile keeps every member it has read (for lookups this never makes): 100,000 of
                # them held 50 MiB to the end. Its iteration reads the next one all the same.
                archive.members.clear()  # type: ignore[attr-defined]  # (typeshed lacks it)
            # A tar archive ends with zero blocks; one cut exactly between two members just stops,
            # which tarfile takes for the end. Stopping with no end-of-archive block read means it was cut.
            if forward.position < archive.offset + tarfile.BLOCKSIZE:
                raise FetchError(
                    f"{label}: the tar archive is truncated: it ends after {archive.offset} bytes of tar "
                    f"data, after the member {names[-1] if names else '(none)'!r}, without the "
                    "end-of-archive marker. Upload the complete archive again."
                )
        forward.drain()
    finally:
        forward.close()


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
                target, _ = _target(root, info.filename, label)
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
    """Extract the archive ``src`` (tar, plain or gzip, bzip2 or xz compressed, or zip) into ``dest``,
    safely, and return the names of its members.

    A member that would land outside ``dest`` (an absolute name, ``..``, a link pointing out), a
    device file or a FIFO is refused, naming it, before anything of it is written; a truncated or
    corrupt archive is refused, naming where it ended. See :func:`extract_tar` (which also reads a
    stream) for the rules.

    :param source: how to name the archive in errors (default: ``src``).
    :raises FetchError: not an archive, truncated or corrupt, or a hostile member.

    Example::

        from smc_core import extract_archive

        extract_archive("sourcedir.tar.gz", "/tmp/code")  # ["train.py", "requirements.txt", ...]
    """
    return extract_tar(src, dest, source=source)


def _replace(path: str, dirs: _Dirs | None = None) -> None:
    """Remove what is at ``path`` (a member given twice: the later one wins, as tar does)."""
    if os.path.islink(path) or os.path.isfile(path):
        if dirs is not None and os.path.islink(path):
            dirs.forget()  # it may have been the way to a directory already resolved
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
        if dirs is not None:
            dirs.forget()


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def _create(target: str, dirs: _Dirs) -> int:
    """A new file at ``target`` (whatever was there removed first), open for writing."""
    try:
        return os.open(target, _CREATE, 0o600)
    except FileExistsError:  # a member given twice, or a directory or link of the same name
        _replace(target, dirs)
        return os.open(target, _CREATE, 0o600)


def _extract_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, root: str, label: str, dirs: _Dirs | None = None
) -> None:
    dirs = dirs if dirs is not None else _Dirs()
    target, key = _target(root, member.name, label, dirs)
    mode = member.mode & 0o777  # no set-uid, set-gid or sticky bits
    if member.isdir():
        if os.path.lexists(target) and not os.path.isdir(target):
            _replace(target, dirs)
        if target != root:
            os.makedirs(target, exist_ok=True)
            os.chmod(target, mode | stat.S_IRWXU)
            if not os.path.islink(target):  # a real directory now: its members need no resolving
                here = (*key, os.path.basename(target))
                dirs.parents[here] = target
        return
    if target == root:
        raise _refuse(label, member.name, "it would replace the destination directory itself")
    if key not in dirs.parents:
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)  # archives need not list parent directories
        dirs.parents[key] = parent
    if member.isreg():
        fileobj: Any = archive.extractfile(member)
        fd = _create(target, dirs)
        with open(fd, "wb") as out:
            while True:
                chunk = fileobj.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
            os.fchmod(fd, mode | stat.S_IRUSR | stat.S_IWUSR)
        return
    if member.issym():
        dirs.forget()  # a symlink may re-route paths already resolved
        link = member.linkname
        if os.path.isabs(link) or link.startswith("\\"):
            raise _refuse(label, member.name, f"it is a symlink to the absolute path {link!r}")
        resolved = os.path.realpath(os.path.join(os.path.dirname(target), link))
        if not _inside(root, resolved):
            raise _refuse(
                label, member.name, f"it is a symlink to {link!r}, which points outside the destination"
            )
        _replace(target, dirs)
        os.symlink(link, target)
        return
    if member.islnk():
        try:
            linked = os.path.realpath(_target(root, member.linkname, label)[0])
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
        _replace(target, dirs)
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
