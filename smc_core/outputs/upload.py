"""Uploading a directory's files to an S3 prefix as they are closed, and a final flush.

:class:`PrefixUploader` keeps ``local root/<relative path>`` and ``s3://bucket/prefix/<relative
path>`` in step: :meth:`~PrefixUploader.file_closed` schedules an upload after a short settle time
(a file deleted within it is never uploaded), at most ``max_concurrency`` uploads run at once, large
files go up in multipart (boto3's transfer manager), transient errors (connection resets, 5xx,
throttling) are retried with exponential back-off and a log line per retry, and
:meth:`~PrefixUploader.flush` uploads every file not yet uploaded in its current state, bounded by a
timeout. Uploads that keep failing are kept in :attr:`~PrefixUploader.failures`, never dropped.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from smc_core.base.log import logger
from smc_core.errors import ConfigError
from smc_core.usercode.s3 import _is_transient as is_transient

__all__ = ["PrefixUploader", "UploadFailure", "join_s3_uri", "parse_s3_prefix"]

MULTIPART_THRESHOLD = 8 * 1024 * 1024
"""Files at least this large go up in parts (boto3's transfer manager)."""


@dataclass(frozen=True)
class UploadFailure:
    """A file that could not be uploaded, and the last error."""

    path: Path
    uri: str
    error: str

    def __str__(self) -> str:
        return f"{self.path} -> {self.uri}: {self.error}"


def parse_s3_prefix(uri: str, what: str) -> tuple[str, str]:
    """``("bucket", "prefix")`` for ``s3://bucket/prefix`` (the prefix may be empty).

    :param what: what the URI is, for the error message (``sagemaker_s3_output``).
    :raises ConfigError: not an ``s3://bucket[/prefix]`` URI.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(
            f"{what} is {uri!r}, which is not an S3 location: give s3://bucket/prefix, e.g. s3://my-bucket/jobs."
        )
    return parsed.netloc, parsed.path.strip("/")


def join_s3_uri(base: str, *parts: str) -> str:
    """``s3://bucket/a/b/c`` from ``s3://bucket/a/`` and ``"b", "c"`` (no doubled slashes)."""
    bucket, prefix = parse_s3_prefix(base, "the S3 location")
    keys = [p.strip("/") for p in (prefix, *parts) if p.strip("/")]
    return f"s3://{bucket}/{'/'.join(keys)}"


def _state(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns) if path.is_file() else None


class PrefixUploader:
    """Uploads files under ``root`` to ``s3_uri`` (``s3://bucket/prefix``), keeping relative paths.

    :param root: the local directory.
    :param s3_uri: the S3 prefix the files go under.
    :param client_factory: makes the boto3 S3 client (called once, lazily, so boto3 is imported only
        when something is uploaded).
    :param max_concurrency: uploads running at once.
    :param settle: seconds between a file's close and its upload; a file deleted meanwhile is skipped.
    :param retries: attempts per upload for transient errors (with back-off).
    :param backoff: seconds of the first retry's wait; doubled each time (with jitter), capped at 20 s.
    :param uploaded: files already in S3 in their current state (e.g. just downloaded from there).
    """

    def __init__(
        self,
        root: Path | str,
        s3_uri: str,
        client_factory: Callable[[], Any],
        *,
        max_concurrency: int = 4,
        settle: float = 1.0,
        retries: int = 5,
        backoff: float = 0.5,
        uploaded: Iterable[Path] = (),
    ) -> None:
        self.root = Path(root)
        self.s3_uri = s3_uri
        self.bucket, self.prefix = parse_s3_prefix(s3_uri, "the S3 location")
        self._client_factory = client_factory
        self._client: Any = None
        self.settle = settle
        self.retries = retries
        self.backoff = backoff
        self._pool = _DaemonPool(max_concurrency, "smc-upload")
        self._flushing = threading.Event()  # ends every settle wait at once
        self._lock = threading.RLock()  # a done-callback may run at once, in the locking thread
        self._uploaded: dict[Path, tuple[int, int]] = {}
        self._pending: dict[Path, Future[None]] = {}
        self._failures: dict[Path, UploadFailure] = {}
        self.uploaded_count = 0
        for path in uploaded:
            state = _state(Path(path))
            if state is not None:
                self._uploaded[Path(path)] = state

    # --- public --------------------------------------------------------------------------------
    @property
    def failures(self) -> list[UploadFailure]:
        """Files whose upload failed (after retries) and that were not uploaded since."""
        with self._lock:
            return list(self._failures.values())

    def uri_of(self, path: Path) -> str:
        """The S3 URI a local file goes to."""
        relative = Path(path).relative_to(self.root).as_posix()
        return f"s3://{self.bucket}/{self._key(relative)}"

    def file_closed(self, path: Path) -> None:
        """Schedule ``path`` for upload after the settle time (called by the watcher)."""
        self._schedule(Path(path), delay=self.settle)

    def file_deleted(self, path: Path) -> None:
        """Forget ``path``: a pending upload finds it gone and skips it."""
        with self._lock:
            self._uploaded.pop(Path(path), None)
            self._failures.pop(Path(path), None)

    def flush(self, timeout: float) -> bool:
        """Upload every file under ``root`` not yet uploaded in its current state, and wait for all
        uploads to end, at most ``timeout`` seconds. Returns False when time ran out."""
        deadline = time.monotonic() + timeout
        self._flushing.set()
        for current, _, files in os.walk(self.root):
            for name in sorted(files):
                self._schedule(Path(current) / name, delay=0.0)
        while True:
            with self._lock:
                pending = [f for f in self._pending.values() if not f.done()]
            if not pending:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _wait(pending[0], left)

    def close(self) -> None:
        """Stop the upload threads (uploads in flight are abandoned: the threads are daemons, so a
        stuck upload never keeps the process from exiting)."""
        self._pool.shutdown()

    # --- internals -----------------------------------------------------------------------------
    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _schedule(self, path: Path, *, delay: float) -> None:
        state = _state(path)
        if state is None:
            return
        with self._lock:
            if self._uploaded.get(path) == state:
                return
            running = self._pending.get(path)
            if running is not None and not running.done():
                # one upload per file at a time: look again once this one ends (it may have read
                # an older state of the file)
                running.add_done_callback(lambda _: self._schedule(path, delay=0.0))
                return
            try:
                self._pending[path] = self._pool.submit(self._upload, path, delay)
            except RuntimeError:  # the pool is closed
                return

    def _upload(self, path: Path, delay: float) -> None:
        if delay:
            self._flushing.wait(delay)
        state = _state(path)
        if state is None:
            return  # deleted (or replaced by a directory) before it settled: never uploaded
        with self._lock:
            if self._uploaded.get(path) == state:
                return
        uri = self.uri_of(path)
        error = self._upload_with_retries(path, uri)
        if error is _GONE:  # deleted while it was being uploaded: on purpose, not a failure
            logger.info("%s was deleted while it was being uploaded: not uploading it.", path)
            with self._lock:
                self._failures.pop(path, None)
            return
        with self._lock:
            if error is None:
                self._uploaded[path] = state
                self._failures.pop(path, None)
                self.uploaded_count += 1
            else:
                self._failures[path] = UploadFailure(path, uri, error)
        if error is not None:
            logger.error("Could not upload %s to %s: %s", path, uri, error)

    def _upload_with_retries(self, path: Path, uri: str) -> str | None:
        key = uri.split("/", 3)[3]
        for attempt in range(1, self.retries + 1):
            try:
                self._upload_once(path, key)
                return None
            except Exception as raised:
                if _state(path) is None:
                    return _GONE
                exc = _root_error(raised)
                message = _describe(exc, self.bucket)
                if attempt == self.retries or not is_transient(exc):
                    return message
                wait = min(20.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random())
                logger.warning(
                    "Uploading %s to %s failed (%s); retry %d of %d in %.1f s",
                    path.name,
                    uri,
                    message,
                    attempt,
                    self.retries - 1,
                    wait,
                )
                time.sleep(wait)
        return "no attempt made"

    def _upload_once(self, path: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig  # boto3 only when something is uploaded

        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            client = self._client
        config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, max_concurrency=2, use_threads=True)
        client.upload_file(str(path), self.bucket, key, Config=config)


_GONE = "the file was deleted"
"""What :meth:`PrefixUploader._upload_with_retries` returns for a file deleted during its upload."""


def lower_priority(niceness: int = 10) -> None:
    """Lower the calling thread's CPU priority (Linux schedules threads one by one); no-op elsewhere."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        pass


class _DaemonPool:
    """A fixed set of daemon worker threads (ThreadPoolExecutor's threads are joined at exit, which
    would let one hanging upload hold ``train`` past the flush timeout)."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...], Future[None]] | None]
        self._queue = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> Future[None]:
        if self._closed:
            raise RuntimeError("the pool is shut down")
        future: Future[None] = Future()
        self._queue.put((fn, args, future))
        return future

    def shutdown(self) -> None:
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        lower_priority()  # the user's training comes first; uploads take what CPU is left
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as error:
                future.set_exception(error)


def _wait(future: Future[None], timeout: float) -> None:
    try:
        future.result(timeout=timeout)
    except Exception:  # failures are recorded by the upload itself; a timeout is checked by the caller
        pass


def _root_error(exc: BaseException) -> BaseException:
    """The botocore error under boto3's transfer wrappers (``S3UploadFailedError`` keeps it as its
    cause or context), else ``exc``."""
    seen = exc
    while True:
        if getattr(seen, "response", None) is not None or type(seen).__module__.startswith("botocore"):
            return seen
        inner = seen.__cause__ or seen.__context__
        if inner is None or inner is seen:
            return exc
        seen = inner


def _describe(exc: BaseException, bucket: str) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return f"the bucket {bucket!r} does not exist (NoSuchBucket): create it or fix the S3 location"
        if code in ("AccessDenied", "403"):
            return f"access to the bucket {bucket!r} is denied (AccessDenied): check the job's credentials"
    text = str(exc).strip()
    if "NoSuchBucket" in text:
        return f"the bucket {bucket!r} does not exist (NoSuchBucket): create it or fix the S3 location"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
