"""The launcher's failure attribution: the rank that failed, not the ranks that failed because of it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from pytorch_helpers import free_port
from smc_pytorch.launcher import PeerWatch, describe_failures, is_collateral

GLOO_ECHO = (
    "terminate called after throwing an instance of 'gloo::IoException'\n"
    "  what():  [gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.200.0.2]:41234\n"
)
ROOT = 'Traceback (most recent call last):\n  File "train.py", line 40\nValueError: boom on rank 1\n'


def _stderr(log_dir: Path, local_rank: int, text: str) -> None:
    path = log_dir / "run" / "attempt_0" / str(local_rank) / "stderr.log"
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_collateral_failures_are_recognised() -> None:
    assert is_collateral(GLOO_ECHO)
    assert is_collateral("RuntimeError: NCCL communicator was aborted on rank 0.")
    assert not is_collateral(ROOT)


def test_a_real_failure_is_the_local_root_cause_even_when_it_came_later(tmp_path: Path) -> None:
    _stderr(tmp_path, 0, GLOO_ECHO)
    _stderr(tmp_path, 1, ROOT)
    failures = {
        0: SimpleNamespace(local_rank=0, exitcode=-6, timestamp=100),  # aborted by gloo: 134
        1: SimpleNamespace(local_rank=1, exitcode=1, timestamp=101),
    }
    entries = describe_failures(failures, "algo-1", tmp_path)
    assert [(e["rank"], e["exitcode"], e["collateral"]) for e in entries] == [(1, 1, False), (0, 134, True)]


def _connected(watch: PeerWatch) -> None:
    deadline = time.monotonic() + 30
    while watch._store is None:
        assert time.monotonic() < deadline, "the worker never reached the store"
        time.sleep(0.05)


def test_a_host_whose_failure_is_collateral_reports_the_peers_root_cause() -> None:
    port = free_port()
    master = PeerWatch("127.0.0.1", port, "algo-1", is_master=True, nnodes=2, connect_timeout=30)
    worker = PeerWatch("127.0.0.1", port, "algo-2", is_master=False, nnodes=2, connect_timeout=30)
    master.start()
    worker.start()
    _connected(worker)
    echo = {"host": "algo-1", "rank": 0, "exitcode": 134, "collateral": True}
    real = {"host": "algo-2", "rank": 1, "exitcode": 1, "collateral": False}
    published: dict[str, object] = {}

    def worker_fails_a_second_later() -> None:
        time.sleep(1.0)  # its agent noticed later than the master's agent noticed the echo
        published["worker"] = worker.publish(real)

    thread = threading.Thread(target=worker_fails_a_second_later)
    thread.start()
    try:
        assert master.publish(echo, wait_for_peer=20) == real
        thread.join(30)
        assert published["worker"] == real
    finally:
        master.stop()
        worker.stop()
