"""Whole lines from torchrun's ``--tee``: a replacement for torch's ``tail_logfile``.

torchrun's ``--tee`` copies each worker's log file to the console with ``readline()`` in a loop; a
``readline()`` at the end of a file the worker is still writing returns the part of a line written so
far, so under load a line comes out split in two (the second half without its rank prefix), and
millions of lines go out one ``write`` each. :func:`tail_whole_lines` reads the file in large
blocks and passes on only complete lines, every line of a block prefixed and written at once; a last
line without a newline goes out when the worker has ended. :func:`install` puts it in place of
torch's function (the one name ``TailLog`` calls), when torch has that function with that signature.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["install", "tail_whole_lines"]

_BLOCK = 1024 * 1024
_WRITE_LOCK = threading.Lock()
_KEEP_ALL: list[object] = []  # TailLog's default filter, which keeps every line: no per-line call


def tail_whole_lines(
    header: str,
    file: str,
    dst: TextIO,
    finished: threading.Event,
    interval_sec: float,
    log_line_filter: Callable[[str], bool] | None = None,
) -> None:
    """Copy ``file`` to ``dst`` until ``finished`` is set and the file is read to its end, each line
    whole and prefixed with ``header`` (torch's ``tail_logfile`` signature)."""
    while not os.path.exists(file):
        if finished.is_set():
            return
        time.sleep(interval_sec)
    prefix = header.encode()
    pending = b""
    with open(file, "rb") as fp:
        while True:
            block = fp.read(_BLOCK)
            if not block:
                if not finished.is_set():
                    time.sleep(interval_sec)
                    continue
                block = fp.read()  # what was written between the last read and the end
                if not block:
                    break
            pending += block
            cut = pending.rfind(b"\n") + 1
            if cut:
                _write(dst, prefix, pending[:cut], log_line_filter)
                pending = pending[cut:]
    if pending:
        _write(dst, prefix, pending + b"\n", log_line_filter)


def _write(dst: TextIO, prefix: bytes, lines: bytes, keep: Callable[[str], bool] | None) -> None:
    """Write ``lines`` (whole lines, the last ending in a newline) to ``dst``, each line prefixed."""
    if keep is not None and not any(keep is k for k in _KEEP_ALL):
        text = "".join(
            line for line in lines.decode("utf-8", "replace").splitlines(keepends=True) if keep(line)
        )
        body = "".join(prefix.decode() + line for line in text.splitlines(keepends=True))
        if body:
            with _WRITE_LOCK:
                dst.write(body)
                dst.flush()
        return
    # Every newline followed by the prefix: the last one's (the next line's) is cut off again. Two
    # copies of the block in all, and the bytes go to the binary stream under ``dst`` as they are: at
    # 8 ranks of 1M lines a decode and an encode more were a third of the copying (issue 28).
    data = lines.replace(b"\n", b"\n" + prefix)
    end = len(data) - len(prefix)
    binary = getattr(dst, "buffer", None)
    with _WRITE_LOCK:
        if binary is None:
            dst.write((prefix + data[:end]).decode("utf-8", "replace"))
            dst.flush()
            return
        dst.flush()  # whatever was written to it as text comes first
        binary.write(b"".join((prefix, memoryview(data)[:end])))
        binary.flush()


def install() -> bool:
    """Use :func:`tail_whole_lines` for torchrun's ``--tee``; False when torch's function is not there
    as expected (torch's own is then used)."""
    try:
        from torch.distributed.elastic.multiprocessing import tail_log
    except ImportError:
        return False
    original = getattr(tail_log, "tail_logfile", None)
    if original is None:
        return False
    expected = ["header", "file", "dst", "finished", "interval_sec"]
    if list(inspect.signature(original).parameters)[:5] != expected:
        return False
    with_default = inspect.signature(tail_log.TailLog.__init__).parameters.get("log_line_filter")
    if with_default is not None and with_default.default is not inspect.Parameter.empty:
        _KEEP_ALL.append(with_default.default)
    tail_log.tail_logfile = tail_whole_lines
    return True
