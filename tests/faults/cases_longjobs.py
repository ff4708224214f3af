"""Catalogue cases of long jobs (issue 26, docs/long-jobs.md): a stall, a bad stall setting, restarts
that run out, a deterministic error that is never restarted."""

from __future__ import annotations

from tests.faults.kit import Kit, Outcome

SLEEPS = (
    "import time\nprint('step 1', flush=True)\ndef wait_for_data():\n    time.sleep(600)\nwait_for_data()\n"
)
FLAKY = (
    "import os\nprint('attempt', os.environ['SMC_ATTEMPT'], flush=True)\n"
    "raise ConnectionError(f\"peer reset on attempt {os.environ['SMC_ATTEMPT']}\")\n"
)


def stall(kit: Kit) -> Outcome:
    base = kit.job({"train.py": SLEEPS})
    done = kit.train(base, env={"SMC_STALL_TIMEOUT": "3"}, timeout=60)
    assert done.seconds < 3 + 10, f"{done.seconds:.1f} s"
    assert "no progress on any host for 3 s" in done.first_line, done.failure
    assert "train.py:4 in wait_for_data" in done.first_line, done.failure
    assert "The stacks of every process of the job, at the stall:" in done.stderr, done.stderr[-3000:]
    return done


def stall_timeout_not_a_number(kit: Kit) -> Outcome:
    base = kit.job(
        {"train.py": "open('ran', 'w').close()\n"}, hyperparameters={"sagemaker_stall_timeout": "soon"}
    )
    done = kit.train(base)
    assert "'sagemaker_stall_timeout' is \"soon\"" in done.first_line, done.failure
    assert not done.exists("code/ran"), "the code must not run"
    return done


def stall_watch_in_function_mode(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "def train():\n    open('ran', 'w').close()\n"})
    done = kit.train(base, env={"SMC_FUNCTION_MODE": "1", "SMC_STALL_TIMEOUT": "60"})
    assert "SMC_STALL_TIMEOUT asks for stall detection, but the job runs in function mode" in done.first_line
    assert "run the module as a script" in done.first_line, done.failure
    assert not done.exists("code/ran"), "the code must not run"
    return done


def restarts_run_out(kit: Kit) -> Outcome:
    base = kit.job({"train.py": FLAKY}, hyperparameters={"sagemaker_max_restarts": 1})
    done = kit.train(base)
    assert done.stdout.split() == ["attempt", "1", "attempt", "2"], done.stdout
    assert "Attempt 2 of at most 2 starts." in done.stderr, done.stderr[-3000:]
    attempts = next(line for line in done.failure.splitlines() if line.startswith("Attempts (2): "))
    assert "attempt 1: algo-1, exit code 1: ConnectionError: peer reset on attempt 1" in attempts, attempts
    assert "attempt 2: algo-1, exit code 1: ConnectionError: peer reset on attempt 2" in attempts, attempts
    return done


def syntax_error_not_restarted(kit: Kit) -> Outcome:
    base = kit.job(
        {"train.py": "print('attempt', flush=True)\ndef broken(:\n"},
        hyperparameters={"sagemaker_max_restarts": 3},
    )
    done = kit.train(base)
    assert "it is the code's own SyntaxError, which a restart would raise again" in done.stderr, done.stderr
    assert "Attempt 2" not in done.stderr and "Attempts (" not in done.failure, done.failure
    return done
