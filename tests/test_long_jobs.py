"""Long jobs in the core (issue 26): stalls of a plain script (py-spy forbidden, py-spy missing) and of
an MPI job on 2 hosts after a restart agreed by both, no false alarm, off by default; restarts of the
whole code after a failure and after a stall; the policy's settings and hyperparameters. The torch
cases are in plugins/pytorch/tests/test_long_jobs.py; a stall's exit code, a bad stall timeout, stalls
in function mode, restarts that run out and a SyntaxError never restarted are the fault catalogue's
(tests/faults/cases_longjobs.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smc_core.base.settings import parse_settings
from smc_core.errors import ConfigError
from smc_core.job.longjobs import deterministic_error, long_job_policy
from smc_core.launch.stacks import parse_faulthandler, pyspy_unusable
from smc_core.testing.jobs import make_job_dir
from smc_core.testing.mpi import mpi_leftovers, mpi_unavailable_reason
from smc_core.testing.netns import NetnsHost

from .helpers import TRAIN, failure_text, run_train

NOPTRACE = Path(__file__).parent / "fixtures" / "noptrace.py"

SLEEPER = """\
import time
print("step 1", flush=True)
def wait_for_data():
    time.sleep(3600)
wait_for_data()
"""

MPI_RESTART_THEN_STALL = """\
import os, time
from mpi4py import MPI
comm = MPI.COMM_WORLD
attempt = int(os.environ["SMC_ATTEMPT"])
print(f"rank {comm.rank} of attempt {attempt} ready", flush=True)
if comm.rank == 1 and attempt == 1:
    raise ConnectionError("connection reset by peer on attempt 1")
if comm.rank == 1:
    time.sleep(3600)
comm.allreduce(1)
"""
MPI_UNAVAILABLE = mpi_unavailable_reason(hosts=2)


def _host_env(host: NetnsHost) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env.update(
        SAGEMAKER_BASE_DIR=str(host.job_dir),
        SMC_DISABLE_PLUGINS="pytorch",
        SMC_MPI_WAIT_TIMEOUT="60",
        SMC_HOST_WAIT_TIMEOUT="60",
        SMC_PEER_STOP_GRACE="2",
    )
    return env


QUIET_WITH_CHECKPOINTS = """\
import os, time
directory = os.environ["SM_CHECKPOINT_DIR"]
os.makedirs(directory, exist_ok=True)
for step in range(5):
    time.sleep(2)
    with open(os.path.join(directory, f"step-{step}.pt"), "w") as f:
        f.write(str(step))
"""

FLAKY = """\
import os, time
attempt = int(os.environ["SMC_ATTEMPT"])
print(f"attempt {attempt}", flush=True)
if attempt == 1:
    raise RuntimeError(f"the network blinked on attempt {attempt}")
def wait_for_a_lost_peer():
    time.sleep(3600)
if attempt == 2:
    wait_for_a_lost_peer()
print("trained", flush=True)
"""


def test_stalls_and_restarts_are_off_by_default() -> None:
    policy = long_job_policy(parse_settings({}), {})
    assert policy.stall_timeout is None and policy.max_restarts == 0 and policy.stacks == "auto"
    assert policy.describe() == "no stall watch, no restarts"


def test_the_job_hyperparameter_wins_over_the_image_setting_and_bad_values_are_named() -> None:
    settings = parse_settings({"SMC_STALL_TIMEOUT": "600", "SMC_MAX_RESTARTS": "1"})
    policy = long_job_policy(
        settings,
        {"sagemaker_stall_timeout": "30", "sagemaker_max_restarts": 3, "sagemaker_stall_progress": "step"},
    )
    assert policy.stall_progress is not None
    assert (policy.stall_timeout, policy.max_restarts, policy.stall_progress.pattern) == (30.0, 3, "step")
    assert long_job_policy(settings, {"sagemaker_stall_timeout": 0}).stall_timeout is None
    with pytest.raises(ConfigError, match="'sagemaker_stall_timeout' is \"soon\""):
        long_job_policy(settings, {"sagemaker_stall_timeout": "soon"})
    with pytest.raises(ConfigError, match="sagemaker_max_restarts"):
        long_job_policy(settings, {"sagemaker_max_restarts": -1})
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        long_job_policy(settings, {"sagemaker_stall_progress": "step ("})
    with pytest.raises(ConfigError, match="SMC_STALL_PROGRESS"):
        parse_settings({"SMC_STALL_PROGRESS": "("})


def test_deterministic_errors_are_told_apart() -> None:
    assert "SyntaxError" in (deterministic_error('  File "t.py", line 1\nSyntaxError: invalid syntax') or "")
    assert "ModuleNotFoundError" in (deterministic_error("ModuleNotFoundError: No module named 'x'") or "")
    assert deterministic_error("usage: train.py [-h]\ntrain.py: error: unrecognized", 2) is not None
    assert deterministic_error("RuntimeError: Connection closed by peer") is None
    assert deterministic_error(None, 137) is None


def test_faulthandler_text_is_read_main_thread_first() -> None:
    text = (
        'Thread 0x00007f44a5ff36c0 (most recent call first):\n  File "train.py", line 3 in <lambda>\n\n'
        'Current thread 0x00007f44a7433b80 (most recent call first):\n  File "train.py", line 6 in f\n'
        '  File "train.py", line 7 in <module>\n'
    )
    threads = parse_faulthandler(text)
    assert [t.name for t in threads] == ["MainThread", "0x00007f44a5ff36c0"]
    assert [f.describe() for f in threads[0].frames] == ["train.py:6 in f", "train.py:7 in <module>"]


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "aarch64"), reason="the test's seccomp filter knows x86_64, aarch64"
)
def test_a_stalled_script_where_ptrace_is_forbidden_is_explained_by_faulthandler(tmp_path: Path) -> None:
    """py-spy cannot attach (a seccomp filter forbids ptrace, as some container runtimes do): the log
    says why, faulthandler (armed through smc's sitecustomize) reads the stack, the failure file's
    first line names the line the script waits on, exit 7, within the stall time + 10 s."""
    assert pyspy_unusable() is None, "py-spy must work outside the filter for the test to mean anything"
    base = make_job_dir(tmp_path / "job", entry_point="train.py", code={"train.py": SLEEPER})
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SMC_STALL_TIMEOUT": "4"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(NOPTRACE), TRAIN], env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 7, done.stderr[-4000:]
    assert elapsed < 4 + 10, f"{elapsed:.1f} s"
    assert "py-spy cannot read a process here" in done.stderr and "CAP_SYS_PTRACE" in done.stderr
    assert "(by faulthandler)" in done.stderr
    first, second = failure_text(base).splitlines()[:2]
    assert first.startswith("StallError: no progress on any host for 4 s"), first
    assert "train.py:4 in wait_for_data" in first, first
    assert second == "ExitCode 7"


def test_a_stall_is_explained_by_faulthandler_where_py_spy_is_not_installed(tmp_path: Path) -> None:
    """py-spy is a dependency only where it has wheels: in an environment without it (a venv that sees
    this one's packages but has no py-spy beside its python or on PATH), the log says so and the stall
    is still explained, by faulthandler."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    ours = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (theirs,) = venv.glob("lib/python*/site-packages")
    (theirs / "smc-test.pth").write_text(f"import site; site.addsitedir({str(ours)!r})\n")
    assert not (venv / "bin" / "py-spy").exists()
    base = make_job_dir(tmp_path / "job", entry_point="train.py", code={"train.py": SLEEPER})
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "py-spy").exists()
    )
    done = run_train(
        base, python=str(venv / "bin" / "python"), env={"SMC_STALL_TIMEOUT": "3", "PATH": path}, timeout=60
    )
    assert done.returncode == 7, done.stderr[-4000:]
    assert "Stacks: py-spy is not installed" in done.stderr, done.stderr[-4000:]
    assert "(by faulthandler)" in done.stderr, done.stderr[-4000:]
    first = failure_text(base).splitlines()[0]
    assert (
        first.startswith("StallError: no progress on any host for 3 s")
        and "train.py:4 in wait_for_data" in first
    )


@pytest.mark.netns
@pytest.mark.skipif(MPI_UNAVAILABLE is not None, reason=MPI_UNAVAILABLE or "")
def test_an_mpi_job_on_2_hosts_restarts_together_then_its_stall_names_the_rank_on_host_2(netns_hosts):
    """One 2-host MPI run (a rank per host) checks the whole-job restart agreed over the job's channel
    and the stall across hosts: attempt 1's rank 1 on algo-2 raises ConnectionError, the master
    decides to restart, both hosts start attempt 2 (the MPI master hands out a new key, its handlers
    of attempt 1 gone); there rank 1 sleeps before the all-reduce: after 6 s without progress both
    hosts end with exit 7, the failure file naming rank 1 on algo-2 and its line, rank 0 in the
    all-reduce, and both attempts."""
    cluster = netns_hosts(2)
    for host in cluster.hosts:
        make_job_dir(
            host.job_dir,
            entry_point="train.py",
            code={"train.py": MPI_RESTART_THEN_STALL},
            resource_config=host.resource_config(cluster.host_names),
            hyperparameters={
                "sagemaker_mpi_enabled": True,
                "sagemaker_max_restarts": 1,
                "sagemaker_stall_timeout": 6,
            },
        )
    started = time.monotonic()
    runs = cluster.run_all(lambda host: [TRAIN], env_for=_host_env, timeout=180)
    took = time.monotonic() - started
    logs = "\n".join(f"--- {h.name}:\n{r.output[-6000:]}" for h, r in zip(cluster.hosts, runs, strict=True))
    assert [r.returncode for r in runs] == [7, 7], logs
    assert (
        "Attempt 2 of at most 2 starts." in runs[0].output and "The master restarts the job" in runs[1].output
    )
    assert "[algo-2 rank 1] rank 1 of attempt 2 ready" in runs[0].output, logs
    failure = failure_text(cluster.hosts[0].job_dir)
    first = failure.splitlines()[0]
    assert first.startswith("StallError: no progress on any host for 6 s"), failure
    assert "rank 1 on algo-2" in failure and "train.py:9 in <module>" in failure, failure
    assert any("rank 0 on algo-1" in line and "train.py:10" in line for line in failure.splitlines()), failure
    assert "attempt 1: " in failure and "ConnectionError" in failure and "attempt 2: stalled" in failure, (
        failure
    )
    assert failure_text(cluster.hosts[1].job_dir).startswith("StallError: no progress"), logs
    assert took < 150, f"{took:.0f} s"
    assert mpi_leftovers("train.py") == []


def test_a_quiet_job_that_writes_checkpoints_is_no_stall(tmp_path: Path) -> None:
    """Nothing printed for 10 s, twice the stall time of 5 s, but a checkpoint file every 2 s: no
    false alarm."""
    base = make_job_dir(tmp_path / "job", entry_point="train.py", code={"train.py": QUIET_WITH_CHECKPOINTS})
    done = run_train(base, env={"SMC_STALL_TIMEOUT": "5"}, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "No progress" not in done.stderr


def test_restarts_run_the_code_again_after_a_failure_and_after_a_stall(tmp_path: Path) -> None:
    """A failure that is not the code's own deterministic error is restarted (SMC_ATTEMPT counts), and
    so is a stall (its stacks logged first), until an attempt succeeds."""
    base = make_job_dir(
        tmp_path / "job",
        entry_point="train.py",
        code={"train.py": FLAKY},
        hyperparameters={"sagemaker_max_restarts": 2, "sagemaker_stall_timeout": 3},
    )
    done = run_train(base, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert [line for line in done.stdout.splitlines() if line.startswith("attempt")] == [
        "attempt 1",
        "attempt 2",
        "attempt 3",
    ]
    assert "Attempt 3 of at most 3 starts." in done.stderr, done.stderr[-4000:]
    assert "attempt 1 failed on algo-1: attempt 1: algo-1, exit code 1: RuntimeError" in done.stderr
    assert "The stacks of every process of the job, at the stall:" in done.stderr
    assert "attempt 2 failed on algo-1: attempt 2: stalled (no progress on any host for 3 s" in done.stderr
    assert "train.py:7 in wait_for_a_lost_peer" in done.stderr
