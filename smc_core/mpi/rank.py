"""What ``mpirun`` starts for every rank: ``python -m smc_core.mpi.rank ENTRY ARGS...``.

It runs the entry command as its child and:

* sets the variables that differ per host and rank (``mpirun -x`` passes the master's values
  to every rank): ``SM_CURRENT_HOST``, ``CURRENT_HOST``, ``SM_CURRENT_HOST_RANK``, ``current_host``
  and ``is_master`` in ``SM_TRAINING_ENV``, and torchrun's worker set ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK`` from Open MPI's ``OMPI_COMM_WORLD_*``;
* prefixes every line of output with ``[host rank N] `` and sends each line whole to the job's channel
  on the master (an ``out`` message), which writes it to the master's stdout or stderr (``mpirun``'s
  own forwarding can split a line, and mix the ranks' pieces); to its own stdout and stderr when it
  cannot connect;
* passes SIGTERM and SIGINT on to the entry command; the command dies with this process;
* when the entry command fails (a non-zero exit, a signal it was not sent from here), reports the
  rank, its host, its exit code and the tail of its stderr to the job's channel (``rank_failed``, at
  ``SMC_CHANNEL_ENDPOINT``) before exiting with the same code, so that ``mpirun`` aborts the job.

The host is found by matching this machine's addresses against ``SMC_MPI_HOSTS`` (host name to
address, as the master resolved them), else by the host name.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import IO, Any

import psutil

from smc_core.cluster.channel import Connection, deliver
from smc_core.cluster.messages import Output, OutputStream, RankFailed
from smc_core.cluster.report import RankFailure
from smc_core.job.exports import encode_value

__all__ = ["CHANNEL_VAR", "HOSTS_VAR", "main", "rank_environment", "this_host"]

CHANNEL_VAR = "SMC_CHANNEL_ENDPOINT"
"""Set by the master for every rank (not a setting): ``address:port`` of the job's channel."""
HOSTS_VAR = "SMC_MPI_HOSTS"
"""Set by the master for every rank (not a setting): JSON ``{host: address}`` of the job's hosts."""
TAIL_LINES = 60
_MAX_LINE = 16 * 1024


def this_host(hosts: Mapping[str, str], fallback: str) -> str:
    """The job's name for this machine: the host whose address is one of ours, else ``fallback``."""
    try:
        mine = {a.address for addresses in psutil.net_if_addrs().values() for a in addresses}
    except Exception:  # pragma: no cover - psutil is a core dependency
        mine = set()
    for host, address in hosts.items():
        if address in mine and not address.startswith("127."):
            return host
    name = socket.gethostname()
    return name if name in hosts else fallback


def _integer(environ: Mapping[str, str], *names: str) -> int:
    for name in names:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def rank_environment(environ: Mapping[str, str], host: str, hosts: list[str]) -> dict[str, str]:
    """The variables to set for one rank on ``host`` (see the module docstring)."""
    index = hosts.index(host) if host in hosts else 0
    variables = {
        "SM_CURRENT_HOST": host,
        "CURRENT_HOST": host,
        "SM_CURRENT_HOST_RANK": str(index),
        "RANK": str(_integer(environ, "OMPI_COMM_WORLD_RANK", "PMIX_RANK")),
        "WORLD_SIZE": str(_integer(environ, "OMPI_COMM_WORLD_SIZE")),
        "LOCAL_RANK": str(_integer(environ, "OMPI_COMM_WORLD_LOCAL_RANK")),
        "LOCAL_WORLD_SIZE": str(_integer(environ, "OMPI_COMM_WORLD_LOCAL_SIZE")),
        "GROUP_RANK": str(index),
    }
    raw = environ.get("SM_TRAINING_ENV")
    if raw:
        try:
            training_env = json.loads(raw)
        except ValueError:
            training_env = None
        if isinstance(training_env, dict):
            training_env["current_host"] = host
            training_env["is_master"] = host == training_env.get("master_hostname", host)
            variables["SM_TRAINING_ENV"] = encode_value(training_env)
    return variables


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class _Output:
    """Where a rank's lines go: to the job's channel, one ``out`` message a line (``mpirun`` forwards
    output in chunks that can end mid-line, and mixes the ranks' chunks), else to this process's own
    stdout and stderr."""

    def __init__(self, endpoint: str | None, rank: Mapping[str, Any]) -> None:
        self.rank = dict(rank)
        self.connection: Connection | None = None
        if endpoint:
            try:
                self.connection = Connection.open(endpoint, timeout=10)
            except (OSError, ValueError):
                self.connection = None
        # Said first, so that the master waits for this stream's end even if it stays silent.
        if self.connection is not None and not self.connection.send(OutputStream(**self.rank)):
            self.connection = None

    def write(self, fd: int, data: bytes, line: str = "") -> None:
        """Send one whole line (``data``: prefix and newline included; ``line``: the line alone)."""
        if self.connection is not None:
            text = data.decode("utf-8", "surrogateescape")
            if self.connection.send(Output(fd=fd, data=text, line=line, **self.rank)):
                return
            self.connection = None
        while data:
            try:
                data = data[os.write(fd, data) :]
            except OSError:
                return

    def close(self) -> None:
        """Close the connection (the master counts this stream as ended)."""
        if self.connection is not None:
            self.connection.close()


class _Lines(threading.Thread):
    """Copies a pipe to an :class:`_Output`, a whole prefixed line at a time; keeps a tail if asked."""

    def __init__(
        self, pipe: IO[bytes], output: _Output, fd: int, prefix: bytes, tail: collections.deque[str] | None
    ) -> None:
        super().__init__(daemon=True)
        self.pipe, self.output, self.fd, self.prefix, self.tail = pipe, output, fd, prefix, tail

    def run(self) -> None:
        for line in iter(lambda: self.pipe.readline(_MAX_LINE), b""):
            if not line.endswith(b"\n"):
                line += b"\n"
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.output.write(self.fd, self.prefix + line, text)
            if self.tail is not None:
                self.tail.append(text)


def main(argv: list[str] | None = None) -> int:
    """Run the entry command given as ``argv`` as one rank; return its exit code."""
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: python -m smc_core.mpi.rank ENTRY [ARGS...]", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    addresses: dict[str, str] = json.loads(environ.get(HOSTS_VAR) or "{}")
    host = this_host(addresses, environ.get("SM_CURRENT_HOST", socket.gethostname()))
    environ.update(rank_environment(environ, host, list(addresses)))
    rank = environ["RANK"]
    prefix = f"[{host} rank {rank}] ".encode()
    rank_fields = {"rank": int(rank), "local_rank": int(environ["LOCAL_RANK"]), "host": host}
    output = _Output(environ.get(CHANNEL_VAR), rank_fields)
    forwarded: list[int] = []
    try:
        child = subprocess.Popen(
            command,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        message = f"cannot start {command[0]!r}: {exc.strerror or exc}"
        output.write(2, prefix + message.encode() + b"\n")
        output.close()
        _report(environ, host, 127, message)
        return 127

    def forward(signum: int, _frame: Any) -> None:
        forwarded.append(signum)
        try:
            child.send_signal(signum)
        except OSError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    assert child.stdout is not None and child.stderr is not None
    pumps = [_Lines(child.stdout, output, 1, prefix, None), _Lines(child.stderr, output, 2, prefix, tail)]
    for pump in pumps:
        pump.start()
    returncode = child.wait()
    for pump in pumps:
        pump.join(5)
    output.close()
    code = 128 - returncode if returncode < 0 else returncode
    sent_from_here = returncode < 0 and -returncode in forwarded
    if code != 0 and not sent_from_here:
        _report(environ, host, code, "\n".join(tail))
    return code


def _report(environ: Mapping[str, str], host: str, code: int, tail: str) -> None:
    endpoint = environ.get(CHANNEL_VAR)
    if not endpoint:
        return
    failure = RankFailure(
        host,
        code,
        tail,
        rank=int(environ.get("RANK", "0")),
        local_rank=int(environ.get("LOCAL_RANK", "0")),
    )
    deliver(endpoint, RankFailed(failure))


if __name__ == "__main__":
    sys.exit(main())
