"""torchrun, run by smc: the same launcher, plus failure reports that name the rank and host.

``python -m smc_pytorch.launcher --report FILE --host algo-2 --peer-stop-grace S -- <torchrun args>``
runs torchrun's own code (``torch.distributed.run``) in this process, with three additions:

* **Which rank failed, with its traceback.** torchrun is given ``--log-dir``, ``--redirects 3`` and
  ``--tee 3``: every worker's output still reaches the console, each line prefixed
  ``[<host> rank <N>]:``, and is also kept in a per-rank file. When workers fail, the first failure
  (the earliest, not counting workers the agent itself stopped with SIGTERM/SIGKILL) is the root cause;
  the tail of that rank's stderr is its traceback. The launcher writes it as JSON to ``--report``.
* **One failure ends every host.** On a multi-host job the launcher on each host also talks to the
  rendezvous store that torchrun already runs on the master (``--master_addr:--master_port``; on the
  master the launcher opens that store itself, so it outlives torchrun's agent). A host whose workers
  fail publishes its root cause there (the first one published wins); every other host polls for it
  and, on seeing it, stops its own workers: the whole job ends within seconds instead of waiting for
  collective timeouts. Each host's report then names the same rank and host.
* **The root cause, not its echo.** When one rank dies, its peers' collectives fail too ("Connection
  closed by peer": gloo aborts them, exit 134). Such a *collateral* failure (:func:`is_collateral`) is
  never preferred over a real one: locally it sorts after the others, and a host whose own root cause
  is collateral waits up to :data:`PEER_ROOT_WAIT` seconds for a peer to publish the real one before
  publishing its own. Without this, whichever host's agent noticed first won the race, and the master
  could report its own aborted rank (134) instead of the rank that failed.
* **The user's exit code is kept** (torchrun itself always exits 1): the root cause's code, or
  ``128 + signal``.
* **Restarts, named** (``--max-restarts N``, from the job's ``SMC_MAX_RESTARTS``): each failed attempt
  of this host's workers is logged with its root cause and kept for the report (``attempts``); a
  failure that is the code's own deterministic error (a ``SyntaxError``, an ``ImportError``: see
  ``smc_core.deterministic_error``) is not restarted; the workers of attempt N see
  ``SMC_ATTEMPT=N`` (torchrun's own ``TORCHELASTIC_RESTART_COUNT`` is N-1).

Imports torch only inside :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FAILURE_KEY = "smc/first_failure"
SEEN_KEY = "smc/failure_seen"
POLL_INTERVAL = 0.2
"""Seconds between two looks at the rendezvous store for a peer's failure (one small request to the
master's store each: 80 a second from 16 hosts)."""
LINGER_SECONDS = 10.0
"""How long the master keeps the store up after a failure, for peers to read it."""
DEFAULT_PEER_STOP_GRACE = 1.0
"""Seconds local workers get after SIGTERM (a peer failed) before SIGKILL, unless ``--peer-stop-grace``
says (smc-pytorch passes the job's ``SMC_PEER_STOP_GRACE``)."""
TAIL_CHARS = 2000
"""How much of the failing rank's stderr a report keeps."""
AGENT_STOPPED = {-int(signal.SIGTERM), -int(signal.SIGKILL)}
PEER_ROOT_WAIT = 5.0
"""Seconds a host whose only failure is collateral waits for a peer's root cause to be published."""
COLLATERAL_SIGNS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
    "remote process exited or there was a network error",
)
"""What a rank's stderr says when its collective failed because a peer died (gloo, NCCL)."""


def is_collateral(traceback: str) -> bool:
    """True when a rank's stderr tail shows it failed because a peer went away (:data:`COLLATERAL_SIGNS`)."""
    return any(sign in traceback for sign in COLLATERAL_SIGNS)


def split_argv(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """``--report F --host H [--peer-stop-grace S] -- torchrun args``: (our options, torchrun's)."""
    argv = list(argv)
    if "--" not in argv:
        raise SystemExit("usage: python -m smc_pytorch.launcher --report FILE --host HOST -- TORCHRUN-ARGS")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m smc_pytorch.launcher")
    parser.add_argument("--report", required=True, help="where to write the failure report (JSON)")
    parser.add_argument("--host", required=True, help="this host's name (SM_CURRENT_HOST)")
    parser.add_argument(
        "--peer-stop-grace",
        type=float,
        default=DEFAULT_PEER_STOP_GRACE,
        help="seconds from SIGTERM to SIGKILL for this host's workers when a peer failed",
    )
    return parser.parse_args(argv[:cut]), argv[cut + 1 :]


def exit_code_of(exitcode: int) -> int:
    """A worker's exit code as a shell reports it (signal S → 128 + S); never 0 for a failure."""
    if exitcode < 0:
        return 128 - exitcode
    return exitcode or 1


def stderr_tail(log_dir: Path, local_rank: int, limit: int = TAIL_CHARS) -> str:
    """The last ``limit`` characters of a local rank's stderr, as torchrun's ``--log-dir`` kept it."""
    files = sorted(log_dir.glob(f"*/attempt_*/{local_rank}/stderr.log"), key=lambda p: p.stat().st_mtime)
    if not files:
        return ""
    text = files[-1].read_text(errors="replace")
    return text[-limit:].lstrip("\n")


def describe_failures(failures: Mapping[int, Any], host: str, log_dir: Path) -> list[dict[str, Any]]:
    """torchrun's failures (``{rank: ProcessFailure}``) as report entries, root cause first.

    The root cause is the earliest failure among workers that were neither stopped by the agent
    (SIGTERM/SIGKILL) nor collateral (:func:`is_collateral`); ties are broken by when the rank last
    wrote to stderr.
    """
    entries = []
    for rank, failure in failures.items():
        local_rank = int(failure.local_rank)
        files = list(log_dir.glob(f"*/attempt_*/{local_rank}/stderr.log"))
        written = max((f.stat().st_mtime for f in files), default=float(failure.timestamp))
        traceback = stderr_tail(log_dir, local_rank)
        entries.append(
            {
                "host": host,
                "rank": int(rank),
                "local_rank": local_rank,
                "exitcode": exit_code_of(int(failure.exitcode)),
                "stopped": int(failure.exitcode) in AGENT_STOPPED,
                "timestamp": int(failure.timestamp),
                "collateral": is_collateral(traceback),
                "written": written,
                "traceback": traceback,
            }
        )
    entries.sort(key=lambda e: (e["stopped"], e["collateral"], e["timestamp"], e["written"]))
    return entries


class PeerWatch:
    """The cross-host failure channel: a key in the rendezvous store on the master.

    :param master_addr: the master host; :param port: its rendezvous port (``MASTER_PORT``).
    :param host: this host's name; :param is_master: True on the master, which hosts the store.
    :param nnodes: number of hosts (how many must read a failure before the master lets go).
    :param connect_timeout: seconds to keep trying to reach the store.
    """

    def __init__(
        self,
        master_addr: str,
        port: int,
        host: str,
        *,
        is_master: bool,
        nnodes: int,
        connect_timeout: float,
        report: Path | None = None,
        stop_grace: float = DEFAULT_PEER_STOP_GRACE,
    ) -> None:
        self.master_addr, self.port, self.host, self.report = master_addr, port, host, report
        self.stop_grace = stop_grace
        self.is_master, self.nnodes, self.connect_timeout = is_master, nnodes, connect_timeout
        self.remote: dict[str, Any] | None = None
        self._store: Any = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="smc-peer-watch", daemon=True)

    def start(self) -> None:
        """Open (master) or reach (others) the store and start watching for a peer's failure."""
        if self.is_master:
            # Opened before torchrun's agent: it shares this server (multi-tenant), and the server
            # lives as long as this launcher, so a failure published here reaches every peer.
            self._store = self._tcp_store(is_master=True)
        self._thread.start()

    def _tcp_store(self, *, is_master: bool) -> Any:
        from datetime import timedelta

        from torch.distributed import TCPStore

        return TCPStore(
            self.master_addr,
            self.port,
            None,
            is_master,
            timedelta(seconds=self.connect_timeout),
            wait_for_workers=False,
            multi_tenant=is_master,
        )

    def _watch(self) -> None:
        if self._store is None:
            try:
                store = self._tcp_store(is_master=False)
            except Exception as exc:  # the master never came up: torchrun's own rendezvous reports it
                print(f"smc: cannot reach the rendezvous store for failure reports: {exc}", file=sys.stderr)
                return
            with self._lock:
                self._store = store
        while not self._done.wait(POLL_INTERVAL):
            try:
                with self._lock:
                    if not self._store.check([FAILURE_KEY]):
                        continue
                    failure = json.loads(self._store.get(FAILURE_KEY))
                    if failure.get("host") == self.host:
                        return
                    self._store.add(SEEN_KEY, 1)
                    self.remote = failure
            except Exception:  # the store went away: the master ended, local workers will notice
                return
            print(
                f"smc: rank {failure.get('rank')} on {failure.get('host')} failed: stopping this host's "
                "workers.",
                file=sys.stderr,
                flush=True,
            )
            stop_children(self.stop_grace)
            # torchrun's agent notices its stopped workers and returns (main() then reports). If it
            # does not (it may be waiting, in C++, in its exit barrier for the host that failed), end
            # this launcher with the peer's failure after a grace period rather than hang.
            if not self._finished.wait(self.stop_grace + 1.0) and self.report is not None:
                write_report(self.report, {"root_cause": failure, "local_failures": []})
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(int(failure.get("exitcode") or 1))
            return

    def publish(self, entry: dict[str, Any], *, wait_for_peer: float = 0.0) -> dict[str, Any]:
        """Offer ``entry`` as the job's first failure; return the one that is (a peer's, if earlier).

        :param wait_for_peer: seconds to wait first for a peer's failure to be published (for an
            ``entry`` that is only collateral damage: the peer's is the root cause).
        """
        self._done.set()
        with self._lock:
            store = self._store
            if store is None:
                return entry
            peer = self._wait_for_peer(store, wait_for_peer)
            if peer is not None:
                return peer
            try:
                first = json.loads(store.compare_set(FAILURE_KEY, "", json.dumps(entry)))
                if first.get("host") != self.host and self.remote is None:
                    store.add(SEEN_KEY, 1)
            except Exception:
                return self.remote or entry
        if self.is_master and first.get("host") == self.host:
            self._linger(store)
        return first

    def _wait_for_peer(self, store: Any, seconds: float) -> dict[str, Any] | None:
        """A peer's published failure, waiting up to ``seconds`` for one; None when none came."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if store.check([FAILURE_KEY]):
                    failure = json.loads(store.get(FAILURE_KEY))
                    if failure.get("host") != self.host:
                        if self.remote is None:
                            store.add(SEEN_KEY, 1)
                        return dict(failure)
            except Exception:
                return None
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def _linger(self, store: Any) -> None:
        deadline = time.monotonic() + LINGER_SECONDS
        while time.monotonic() < deadline:
            try:
                if store.add(SEEN_KEY, 0) >= self.nnodes - 1:
                    return
            except Exception:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop watching (main() has reported)."""
        self._done.set()
        self._finished.set()


def stop_children(grace: float = DEFAULT_PEER_STOP_GRACE) -> None:
    """SIGTERM this process's children (torchrun's workers), SIGKILL those left after ``grace``.

    The children are never reaped here: torchrun's agent reaps them (``Popen.poll()``) and must see
    their real exit codes. A child reaped by someone else reads as exit code 0 to ``Popen.poll()``
    (ECHILD), so the agent took a worker that had raised for one that succeeded and sat in its
    end-of-job barrier, waiting for the failed host, until the launcher's 10 s fallback ended it.
    """
    import psutil

    children = psutil.Process().children()
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not [c for c in children if _running(c)]:
            return
        time.sleep(0.05)
    for child in children:
        if _running(child):
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass


def _running(child: Any) -> bool:
    """Whether ``child`` still runs (an exited child waiting to be reaped does not), without reaping it."""
    import psutil

    try:
        return bool(child.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write the failure report (JSON) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(path)


class Attempts:
    """This host's attempts under torchrun's restarts: each failure logged and kept, a deterministic
    error not restarted, ``SMC_ATTEMPT`` set for the next attempt's workers.

    It wraps two methods of torchrun's agent (``LocalElasticAgent``) for the life of this launcher:
    ``_monitor_workers`` (what each look at the workers found) and ``_restart_workers``.
    """

    def __init__(self, host: str, log_dir: Path) -> None:
        self.host, self.log_dir = host, log_dir
        self.records: list[str] = []
        self.attempt = 1

    def install(self) -> None:
        from torch.distributed.elastic.agent.server.api import WorkerState
        from torch.distributed.elastic.agent.server.local_elastic_agent import LocalElasticAgent

        monitor, restart = LocalElasticAgent._monitor_workers, LocalElasticAgent._restart_workers
        attempts = self

        def monitored(agent: Any, worker_group: Any) -> Any:
            result = monitor(agent, worker_group)
            if result.state in (WorkerState.FAILED, WorkerState.UNHEALTHY) and result.failures:
                attempts.failed(agent, result.failures)
            return result

        def restarted(agent: Any, worker_group: Any) -> Any:
            attempts.attempt += 1
            os.environ["SMC_ATTEMPT"] = str(attempts.attempt)  # the agent's environment is the workers'
            print(f"smc: torchrun starts attempt {attempts.attempt} on {attempts.host}.", file=sys.stderr)
            return restart(agent, worker_group)

        LocalElasticAgent._monitor_workers = monitored  # type: ignore[method-assign]
        LocalElasticAgent._restart_workers = restarted  # type: ignore[method-assign]

    def failed(self, agent: Any, failures: Mapping[int, Any]) -> None:
        from smc_core import deterministic_error

        entries = describe_failures(failures, self.host, self.log_dir)
        root = entries[0]
        what = (root["traceback"].strip().splitlines() or [f"exit code {root['exitcode']}"])[-1]
        who = f"rank {root['rank']} on {self.host}"
        record = f"attempt {self.attempt}: {who}, exit code {root['exitcode']}: {what}"
        self.records.append(record)
        refusal = deterministic_error(root["traceback"], int(root["exitcode"]))
        left = int(getattr(agent, "_remaining_restarts", 0))
        if refusal and left > 0:
            agent._remaining_restarts = 0
            print(f"smc: {record}; not restarted: {refusal}.", file=sys.stderr, flush=True)
        elif left > 0:
            print(f"smc: {record}; torchrun restarts the workers ({left} restart(s) left).", file=sys.stderr)
        sys.stderr.flush()


def _raise_signal(signum: int, frame: Any) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException

    raise SignalException(f"Process {os.getpid()} got signal {signum}", sigval=signal.Signals(signum))


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun with smc's failure reports; return the exit code."""
    options, torchrun_argv = split_argv(sys.argv[1:] if argv is None else argv)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from smc_pytorch.tail import install

    install()  # whole lines from --tee, written a block at a time
    args = parse_args(torchrun_argv)
    report = Path(options.report)
    log_dir = Path(tempfile.mkdtemp(prefix="smc-torchrun-"))
    args.log_dir, args.redirects, args.tee = str(log_dir), "3", "3"
    os.environ.setdefault("TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE", f"[{options.host} rank ${{rank}}]: ")
    nnodes = int(str(args.nnodes).split(":")[-1])
    watch = None
    attempts = Attempts(options.host, log_dir)
    if int(args.max_restarts) > 0:
        attempts.install()
        # A store of its own for each attempt's workers: with the agent's shared store (torch's
        # default), the workers of attempt 2 read the addresses the dead workers of attempt 1 left.
        os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    if nnodes > 1:
        conf = dict(kv.split("=", 1) for kv in args.rdzv_conf.split(",") if "=" in kv)
        timeout = float(conf.get("timeout", 600))
        if args.rdzv_backend == "c10d":  # restarts: the store is on the rendezvous endpoint
            master_addr, _, port = str(args.rdzv_endpoint).rpartition(":")
            is_master = conf.get("is_host") == "1"
        else:
            master_addr, port, is_master = args.master_addr, args.master_port, int(args.node_rank) == 0
        watch = PeerWatch(
            master_addr,
            int(port),
            options.host,
            is_master=is_master,
            nnodes=nnodes,
            connect_timeout=timeout,
            report=report,
            stop_grace=options.peer_stop_grace,
        )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_signal)  # until torchrun installs the same handler
    try:
        if watch:
            watch.start()
        run(args)
        if watch and watch.remote:  # a peer failed while this host's workers were finishing
            write_report(
                report, {"root_cause": watch.remote, "local_failures": [], "attempts": attempts.records}
            )
            return int(watch.remote.get("exitcode") or 1)
        write_report(report, {"attempts": attempts.records})
        return 0
    except ChildFailedError as error:
        entries = describe_failures(error.failures, options.host, log_dir)
        root = entries[0]
        if watch:
            wait = PEER_ROOT_WAIT if root["collateral"] or root["stopped"] else 0.0
            root = watch.publish({k: v for k, v in root.items() if k != "written"}, wait_for_peer=wait)
        write_report(report, {"root_cause": root, "local_failures": entries, "attempts": attempts.records})
        return int(root["exitcode"])
    except SignalException as error:
        code = 128 + int(error.sigval)
        write_report(report, {"signal": int(error.sigval), "exitcode": code})
        return code
    finally:
        if watch:
            watch.stop()
        import shutil

        shutil.rmtree(log_dir, ignore_errors=True)


def exit_now(code: int) -> None:
    """End this process with ``code`` at once, skipping the interpreter's teardown.

    Once :func:`main` has returned the job is over here: the report is written, torchrun's agent has
    reaped the workers and stopped its log tails, and the master's store has lingered for the peers.
    What is left is torch's teardown (C++ destructors, thread pools), 0.5-1 s of CPU that ``train``
    and every other host's failure would wait for (issue 28's failure curve).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
