"""Files smc writes in the job dir, never through what someone else put there.

The user's code (or an earlier job) can leave anything under a name smc writes: a symbolic link to a
file outside the job dir, a hard link to one, a named pipe. :func:`open_own_file` opens smc's own file
(the job lock, the failure file's reserve, a temporary file) without following a link, and replaces
whatever is not a plain file of smc's with a new one, so nothing outside the job dir is truncated or
written, and nothing blocks on a pipe.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from smc_core.base.log import logger

__all__ = ["open_own_file", "write_own_file"]

_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _replace(path: Path, what: str) -> None:
    logger.warning("Replacing %s at %s with a file of smc's own (never written through).", what, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def open_own_file(path: Path | str, flags: int = os.O_RDWR, mode: int = 0o644) -> int:
    """Open (creating when missing) the file ``path`` that smc owns, as a file descriptor.

    A symbolic link, a file with other hard links, or anything not a regular file at ``path`` is
    removed first, with a warning, and a new file is created in its place: what it pointed to is
    left as it was.

    :param flags: ``os.O_RDWR`` or ``os.O_WRONLY`` (``O_CREAT`` is added; never ``O_TRUNC``, which
        would empty a hard-linked file before it is checked: truncate the descriptor afterwards).
    """
    path = Path(path)
    for _ in range(3):
        try:
            fd = os.open(path, flags | os.O_CREAT | _FLAGS, mode)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symbolic link (O_NOFOLLOW)
                with contextlib.suppress(OSError):
                    _replace(path, f"a symbolic link (to {os.readlink(path)})")
                continue
            if exc.errno == errno.ENXIO:  # a named pipe with no reader (O_NONBLOCK)
                _replace(path, "a named pipe")
                continue
            raise
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink <= 1:
            os.set_blocking(fd, True)
            return fd
        os.close(fd)
        _replace(path, "a hard link to another file" if stat.S_ISREG(st.st_mode) else "a special file")
    raise OSError(errno.EEXIST, f"{path} keeps being replaced by something that is not smc's file")


def write_own_file(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` as a new file of smc's own (see :func:`open_own_file`)."""
    fd = open_own_file(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
