"""Loopback services both runners use: an S3 endpoint (moto's server) and a package index (a static server).

Each runs as its own process on 127.0.0.1, so that it does not share the harness's interpreter lock.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before answering on {url}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status: it answers
                return
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout:.0f} s")


@contextlib.contextmanager
def _serving(cmd: list[str], url: str, what: str, log: Path) -> Iterator[str]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(url, proc, what)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def s3_endpoint(work: Path) -> Iterator[str]:
    """Run moto's S3 server on 127.0.0.1; yields its URL (for ``AWS_ENDPOINT_URL``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _serving(cmd, url, "moto_server", work / "moto.log"):
        yield url


@contextlib.contextmanager
def package_index(root: Path, work: Path) -> Iterator[str]:
    """Serve ``root`` (a PEP 503 tree from ``jobs.make_package_index``) on 127.0.0.1; yields its URL."""
    port = free_port()
    # Not `python -m http.server`: its listen backlog of 5 made parallel clients (uv) stall (index_server.py).
    script = Path(__file__).resolve().parent / "index_server.py"
    cmd = [sys.executable, str(script), str(root), str(port)]
    with _serving(cmd, f"http://127.0.0.1:{port}/simple/", "the package index", work / "index.log") as url:
        yield url


def upload(endpoint: str, bucket: str, key: str, path: Path) -> None:
    """Put ``path`` at ``s3://bucket/key`` on ``endpoint``."""
    import boto3

    env_before = dict(os.environ)
    os.environ.update(FAKE_CREDENTIALS)
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
        s3.upload_file(str(path), bucket, key)
    finally:
        os.environ.clear()
        os.environ.update(env_before)


@contextlib.contextmanager
def static_s3_endpoint(root: Path, work: Path) -> Iterator[str]:
    """Serve the files under ``root`` (``root/bucket/key``) as a fast read-only S3 endpoint
    (``benchmarks/s3static.py``) on 127.0.0.1; yields its URL (for ``AWS_ENDPOINT_URL``)."""
    port = free_port()
    script = Path(__file__).resolve().parent / "s3static.py"
    cmd = [sys.executable, str(script), str(root), str(port)]
    with _serving(cmd, f"http://127.0.0.1:{port}", "the static S3 endpoint", work / "s3static.log") as url:
        yield url


def place(root: Path, bucket: str, key: str, path: Path) -> Path:
    """Put ``path`` at ``root/bucket/key`` for :func:`static_s3_endpoint` (a hard link when possible)."""
    target = root / bucket / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(path, target)
    except OSError:
        import shutil

        shutil.copy2(path, target)
    return target


def transfer_seconds(url: str) -> float:
    """Seconds to GET ``url`` whole, read in 1 MiB blocks and dropped (the transfer alone)."""
    import http.client
    from urllib.parse import urlparse

    parsed = urlparse(url)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    conn.request("GET", parsed.path)
    response = conn.getresponse()
    while response.read(1 << 20):
        pass
    conn.close()
    return time.perf_counter() - started
