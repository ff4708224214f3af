"""A static PEP 503 package index on 127.0.0.1 for the install benchmarks.

    python benchmarks/index_server.py ROOT PORT


``python -m http.server`` with a listen backlog of a real server's size: the standard one queues 5
connections, and a client that opens more at once (uv fetches the index pages and wheels in parallel)
has the rest of its SYNs dropped and resent a second later, the kernel's first retransmission; every
install of more than a handful of packages then stalled for 1 s that no real index costs.
"""

from __future__ import annotations

import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class IndexServer(ThreadingHTTPServer):
    """A threading HTTP server that queues as many connections as the kernel allows."""

    request_queue_size = 1024
    daemon_threads = True


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files, logging nothing per request."""

    def log_message(self, format: str, *args: object) -> None:
        return


def main(argv: list[str]) -> None:
    """Serve ``argv[0]`` on 127.0.0.1 port ``argv[1]`` until killed."""
    root, port = argv[0], int(argv[1])
    handler = functools.partial(QuietHandler, directory=root)
    with IndexServer(("127.0.0.1", port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
