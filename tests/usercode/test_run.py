"""Running and supervising the entry point: kinds, exact arguments, exit codes, signals, failure file."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from smc_core.host.reporting import FAILURE_LIMIT
from smc_core.launch.process import run_process, start_process

from ..helpers import TRAIN, failure_text, run_train

TRICKY = {"msg": "two words", "quote": 'it\'s "quoted"', "shell": "$(touch pwned) `id` ; rm -rf x", "e": ""}
EXPECTED_ARGS = [
    "-e",
    "",
    "--msg",
    "two words",
    "--quote",
    'it\'s "quoted"',
    "--shell",
    "$(touch pwned) `id` ; rm -rf x",
]

ECHO_PY = "import json, sys\nprint('ARGS=' + json.dumps(sys.argv[1:]))\n"
ECHO_SH = 'printf "ARGS="; for a in "$@"; do printf "[%s]" "$a"; done; echo\n'
SH_ARGS = "ARGS=" + "".join(f"[{a}]" for a in EXPECTED_ARGS)


def args_in(stdout: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if line.startswith("ARGS="))
    return json.loads(line[5:])  # type: ignore[no-any-return]


def test_python_script_gets_the_arguments_exactly(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", hyperparameters=TRICKY, code={"train.py": ECHO_PY})
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert args_in(done.stdout) == EXPECTED_ARGS
    assert not (base / "code" / "pwned").exists()


def test_shell_script_without_shebang_runs_with_sh(job_dir: Callable[..., Path]) -> None:
    base = job_dir(
        entry_point="run.sh", hyperparameters=TRICKY, code={"run.sh": 'echo "ZERO=$0"\n' + ECHO_SH}
    )
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert SH_ARGS in done.stdout
    assert "ZERO=./run.sh" in done.stdout  # as the reference toolkit runs it
    assert not (base / "code" / "pwned").exists()


def test_shell_script_runs_with_its_shebang_interpreter(job_dir: Callable[..., Path]) -> None:
    script = (
        '#!/usr/bin/env bash\narr=(a b)\necho "BASH ${#arr[@]} $BASH_VERSION"\necho "ZERO=$0"\n' + ECHO_SH
    )
    base = job_dir(entry_point="run.sh", hyperparameters=TRICKY, code={"run.sh": script})
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert "BASH 2 " in done.stdout  # a bash array: not /bin/sh
    assert SH_ARGS in done.stdout
    assert "ZERO=./run.sh" in done.stdout


def test_executable_command(job_dir: Callable[..., Path]) -> None:
    base = job_dir(
        entry_point="launch", hyperparameters=TRICKY, code={"launch": f"#!{sys.executable}\n" + ECHO_PY}
    )
    (base / "code" / "launch").chmod(0o755)
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert args_in(done.stdout) == EXPECTED_ARGS


def test_command_on_path(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="echo", hyperparameters={"msg": "a  b"})
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "--msg a  b\n"


def test_non_executable_without_shebang_is_explained(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="launch", code={"launch": "echo hi\n"})
    done = run_train(base)
    assert done.returncode == 2
    assert "not executable" in failure_text(base)


def test_missing_entry_point_suggests_the_closest_file(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="trian.py", code={"train.py": ECHO_PY, "utils.py": ""})
    done = run_train(base)
    assert done.returncode == 2
    text = failure_text(base)
    assert "'trian.py'" in text and "Did you mean 'train.py'?" in text


def test_output_is_streamed_line_by_line_unchanged(job_dir: Callable[..., Path]) -> None:
    script = (
        "import sys\nsys.stdout.write('no newline at end, é ✓')\nsys.stdout.flush()\n"
        "print('x', file=sys.stderr)\n"
    )
    base = job_dir(entry_point="train.py", code={"train.py": script})
    done = run_train(base)
    assert done.stdout == "no newline at end, é ✓"
    assert "x\n" in done.stderr


# --- failures and the failure file ------------------------------------------------------------

FAILING = (
    """
import sys
def inner():
    raise ValueError("loss became NaN at step 12")
print("starting", flush=True)
"""
    + "\n".join(f"print('noise line {i} ' + 'z' * 60, file=sys.stderr)" for i in range(40))
    + """
inner()
"""
)


def test_failure_file_has_the_key_facts_first(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", hyperparameters={"epochs": 3}, code={"train.py": FAILING})
    done = run_train(base)
    assert done.returncode == 1
    text = failure_text(base)
    shown = text[:FAILURE_LIMIT]
    lines = shown.splitlines()
    assert lines[0] == "UserCodeError: ValueError: loss became NaN at step 12"
    assert lines[1] == "ExitCode 1"
    assert lines[2].startswith("Command ") and "train.py --epochs 3" in lines[2]
    assert 'raise ValueError("loss became NaN at step 12")' in shown  # the traceback's end
    assert "noise line 0 " in text  # the rest is kept after the first 1024 characters


def test_user_exit_code_is_kept(job_dir: Callable[..., Path]) -> None:
    base = job_dir(
        entry_point="train.py",
        code={"train.py": "import sys\nprint('bad input', file=sys.stderr)\nsys.exit(42)\n"},
    )
    done = run_train(base)
    assert done.returncode == 42
    text = failure_text(base)
    assert text.startswith("UserCodeError: bad input\nExitCode 42\n")


def test_death_by_sigkill_is_137_and_explained(job_dir: Callable[..., Path]) -> None:
    script = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    base = job_dir(entry_point="train.py", code={"train.py": script})
    done = run_train(base)
    assert done.returncode == 137
    assert failure_text(base).startswith(
        "UserCodeError: the training code ended: killed by SIGKILL (not by smc;"
    )


def test_failure_file_written_by_the_script_is_kept(job_dir: Callable[..., Path]) -> None:
    script = (
        "import os, sys\nopen(os.path.join(os.environ.get('SM_OUTPUT_DIR', '../output'), 'failure'), 'w')"
        ".write('my own reason')\nsys.exit(3)\n"
    )
    base = job_dir(entry_point="train.py", code={"train.py": script})
    done = run_train(base)
    assert done.returncode == 3
    assert failure_text(base) == "my own reason"


# --- signals ------------------------------------------------------------------------------------

CHECKPOINTING = """
import os, signal, sys, time
def on_term(signum, frame):
    with open("checkpoint.txt", "w") as f:
        f.write("saved at step 7")
    print("checkpoint written", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open("started", "w").close()
print("training", flush=True)
time.sleep(120)
"""


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_sigterm_is_passed_on_and_the_script_checkpoints(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", code={"train.py": CHECKPOINTING})
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    train = subprocess.Popen([TRAIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(base / "code" / "started")
    train.send_signal(signal.SIGTERM)
    out, err = train.communicate(timeout=60)
    assert (base / "code" / "checkpoint.txt").read_text() == "saved at step 7"
    assert "checkpoint written" in out
    assert "Received SIGTERM" in err
    # A stop is a stop: the script exited 0 after checkpointing, the job is still stopped (143)
    assert train.returncode == 143
    text = failure_text(base)
    assert text.startswith("JobStopped: the job was stopped by SIGTERM while the user's code ran"), text
    assert "it exited 0 (it handled the stop itself" in text and not (base / "output" / "success").exists()


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught >> (sig - 1) & 1)


def test_a_stop_while_train_starts_is_the_jobs_outcome(job_dir: Callable[..., Path]) -> None:
    # SIGTERM the moment train has any handler for it: tenths of a second before the runner is
    # imported. As a container's PID 1 an unhandled SIGTERM would be dropped; here it would kill
    # train with no outcome. Held from the start, it is the job's stop, with a failure file.
    base = job_dir(entry_point="train.py", code={"train.py": "raise SystemExit('never runs')"})
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    train = subprocess.Popen([TRAIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _catches(train.pid, signal.SIGTERM):
        assert train.poll() is None and time.monotonic() < deadline, "train never handled SIGTERM"
        time.sleep(0.001)
    train.send_signal(signal.SIGTERM)
    _, err = train.communicate(timeout=60)
    assert train.returncode == 128 + signal.SIGTERM, err
    text = failure_text(base)
    assert text.startswith("JobStopped: the job was stopped by SIGTERM before"), text
    assert "never runs" not in err


def test_grace_period_then_sigkill_and_no_orphans(job_dir: Callable[..., Path]) -> None:
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    base = job_dir(entry_point="train.py", code={"train.py": script})
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SMC_GRACE_PERIOD": "1"}
    train = subprocess.Popen([TRAIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(base / "code" / "child.pid")
    time.sleep(0.2)  # the pid is written before the file is closed
    child_pid = int((base / "code" / "child.pid").read_text())
    train.send_signal(signal.SIGTERM)
    _, err = train.communicate(timeout=60)
    assert train.returncode == 143  # the stop's, whatever the code's end
    assert "sending SIGKILL" in err
    text = failure_text(base)
    assert text.startswith("JobStopped: the job was stopped by SIGTERM"), text
    assert "smc sent SIGKILL 1 s after passing on SIGTERM" in text
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE


# --- run_process as a library ---------------------------------------------------------------------


def test_run_process_prefix_tail_and_details() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    code = "import sys\nfor i in range(30): print(f'e{i}', file=sys.stderr)\nprint('a\\nb')\nsys.exit(5)\n"
    result = run_process(
        [sys.executable, "-c", code], env=os.environ, prefix="[algo-2] ", tail_lines=3, stdout=out, stderr=err
    )
    assert result.exit_code == 5 and not result.succeeded
    assert out.getvalue() == b"[algo-2] a\n[algo-2] b\n"
    assert err.getvalue().splitlines()[0] == b"[algo-2] e0"
    assert result.failure == "e27\ne28\ne29"
    assert result.details["stderr_tail"] == "e27\ne28\ne29"


def test_run_process_stops_what_the_command_left_behind(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    script = (
        "import subprocess, sys, time\np = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\ntime.sleep(1.5)\n"
    )
    result = run_process([sys.executable, "-c", script], env=os.environ)
    assert result.exit_code == 0
    pid = int(pidfile.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_run_process_command_not_found() -> None:
    result = run_process(["/nonexistent/launcher", "--x"], env=os.environ)
    assert result.exit_code == 127
    assert "cannot start '/nonexistent/launcher'" in (result.failure or "")


def test_background_process_start_and_stop() -> None:
    server = start_process(
        [sys.executable, "-c", "import time\nprint('ps up', flush=True)\ntime.sleep(300)"],
        env=os.environ,
        prefix="[ps] ",
        stdout=io.BytesIO(),
    )
    assert server.poll() is None
    result = server.stop(grace_period=5)
    assert result.exit_code == 128 + signal.SIGTERM
    assert server.poll() == 143
    with start_process([sys.executable, "-c", "import time; time.sleep(300)"], env=os.environ) as other:
        pid = other.pid
    assert not psutil.pid_exists(pid)


@pytest.mark.parametrize("exit_code", [0, 3])
def test_run_process_result(exit_code: int) -> None:
    result = run_process([sys.executable, "-c", f"raise SystemExit({exit_code})"], env=os.environ)
    assert result.exit_code == exit_code
    assert result.command[0] == sys.executable  # type: ignore[index]


def test_sigint_is_passed_on(job_dir: Callable[..., Path]) -> None:
    script = (
        "import time\nopen('started', 'w').close()\ntry:\n    time.sleep(120)\nexcept KeyboardInterrupt:\n"
        "    print('interrupted cleanly', flush=True)\n    raise\n"
    )
    base = job_dir(entry_point="train.py", code={"train.py": script})
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    train = subprocess.Popen([TRAIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(base / "code" / "started")
    train.send_signal(signal.SIGINT)
    out, _ = train.communicate(timeout=60)
    assert "interrupted cleanly" in out
    assert train.returncode == 130  # the stop's: 128 + SIGINT
    assert failure_text(base).startswith(
        "JobStopped: the job was stopped by SIGINT while the user's code ran (invoke_train); the user's code "
        "had started\nExitCode 130\nThe training code had SMC_GRACE_PERIOD (100 s) to end after the stop; it "
        "ended with exit code 130: interrupted (SIGINT); last error output: KeyboardInterrupt"
    )
