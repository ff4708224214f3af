"""Watching a directory tree for files that were written and closed.

:class:`ClosedFileWatcher` calls ``on_closed(path)`` for every file under ``root`` (subdirectories
included, also those created later) when a writer closes it, and ``on_deleted(path)`` when one is
deleted. On Linux it uses inotify through ``inotify_simple`` (the kernel says exactly when a writer
closes a file: ``IN_CLOSE_WRITE``; a file renamed into the tree counts as closed). Where inotify is
not available it polls: a file counts as closed once its size and modification time have stayed the
same for one whole poll interval, which cannot tell a file held open but idle from a closed one; the
final flush of a sync uploads whatever the polls missed. A root that is deleted and created again
is watched again as soon as it is back (its files reported then): nothing waits for the final flush.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smc_core.base.log import logger
from smc_core.outputs.upload import lower_priority

__all__ = ["ClosedFileWatcher", "inotify_available"]


def inotify_available() -> bool:
    """Whether inotify can be used here (Linux with ``inotify_simple`` installed)."""
    try:
        import inotify_simple  # noqa: F401  # optional: polling where it is missing
    except ImportError:
        return False
    return hasattr(os, "uname") and os.uname().sysname == "Linux"


class ClosedFileWatcher:
    """Reports files closed after writing under ``root``, from a background thread.

    :param root: the directory to watch (created if missing).
    :param on_closed: called with the file's path each time a writer closes it.
    :param on_deleted: called with the path of a file that was deleted.
    :param poll_interval: seconds between scans when polling (no inotify).
    :param use_inotify: None picks inotify when available; False forces polling.
    """

    def __init__(
        self,
        root: Path | str,
        on_closed: Callable[[Path], None],
        on_deleted: Callable[[Path], None] = lambda path: None,
        *,
        poll_interval: float = 1.0,
        use_inotify: bool | None = None,
    ) -> None:
        self.root = Path(root)
        self.on_closed = on_closed
        self.on_deleted = on_deleted
        self.poll_interval = poll_interval
        self.uses_inotify = inotify_available() if use_inotify is None else use_inotify
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._root_lost = False

    def start(self) -> ClosedFileWatcher:
        """Start watching; returns once the watches are in place (events from then on are seen)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self._run_inotify if self.uses_inotify else self._run_polling
        self._thread = threading.Thread(target=target, name=f"smc-watch-{self.root.name}", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def stop(self) -> None:
        """Stop watching and wait for the thread to end (events already read are delivered first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _deliver(self, callback: Callable[[Path], None], path: Path) -> None:
        try:
            callback(path)
        except Exception:  # a failing callback must not end the watch
            logger.exception("Watching %s: handling %s failed", self.root, path)

    # --- inotify ---------------------------------------------------------------------------------
    def _run_inotify(self) -> None:
        from inotify_simple import INotify, flags  # optional (see inotify_available)

        lower_priority()
        mask = (
            flags.CLOSE_WRITE
            | flags.MOVED_TO
            | flags.CREATE
            | flags.DELETE
            | flags.MOVED_FROM
            | flags.DELETE_SELF
            | flags.Q_OVERFLOW
        )
        inotify = INotify()
        dirs: dict[int, Path] = {}

        def watch_tree(directory: Path) -> None:
            for current, subdirs, _ in os.walk(directory):
                try:
                    dirs[inotify.add_watch(current, mask)] = Path(current)
                except OSError as error:  # removed meanwhile, or out of watches
                    logger.warning("Cannot watch %s: %s", current, error)
                subdirs.sort()

        try:
            watch_tree(self.root)
            self._ready.set()
            while not self._stop.is_set():
                for event in inotify.read(timeout=200):
                    self._handle(event, dirs, watch_tree, flags)
                if self._root_lost and self.root.is_dir():  # deleted, and made again
                    self._root_lost = False
                    logger.info("Watching %s again: it was deleted and created again.", self.root)
                    watch_tree(self.root)
                    self._report_files(self.root)
            for event in inotify.read(timeout=0):  # what happened just before stop()
                self._handle(event, dirs, watch_tree, flags)
        finally:
            self._ready.set()
            inotify.close()

    def _handle(self, event: Any, dirs: dict[int, Path], watch_tree: Any, flags: Any) -> None:
        parent = dirs.get(event.wd)
        if event.mask & flags.Q_OVERFLOW:
            logger.warning(
                "Watching %s: too many events at once; the final flush uploads the rest.", self.root
            )
            return
        if parent is None:
            return
        path = parent / event.name if event.name else parent
        if event.mask & flags.DELETE_SELF:
            dirs.pop(event.wd, None)
            if parent == self.root:
                self._root_lost = True
        elif event.mask & flags.ISDIR:
            if event.mask & (flags.CREATE | flags.MOVED_TO):
                watch_tree(path)
                # files written before the watch was in place: report the closed-looking ones
                self._report_files(path)
        elif event.mask & (flags.CLOSE_WRITE | flags.MOVED_TO):
            self._deliver(self.on_closed, path)
        elif event.mask & (flags.DELETE | flags.MOVED_FROM):
            self._deliver(self.on_deleted, path)

    def _report_files(self, directory: Path) -> None:
        for current, _, files in os.walk(directory):
            for name in sorted(files):
                self._deliver(self.on_closed, Path(current) / name)

    # --- polling ---------------------------------------------------------------------------------
    def _scan(self) -> dict[Path, tuple[int, int]]:
        found: dict[Path, tuple[int, int]] = {}
        for current, _, files in os.walk(self.root):
            for name in files:
                path = Path(current) / name
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found[path] = (stat.st_size, stat.st_mtime_ns)
        return found

    def _run_polling(self) -> None:
        lower_priority()
        previous = self._scan()
        reported: dict[Path, tuple[int, int]] = dict(previous)  # present at start: not new
        self._ready.set()
        while not self._stop.wait(self.poll_interval):
            current = self._scan()
            for path, state in current.items():
                if previous.get(path) == state and reported.get(path) != state:
                    reported[path] = state
                    self._deliver(self.on_closed, path)
            for path in set(previous) - set(current):
                reported.pop(path, None)
                self._deliver(self.on_deleted, path)
            previous = current
