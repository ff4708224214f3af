"""Reading objects from S3 (or any S3-compatible endpoint) as a resumable stream.

boto3 is imported only inside these functions. The endpoint comes from ``AWS_ENDPOINT_URL_S3``, else
``AWS_ENDPOINT_URL``, else ``S3_ENDPOINT_URL``; the region from the ``region`` argument, else
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else boto3's own chain.

:class:`S3ObjectReader` is a file-like object over one version of an object (pinned by its ETag):
when the connection breaks mid-object (a reset, a truncated body, a timeout, a 5xx or throttling
answer) it reopens the object at the byte where it stopped, with exponential backoff, so a
consumer reading it front to back (the tar extractor) sees every byte exactly once.
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from smc_core.base.log import logger
from smc_core.errors import FetchError
from smc_core.usercode.progress import Progress

__all__ = [
    "S3ObjectReader",
    "download_file",
    "download_prefix",
    "endpoint_url",
    "open_s3_object",
    "parse_s3_uri",
    "s3_client",
]

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL")
"""Where the S3 endpoint is read from, first set wins."""

_BODY_PIECE = 64 * 1024
"""Bytes per read of a response body: a connection that breaks loses at most this much."""

TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "503",
    "500",
    "502",
    "504",
}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``("bucket", "path/key.tar.gz")`` for ``s3://bucket/path/key.tar.gz``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise FetchError(
            f"{uri!r} is not an S3 object URI: expected s3://bucket/key, e.g. s3://my-bucket/code.tar.gz"
        )
    return parsed.netloc, parsed.path.lstrip("/")


def endpoint_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint from the environment (see :data:`ENDPOINT_VARIABLES`), or None for AWS's."""
    environ = os.environ if environ is None else environ
    for name in ENDPOINT_VARIABLES:
        if environ.get(name):
            return environ[name]
    return None


def s3_client(
    region: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    max_attempts: int = 1,
    timeout: float = 120.0,
) -> Any:
    """A boto3 S3 client for ``region`` and the configured endpoint.

    :param max_attempts: boto3's own attempts per call (default 1: :class:`S3ObjectReader` retries
        itself, with a log line per retry and an overall bound).
    :param timeout: the overall bound in seconds; connect and read timeouts are a third of it (at
        most 10 s and 60 s), so that an endpoint that never answers is retried within it.
    """
    import boto3  # boto3 and botocore only when S3 is used: smc's start must not import them
    from botocore.config import Config

    environ = os.environ if environ is None else environ
    region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
    endpoint = endpoint_url(environ)
    config = Config(
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint else {},
        connect_timeout=max(1.0, min(10.0, timeout / 3)),
        read_timeout=max(1.0, min(60.0, timeout / 3)),
    )
    if endpoint and not region:
        region = "us-east-1"  # a custom endpoint needs some region to sign with
    return boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint, config=config)


def _is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import (  # botocore only when S3 is used (see s3_client)
        ClientError,
        ConnectionClosedError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return str(error.get("Code")) in TRANSIENT_CODES or status >= 500 or status == 429
    transient = (
        ConnectionError,
        ConnectionClosedError,
        HTTPClientError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
        ConnectionResetError,
        TimeoutError,
    )
    if isinstance(exc, transient):
        return True
    # urllib3's ProtocolError / IncompleteRead surface unwrapped from StreamingBody.read()
    return type(exc).__module__.startswith(("urllib3", "http.client")) or isinstance(exc, OSError)


class S3ObjectReader(io.RawIOBase):
    """A readable, resumable stream over one S3 object (see the module docstring).

    :param client: a boto3 S3 client.
    :param bucket: the bucket.
    :param key: the key.
    :param attempts: how many times one request may be retried after transient errors.
    :param backoff: the first retry's delay in seconds, doubled each time (with jitter), at most 20 s.
    :param timeout: the overall bound in seconds on opening and reading the object, retries
        included; past it the read fails with a :class:`FetchError` naming the endpoint, the
        object and the last error.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        attempts: int = 8,
        backoff: float = 0.5,
        timeout: float = 120.0,
    ) -> None:
        super().__init__()
        self.client, self.bucket, self.key = client, bucket, key
        self.uri = f"s3://{bucket}/{key}"
        self.endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None) or "AWS S3"
        self.attempts, self.backoff, self.timeout = attempts, backoff, timeout
        self.deadline = time.monotonic() + timeout
        self.position = 0
        self.retries = 0
        self.size: int | None = None  # known once HEAD answered
        self._body: Any = None
        self._broken: BaseException | None = None
        head = self._call(lambda: client.head_object(Bucket=bucket, Key=key), "HEAD")
        self.size = int(head["ContentLength"])
        self.etag: str = head["ETag"]

    def _gave_up(self, what: str, exc: BaseException, attempt: int) -> FetchError:
        spent = self.timeout - max(0.0, self.deadline - time.monotonic())
        return FetchError(
            f"{self.uri}: {what} failed at {self.endpoint} after {attempt + 1} attempt(s) in "
            f"{spent:.0f} s (SMC_S3_TIMEOUT={self.timeout:g}, "
            f"SMC_S3_RETRIES={self.attempts}); last error: {type(exc).__name__}: {exc}. Check that the "
            "endpoint (AWS_ENDPOINT_URL) is reachable and answering, then run the job again."
        )

    def _call(self, fn: Any, what: str = "GET") -> Any:
        from botocore.exceptions import ClientError, NoCredentialsError  # only when S3 is used

        for attempt in range(self.attempts + 1):
            try:
                return fn()
            except NoCredentialsError as exc:
                raise FetchError(
                    f"{self.uri}: no AWS credentials found. Give the job a role, or set AWS_ACCESS_KEY_ID "
                    "and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for an S3-compatible endpoint)."
                ) from exc
            except ClientError as exc:
                if _is_transient(exc):
                    if attempt < self.attempts and self._sleep(attempt, exc, what):
                        continue
                    raise self._gave_up(what, exc, attempt) from exc
                raise self._client_error(exc) from exc
            except FetchError:
                raise
            except Exception as exc:
                if _is_transient(exc):
                    if attempt < self.attempts and self._sleep(attempt, exc, what):
                        continue
                    raise self._gave_up(what, exc, attempt) from exc
                raise FetchError(
                    f"{self.uri}: cannot be read from {self.endpoint}: {type(exc).__name__}: {exc}"
                ) from exc
        raise AssertionError("unreachable")

    def _client_error(self, exc: Any) -> FetchError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code"))
        if code in ("404", "NoSuchKey", "NotFound") and not self._bucket_exists():
            code, hint = "NoSuchBucket", f"the bucket {self.bucket!r} does not exist at {self.endpoint}"
        elif code in ("404", "NoSuchKey", "NotFound"):
            hint = (
                f"the object {self.key!r} does not exist in the bucket {self.bucket!r}: check "
                "sagemaker_submit_directory and the bucket's contents"
            )
        elif code in ("NoSuchBucket",):
            hint = f"the bucket {self.bucket!r} does not exist"
        elif code in ("403", "AccessDenied", "Forbidden"):
            hint = "access denied: give the job's role s3:GetObject on it"
        elif code in ("412", "PreconditionFailed"):
            hint = "the object changed while it was being downloaded: run the job again"
        else:
            hint = error.get("Message") or "see the error code"
        return FetchError(f"{self.uri}: {code}: {hint}.")

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import ClientError  # only when S3 is used

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound")
        except Exception:
            return True  # cannot tell: report the object
        return True

    def _sleep(self, attempt: int, exc: BaseException, what: str) -> bool:
        """Wait before the next attempt (logged); False when the overall bound leaves no time."""
        remaining = self.deadline - time.monotonic()
        delay = min(20.0, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
        if remaining <= delay:
            return False
        self.retries += 1
        where = "before the first byte" if self.size is None else f"at byte {self.position} of {self.size}"
        logger.warning(
            "%s: transient error on %s %s from %s (%s: %s); retry %d of %d in %.1f s.",
            self.uri,
            what,
            where,
            self.endpoint,
            type(exc).__name__,
            exc,
            attempt + 1,
            self.attempts,
            delay,
        )
        self._close_body()
        time.sleep(delay)
        return True

    def _open(self) -> Any:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, "IfMatch": self.etag}
        if self.position:
            kwargs["Range"] = f"bytes={self.position}-"
        return self.client.get_object(**kwargs)["Body"]

    def _close_body(self) -> None:
        if self._body is not None:
            try:
                self._body.close()
            except Exception:
                pass
            self._body = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next bytes of the object, resuming after transient errors."""
        assert self.size is not None
        if self.position >= self.size:
            return 0
        view = memoryview(buffer).cast("B")

        def read_some() -> int:
            if self._broken is not None:  # the connection broke after the bytes handed on last time
                broken, self._broken = self._broken, None
                raise broken
            if self._body is None:
                self._body = self._open()
            got = 0
            while got < len(view):
                try:
                    data: bytes = self._body.read(min(len(view) - got, _BODY_PIECE))
                except Exception as exc:
                    if not got or not _is_transient(exc):
                        raise
                    # Hand on what arrived before the break; the next read retries from there.
                    self._broken = exc
                    self._close_body()
                    break
                if not data:
                    if self.position + got < (self.size or 0):
                        if not got:
                            raise ConnectionResetError(
                                f"the body ended at byte {self.position} of {self.size}"
                            )
                        self._close_body()
                    break
                view[got : got + len(data)] = data
                got += len(data)
            return got

        count: int = self._call(read_some, "GET")
        self.position += count
        return count

    def close(self) -> None:
        self._close_body()
        super().close()


def open_s3_object(
    uri: str,
    *,
    region: str | None = None,
    attempts: int = 8,
    backoff: float = 0.5,
    timeout: float = 120.0,
    environ: Mapping[str, str] | None = None,
) -> S3ObjectReader:
    """Open ``s3://bucket/key`` for reading as a resumable stream (see :class:`S3ObjectReader`)."""
    bucket, key = parse_s3_uri(uri)
    client = s3_client(region, environ=environ, timeout=timeout)
    return S3ObjectReader(client, bucket, key, attempts=attempts, backoff=backoff, timeout=timeout)


def _copy_object(reader: S3ObjectReader, dest: Path, progress: Progress | None = None) -> None:
    """Copy ``reader`` to ``dest`` (via a ``.part`` file), reporting to ``progress`` (default: its own)."""

    progress = progress or Progress(f"Downloading {reader.uri}", reader.size or 0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    with open(tmp, "wb") as out:
        while True:
            chunk = reader.read(1024 * 1024)
            if not chunk:
                break
            out.write(chunk)
            progress.update(len(chunk))
    tmp.replace(dest)


def download_file(uri: str, dest: Path | str, *, region: str | None = None) -> Path:
    """Download the object ``s3://bucket/key`` to the file ``dest`` (resumed after transient errors,
    written to ``dest`` only once complete). Returns ``dest``."""
    dest = Path(dest)
    with open_s3_object(uri, region=region) as reader:
        progress = Progress(f"Downloading {uri}", reader.size or 0)
        _copy_object(reader, dest, progress)
    progress.finish()
    return dest


def download_prefix(uri: str, dest: Path | str, *, region: str | None = None) -> list[Path]:
    """Download every object under the prefix ``s3://bucket/prefix`` into the directory ``dest``,
    keeping the paths below the prefix (an object named exactly ``prefix`` lands as its base name).

    :return: the files written.
    :raises FetchError: nothing is under the prefix, a key would land outside ``dest``, or a
        download fails.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise FetchError(f"{uri!r} is not an S3 URI: expected s3://bucket/prefix.")
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    dest = Path(dest)
    client = s3_client(region)
    keys: list[str] = []
    total = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    keys.append(item["Key"])
                    total += int(item.get("Size", 0))
    except Exception as exc:
        raise FetchError(f"{uri}: cannot list objects ({type(exc).__name__}: {exc}).") from exc
    if not keys:
        raise FetchError(f"{uri}: no objects under this prefix. Check the bucket and prefix.")
    progress = Progress(f"Downloading {uri} ({len(keys)} objects)", total)
    written = []
    base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    for key in keys:
        relative = key[len(base) :] if key.startswith(base) else key.rsplit("/", 1)[-1]
        parts = PurePosixPath(relative).parts
        if not parts or ".." in parts or PurePosixPath(relative).is_absolute():
            raise FetchError(f"s3://{bucket}/{key}: refusing a key that would land outside {dest}.")
        target = dest.joinpath(*parts)
        with S3ObjectReader(client, bucket, key) as reader:
            _copy_object(reader, target, progress)
        written.append(target)
    progress.finish()
    logger.info("Downloaded %d object(s) from %s into %s.", len(written), uri, dest)
    return written
