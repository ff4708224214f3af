"""A fast, static, read-only S3-compatible endpoint on loopback: ``HEAD`` and ``GET`` (with ``Range`` and
``If-Match``) of the files under a directory, ``/bucket/key`` mapping to ``ROOT/bucket/key``.

moto's server answers a GET at about 100-200 MB/s here, slower than in-region S3 with parallel ranged
GETs: the benchmark would measure moto. This one sends files with ``sendfile(2)`` from a thread per
connection (HTTP/1.1 keep-alive), several hundred MB/s to GB/s on loopback, so that what is measured is
the runner. Requests are not authenticated (every signature is accepted).

    python benchmarks/s3static.py ROOT PORT
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def etag_of(path: Path) -> str:
    """A stable ETag for ``path`` (from its size and modification time, as quoted S3 ETags are)."""
    st = path.stat()
    return '"' + hashlib.md5(f"{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest() + '"'


class Handler(BaseHTTPRequestHandler):
    """HEAD and GET of ``/bucket/key``."""

    protocol_version = "HTTP/1.1"
    root = Path(".")

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _target(self) -> Path | None:
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        if not parts or ".." in parts:
            return None
        target = self.root.joinpath(*parts)
        return target if target.exists() else None

    def _not_found(self, body: bool) -> None:
        payload = b"<Error><Code>NoSuchKey</Code><Message>not found</Message></Error>"
        self.send_response(404)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        target = self._target()
        if target is None:
            self._not_found(body)
            return
        if target.is_dir():  # HEAD/GET bucket
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = target.stat().st_size
        etag = etag_of(target)
        match = self.headers.get("If-Match")
        if match and match.strip() != etag:
            payload = b"<Error><Code>PreconditionFailed</Code></Error>"
            self.send_response(412)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)
            return
        start, end = 0, size - 1
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first, _, last = ranged[len("bytes=") :].partition("-")
            start = int(first) if first else max(0, size - int(last))
            end = min(int(last), size - 1) if (first and last) else size - 1
        length = max(0, end - start + 1)
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(target.stat().st_mtime, usegmt=True))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body or not length:
            return
        self.wfile.flush()
        with open(target, "rb") as file:
            sent = 0
            while sent < length:
                n = os.sendfile(self.connection.fileno(), file.fileno(), start + sent, length - sent)
                if n == 0:
                    break
                sent += n


def main() -> None:
    """Serve ``ROOT`` on 127.0.0.1:``PORT``."""
    Handler.root = Path(sys.argv[1]).resolve()
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
