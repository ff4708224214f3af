"""Supervision edge cases: signals during teardown and around the start, and CRLF output.

Real subprocesses throughout. Each test is bounded by pytest-timeout and by ``communicate``/``run``
timeouts, so a hang (the bugs these tests guard against) fails instead of blocking the suite.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from smc_core.base.supervision import Supervision
from smc_core.errors import ClusterError
from smc_core.launch.process import halt_processes, resume_processes, run_process, start_process

from ..helpers import TRAIN, failure_text, run_train


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique word for a test's processes' command lines: whatever is left with it is killed after."""
    word = f"smc-edge-{uuid.uuid4().hex}"
    yield word
    for proc in psutil.process_iter(["cmdline"]):
        if any(word in part for part in proc.info["cmdline"] or []):
            try:
                proc.kill()
            except psutil.Error:
                pass


# --- 1. a signal during the teardown ------------------------------------------------------------

# The script starts a child (in its group) that survives SIGTERM for 20 s and says when it got one,
# then fails. smc's teardown SIGTERMs the leftover and waits for it (seconds) before SIGKILL.
LEAVES_A_STUBBORN_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import signal, sys, time
def on_term(signum, frame):
    open("child-got-sigterm", "w").close()
signal.signal(signal.SIGTERM, on_term)
open("child-ready", "w").close()
end = time.monotonic() + 20
while time.monotonic() < end:
    time.sleep(0.05)
''', "MARKER"])
while True:
    try:
        open("child-ready").close()
        break
    except FileNotFoundError:
        time.sleep(0.05)
open("child.pid", "w").write(str(child.pid))
print("RuntimeError: the script failed and left its child running", file=sys.stderr)
sys.exit(3)
"""


@pytest.mark.timeout(60)
def test_sigterm_during_teardown_does_not_hang(job_dir: Callable[..., Path], marker: str) -> None:
    script = LEAVES_A_STUBBORN_CHILD.replace("MARKER", marker)
    base = job_dir(entry_point="train.py", code={"train.py": script})
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SMC_GRACE_PERIOD": "10"}
    train = subprocess.Popen([TRAIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The child got the teardown's SIGTERM: smc is inside wait(), stopping leftovers, for seconds.
        wait_for(base / "code" / "child-got-sigterm")
        train.send_signal(signal.SIGTERM)
        _, err = train.communicate(timeout=45)
    finally:
        if train.poll() is None:
            train.kill()  # the deadlock: only SIGKILL ends it
            train.communicate()
    assert train.returncode == 3, err
    assert failure_text(base).startswith("UserCodeError: RuntimeError: the script failed and left its child")
    assert "Stopped 1 process(es) left running" in err
    assert gone(int((base / "code" / "child.pid").read_text()))


# --- 2. a signal while the process starts ---------------------------------------------------------

# A driver that starts a supervised process and, from an audit hook, sends itself SIGTERM at a chosen
# moment of the start: during Popen (before the child exists), or at the first audited event after
# Popen returned (the child exists, in its own session). A signal not yet handled by then is sent
# after start_process returns, so the driver's result is the same whichever moment it was.
START_DRIVER = """
import json, os, signal, sys
from smc_core.base.supervision import Supervision
from smc_core.launch.process import start_process

AFTER_POPEN = sys.argv[1] == "after-popen"
state = {"popen": False, "sent": False, "inside": False}

def hook(event, args):
    if state["sent"]:
        return
    if event == "subprocess.Popen" and not AFTER_POPEN:
        state["sent"] = state["inside"] = True
        os.kill(os.getpid(), signal.SIGTERM)
    elif event == "subprocess.Popen":
        state["popen"] = True
    elif state["popen"]:
        state["sent"] = state["inside"] = True
        os.kill(os.getpid(), signal.SIGTERM)

sys.addaudithook(hook)
process = start_process(
    [sys.executable, "-c", "import time; time.sleep(60)", sys.argv[2]],
    env=os.environ,
    supervision=Supervision(grace_period=20),
)
if not state["sent"]:
    state["sent"] = True
    os.kill(os.getpid(), signal.SIGTERM)
result = process.wait()
print(json.dumps({"exit_code": result.exit_code, "details": dict(result.details), "inside": state["inside"]}))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("moment", ["during-popen", "after-popen"])
def test_sigterm_while_starting_is_passed_on(tmp_path: Path, moment: str, marker: str) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(START_DRIVER)
    done = subprocess.run(
        [sys.executable, str(driver), moment, marker], capture_output=True, text=True, timeout=50
    )
    # Before the fix the driver died of the SIGTERM (-15), and after Popen its child lived on.
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["exit_code"] == 128 + signal.SIGTERM
    assert outcome["details"]["signal"] == "SIGTERM"
    assert "Received SIGTERM: passing it on" in done.stderr
    if moment == "during-popen":
        assert outcome["inside"]
    assert all(gone(p.pid) for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or []))


@pytest.mark.timeout(60)
def test_the_child_starts_with_no_signal_blocked() -> None:
    """Nothing smc does around the start leaks into the child's signal mask."""
    out = io.BytesIO()
    code = "import signal; print(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))"
    result = run_process([sys.executable, "-c", code], env=os.environ, stdout=out)
    assert result.exit_code == 0
    assert out.getvalue() == b"[]\n"


# --- 3. CRLF output ---------------------------------------------------------------------------------

CRLF_FAILURE = """
import sys
sys.stderr.reconfigure(newline="\\r\\n")
print("epoch 1\\r", end="", file=sys.stderr, flush=True)
def step():
    raise ValueError("boom")
step()
"""


@pytest.mark.timeout(60)
def test_crlf_error_output_reaches_the_failure_file(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", code={"train.py": CRLF_FAILURE})
    done = run_train(base, timeout=50)
    assert done.returncode == 1
    text = failure_text(base)
    assert text.startswith("UserCodeError: ValueError: boom\n"), text
    assert 'raise ValueError("boom")' in text


@pytest.mark.timeout(60)
def test_crlf_lines_with_a_prefix_and_progress_bars() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    code = (
        "import sys, time\n"
        "o = sys.stdout.buffer\n"
        "o.write(b'a\\r\\nb\\r\\n10%\\r20%\\r\\r\\nend\\n'); o.flush()\n"
        "o.write(b'split\\r'); o.flush(); time.sleep(0.3)\n"  # most likely read apart from its \\n
        "o.write(b'\\nlast\\r\\n'); o.flush()\n"
        "sys.stderr.buffer.write(b'w1\\r\\nValueError: boom\\r\\n'); sys.exit(2)\n"
    )
    result = run_process(
        [sys.executable, "-c", code], env=os.environ, prefix="[h] ", stdout=out, stderr=err, tail_lines=5
    )
    assert out.getvalue() == (
        b"[h] a\r\n[h] b\r\n[h] 10%\r[h] 20%\r[h] \r\n[h] end\n[h] split\r\n[h] last\r\n"
    )
    assert err.getvalue() == b"[h] w1\r\n[h] ValueError: boom\r\n"
    assert result.exit_code == 2
    assert result.failure == "w1\nValueError: boom"


# --- 4. halting every process: the job cannot go on on this host (a lost host) -------------------


def test_halt_stops_every_process_starts_none_and_owns_its_sigkill(marker: str) -> None:
    ignores = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               f"print('up', flush=True); time.sleep(60)  # {marker}"]  # fmt: skip
    obeys = [sys.executable, "-c", f"import time; print('up', flush=True); time.sleep(60)  # {marker}"]
    out = io.BytesIO()
    stubborn, polite = (start_process(c, env=os.environ, stdout=out) for c in (ignores, obeys))
    try:
        deadline = time.monotonic() + 30
        while out.getvalue().count(b"up") < 2:
            assert time.monotonic() < deadline, out.getvalue()
            time.sleep(0.05)
        start = time.monotonic()
        assert halt_processes(ClusterError("algo-2 was lost: it fell silent"), grace=0.5) == 2
        with pytest.raises(ClusterError, match="algo-2 was lost"):  # nothing starts while halted
            start_process(obeys, env=os.environ)
        quick, slow = polite.wait(timeout=10), stubborn.wait(timeout=10)
        assert time.monotonic() - start < 5
    finally:
        resume_processes()
    assert quick.exit_code == 143 and quick.details["stopped_by_smc"] == "algo-2 was lost: it fell silent"
    # SIGKILL after the grace smc gave: smc's own, never the out-of-memory killer's
    assert slow.exit_code == 137 and slow.details["kill_cause"] == "smc-stop", slow.details
    assert (slow.failure or "").startswith("smc stopped the process and sent SIGKILL 0.5 s later")
    assert run_process([sys.executable, "-c", "pass"], env=os.environ).exit_code == 0  # resumed


def test_a_second_stop_is_not_passed_on_again(tmp_path: Path) -> None:
    # The platform's SIGTERM and a peer host's report of its own stop reach smc both: one stop. A
    # second SIGTERM would make some launchers quit at once, leaving what they started (mpirun
    # aborts on it); the first one's grace period runs, then SIGKILL.
    counts = tmp_path / "sigterms"
    script = (
        "import signal, time\n"
        f"path = {str(counts)!r}\n"
        "def on_term(signum, frame):\n"
        "    with open(path, 'a') as f:\n"
        "        f.write('x')\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    out = io.BytesIO()
    process = start_process(
        [sys.executable, "-c", script], env=os.environ, stdout=out, supervision=Supervision(grace_period=1)
    )
    deadline = time.monotonic() + 30
    while b"up" not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGINT)  # any stop: SIGINT too
    process.send_signal(signal.SIGTERM)
    result = process.wait(timeout=30)
    assert counts.read_text() == "x"  # one SIGTERM reached the process
    assert process.forwarded == ["SIGTERM"]
    assert result.exit_code == 137 and process.killed_after_grace  # the first stop's grace, then SIGKILL
