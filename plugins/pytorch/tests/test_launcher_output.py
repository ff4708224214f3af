"""The launcher's output and stopping: the whole-line tail (smc_pytorch.tail) and stop_children."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

from smc_pytorch.tail import install, tail_whole_lines


def test_lines_written_in_halves_come_out_whole_and_prefixed(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    finished = threading.Event()
    out = io.StringIO()
    tail = threading.Thread(
        target=tail_whole_lines, args=("[algo-1 rank 3]: ", str(log), out, finished, 0.01)
    )
    tail.start()
    lines = [f"line {i} " + "x" * (i % 50) + "\n" for i in range(400)]
    with log.open("w") as f:
        for line in lines:
            half = len(line) // 2
            f.write(line[:half])
            f.flush()
            time.sleep(0.0005)  # the tail reads the file between the halves now and then
            f.write(line[half:])
            f.flush()
        f.write("no newline at the end")
        f.flush()
    finished.set()
    tail.join(10)
    assert not tail.is_alive()
    got = out.getvalue().splitlines(keepends=True)
    assert got == [f"[algo-1 rank 3]: {line}" for line in lines] + [
        "[algo-1 rank 3]: no newline at the end\n"
    ]


def test_a_stream_with_a_binary_buffer_gets_the_bytes_in_order_after_its_text(tmp_path: Path) -> None:
    # The console is a text stream over a binary one: blocks of lines go to the binary one as they are
    # (no decode and encode again), after whatever was written to the text stream before.
    log = tmp_path / "stdout.log"
    log.write_bytes(b"one\ntwo \xff not utf-8\n\nthree")
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    out.write("written as text first\n")
    finished = threading.Event()
    finished.set()
    tail_whole_lines("[algo-2 rank 1]: ", str(log), out, finished, 0.01)
    out.flush()
    assert raw.getvalue() == (
        b"written as text first\n[algo-2 rank 1]: one\n[algo-2 rank 1]: two \xff not utf-8\n"
        b"[algo-2 rank 1]: \n[algo-2 rank 1]: three\n"
    )


def test_install_replaces_torchs_tail_function() -> None:
    from torch.distributed.elastic.multiprocessing import tail_log

    original = tail_log.tail_logfile
    try:
        assert install()
        assert tail_log.tail_logfile is tail_whole_lines
    finally:
        tail_log.tail_logfile = original


STOPPER = """
import subprocess, sys
from smc_pytorch.launcher import stop_children
child = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\\nprint('ready', flush=True)\\ntime.sleep(60)"],
    stdout=subprocess.PIPE, text=True)
child.stdout.readline()
stop_children(grace=10)
print(child.wait(5))
"""


def test_stop_children_leaves_the_exit_code_to_torchruns_agent() -> None:
    # torchrun's agent reaps its workers through Popen; had the launcher reaped them, Popen would read
    # exit code 0 (ECHILD) and the agent would wait in its exit barrier (the "10 s fallback").
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", STOPPER], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "3"
