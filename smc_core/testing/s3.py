"""A real S3 endpoint for tests: moto's server on 127.0.0.1, and a fault-injecting proxy.

Fixtures (registered by ``smc_core.testing``):

* ``s3_server`` (session): moto's server in a subprocess on a free port of 127.0.0.1. While the
  session runs, ``AWS_ENDPOINT_URL`` points at it and fake credentials and ``AWS_DEFAULT_REGION`` are
  set in ``os.environ``, so boto3 in this process and in every subprocess (``train``) reaches it
  through its normal code path. ``s3_server.bucket()`` makes a fresh bucket, ``s3_server.client()``
  gives a boto3 client, ``s3_server.env`` the variables to give a subprocess explicitly.
* ``fault_proxy``: a :class:`FaultProxy` in front of ``s3_server`` for one test: point
  ``AWS_ENDPOINT_URL`` at ``fault_proxy.endpoint_url`` and add faults
  (``fault_proxy.add_fault(method="GET", path_contains="code.tar.gz", reset_after=100_000)``).

No client is patched: every request is real HTTP over loopback.
"""

from __future__ import annotations

import http.client
import http.server
import itertools
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pytest

__all__ = ["FaultProxy", "MotoServer", "fault_proxy", "s3_server"]

_MOTO_SCRIPT = """
import sys, threading
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # run until the test session closes our stdin
server.stop()
"""

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """moto's S3 server in a subprocess on 127.0.0.1 (stopped by :meth:`stop` or when stdin closes)."""

    def __init__(self) -> None:
        # stderr gets one access-log line per request: kept in a file, shown only if the start fails.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the server)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _MOTO_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=60)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.isdigit():
            self.stop()
            self._stderr.seek(0)
            errors = self._stderr.read()[-2000:]
            raise RuntimeError(
                f"moto's server did not start within 60 s (printed {line!r}). Install it with "
                f"pip install 'moto[server]'. Its error output:\n{errors}"
            )
        self.port = int(line)
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint_url, **FAKE_CREDENTIALS}
        self._names = itertools.count()

    def client(self, endpoint_url: str | None = None) -> Any:
        """A boto3 S3 client for this server (or for ``endpoint_url``, e.g. a proxy in front of it)."""
        import boto3  # only for tests that talk to the server: the kit's import stays light

        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def bucket(self) -> str:
        """Create a fresh, empty bucket and return its name."""
        name = f"smc-test-{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        """Stop the server."""
        if self.process.poll() is None:
            try:
                if self.process.stdin:
                    self.process.stdin.close()
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()


@dataclass
class Fault:
    """One rule of a :class:`FaultProxy`: which requests it hits, what it does, how many times."""

    method: str = "GET"
    path_contains: str = ""
    reset_after: int | None = None
    """Send the status, headers and this many body bytes, then reset the connection."""
    status: int | None = None
    """Answer with this HTTP status (an S3 error body) instead of forwarding."""
    times: int = 1
    only_ranged: bool | None = None
    """True: only requests with a Range header; False: only without; None: either."""
    hits: int = 0

    def matches(self, method: str, path: str, headers: Any) -> bool:
        if self.hits >= self.times or method != self.method or self.path_contains not in path:
            return False
        ranged = "Range" in headers
        return self.only_ranged is None or ranged == self.only_ranged


@dataclass
class Request:
    """A request seen by the proxy."""

    method: str
    path: str
    range: str | None
    fault: str | None = None


@dataclass
class _State:
    target: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy'
    b"</Message></Error>"
)
_STATUS_CODES = {500: b"InternalError", 503: b"SlowDown", 502: b"BadGateway", 504: b"GatewayTimeout"}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with self.state.lock:
            fault = next(
                (f for f in self.state.faults if f.matches(self.command, self.path, self.headers)), None
            )
            if fault:
                fault.hits += 1
            label = None
            if fault:
                label = f"status {fault.status}" if fault.status else f"reset after {fault.reset_after}"
            self.state.requests.append(Request(self.command, self.path, self.headers.get("Range"), label))
        if fault and fault.status:
            payload = _ERROR_BODY.replace(b"{code}", _STATUS_CODES.get(fault.status, b"InternalError"))
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(*self.state.target, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        upstream.close()
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(key, value)
        head_length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", head_length or str(len(payload)))
        self.end_headers()
        if fault and fault.reset_after is not None and self.command != "HEAD":
            self.wfile.write(payload[: fault.reset_after])
            self.wfile.flush()
            # a hard reset (RST), as a dropped connection looks to the client
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``target_url`` that injects faults on request.

    Every request is forwarded unchanged unless a :class:`Fault` added with :meth:`add_fault`
    matches it: then it is answered with an error status, or its response body is cut off after
    some bytes with a connection reset. :attr:`requests` records what was seen.
    """

    def __init__(self, target_url: str) -> None:
        parsed = urlparse(target_url)
        self.state = _State(target=(parsed.hostname or "127.0.0.1", parsed.port or 80))
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_fault(self, **kwargs: Any) -> Fault:
        """Add a :class:`Fault` (keyword arguments as its fields) and return it."""
        fault = Fault(**kwargs)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    @property
    def requests(self) -> list[Request]:
        """The requests seen so far."""
        with self.state.lock:
            return list(self.state.requests)

    def close(self) -> None:
        """Stop the proxy."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """moto's S3 server on 127.0.0.1 for the session; ``AWS_ENDPOINT_URL`` and fake credentials set."""
    server = MotoServer()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL_S3", "S3_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        for name, value in server.env.items():
            patch.setenv(name, value)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def fault_proxy(s3_server: MotoServer) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of ``s3_server`` for one test."""
    proxy = FaultProxy(s3_server.endpoint_url)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # serving as soon as the thread runs; wait for it anyway
        try:
            socket.create_connection(("127.0.0.1", int(proxy.endpoint_url.rsplit(":", 1)[1])), 1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield proxy
    finally:
        proxy.close()
