"""A directory kept in step with an S3 prefix while a job runs: a watcher feeding an uploader.

:func:`start_directory_sync` starts both; :meth:`DirectorySync.finish` stops watching, uploads
everything not yet uploaded (bounded by a timeout) and says what could not be uploaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smc_core.base.log import logger
from smc_core.outputs.upload import PrefixUploader, UploadFailure
from smc_core.outputs.watch import ClosedFileWatcher

__all__ = ["DirectorySync", "SyncReport", "start_directory_sync"]


@dataclass(frozen=True)
class SyncReport:
    """How a sync ended."""

    uri: str
    """The S3 prefix."""
    uploaded: int
    """Uploads that succeeded during the whole sync (a file changed twice counts twice)."""
    failures: list[UploadFailure] = field(default_factory=list)
    """Files that are not in S3 in their final state, with the last error."""
    timed_out: bool = False
    """The final flush ran out of time with uploads still running."""

    @property
    def complete(self) -> bool:
        """Every file reached S3."""
        return not self.failures and not self.timed_out

    def problem(self, what: str, timeout: float) -> str | None:
        """One paragraph saying what did not reach S3 and what to do, or None when all did."""
        if self.complete:
            return None
        lines = []
        if self.timed_out:
            lines.append(
                f"{what}: the final upload to {self.uri} did not finish within {timeout:g} s; files may be "
                "missing in S3 (raise SMC_SYNC_FLUSH_TIMEOUT, or write fewer or smaller files)."
            )
        if self.failures:
            lines.append(f"{what}: {len(self.failures)} file(s) could not be uploaded to {self.uri}:")
            lines.extend(f"  {failure}" for failure in self.failures[:10])
            if len(self.failures) > 10:
                lines.append(f"  ... and {len(self.failures) - 10} more")
        return "\n".join(lines)


class DirectorySync:
    """A running sync of ``uploader.root`` to ``uploader.s3_uri`` (see :func:`start_directory_sync`)."""

    def __init__(self, watcher: ClosedFileWatcher, uploader: PrefixUploader) -> None:
        self.watcher = watcher
        self.uploader = uploader

    def finish(self, timeout: float) -> SyncReport:
        """Stop watching, upload what is left within ``timeout`` seconds, and report."""
        start = time.monotonic()
        self.watcher.stop()
        finished = self.uploader.flush(timeout)
        self.uploader.close()
        report = SyncReport(
            uri=self.uploader.s3_uri,
            uploaded=self.uploader.uploaded_count,
            failures=self.uploader.failures,
            timed_out=not finished,
        )
        logger.info(
            "Synced %s to %s: %d upload(s), %d failed%s (final flush %.2f s).",
            self.uploader.root,
            report.uri,
            report.uploaded,
            len(report.failures),
            ", timed out" if report.timed_out else "",
            time.monotonic() - start,
        )
        return report


def start_directory_sync(
    root: Path | str,
    s3_uri: str,
    client_factory: Callable[[], Any],
    *,
    max_concurrency: int = 4,
    settle: float = 1.0,
    uploaded: Iterable[Path] = (),
    use_inotify: bool | None = None,
) -> DirectorySync:
    """Watch ``root`` and upload every file closed under it to ``s3_uri``, keeping relative paths.

    :param client_factory: makes the boto3 S3 client (e.g. ``lambda: s3_client(region)``).
    :param uploaded: files already in S3 as they are now (they are uploaded again only once changed).
    """
    uploader = PrefixUploader(
        root, s3_uri, client_factory, max_concurrency=max_concurrency, settle=settle, uploaded=uploaded
    )
    watcher = ClosedFileWatcher(root, uploader.file_closed, uploader.file_deleted, use_inotify=use_inotify)
    watcher.start()
    logger.info(
        "Syncing %s to %s while the job runs (%s).",
        root,
        s3_uri,
        "inotify" if watcher.uses_inotify else f"polling every {watcher.poll_interval:g} s",
    )
    return DirectorySync(watcher, uploader)
