"""Safe extraction of tar archives, read as a stream (no temporary copy, no second pass).

:func:`extract_tar` reads a tar archive (plain, gzip, bzip2 or xz) from a path or any readable
binary stream, one member at a time, and refuses a hostile archive: a member whose name is
absolute or climbs out with ``..``, a symlink or hard link that points outside the destination, a
device file or a FIFO. The error names the member. Every path is checked against the real
(symlink-resolved) destination before anything is written, so nothing outside it is touched.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from smc_core.errors import FetchError

__all__ = ["extract_tar", "is_tarball"]

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


def _extract_stream(
    stream: IO[bytes] | io.RawIOBase,
    root: str,
    label: str,
    names: list[str],
    on_member: Callable[[tarfile.TarInfo], None] | None,
) -> None:
    with tarfile.open(fileobj=stream, mode="r|*") as archive:
        for member in archive:
            if on_member is not None:
                on_member(member)
            _extract_member(archive, member, root, label)
            names.append(member.name)


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
