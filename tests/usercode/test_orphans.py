"""Orphans the user's code leaves: smc reaps those that exit (no zombie piles up under it, as a
subreaper or a container's PID 1) and stops a daemon that escaped, naming it; never reaps its own
children. Real processes throughout; ``tests/images`` runs the same script with ``train`` as PID 1."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from smc_core.launch.leftovers import own_session_leader, reap_adopted
from smc_core.testing import make_job_dir

from ..helpers import run_train

SCRIPTS = Path(__file__).parent.parent / "fixtures" / "scripts"


def test_orphans_that_exit_are_reaped_and_an_escaped_daemon_is_stopped(tmp_path: Path) -> None:
    base = make_job_dir(tmp_path / "job", code=SCRIPTS, entry_point="leaves_zombies.py")
    done = run_train(base, env={"SMC_LEFTOVER_GRACE": "2"}, timeout=60)
    assert done.returncode == 0, done.stderr
    facts = dict(line.split("=") for line in (base / "model" / "zombies.txt").read_text().split())
    assert facts["zombies"] == "0", done.stdout  # 20 helpers exited under smc: each was reaped
    daemon = int(facts["daemon"])
    assert f"Stopping pid {daemon} (" in done.stderr and "escaped-daemon" in done.stderr
    assert not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
    assert (base / "output" / "success").exists()


def test_reaping_leaves_smc_own_children_to_their_popen() -> None:
    # Exited children of this process: one in its session, one leading a session it registered, and
    # one adopted-like (a session leader it did not register). Only the last is reaped.
    in_session = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with own_session_leader() as register:
        own_leader = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"], start_new_session=True)
        register(own_leader.pid)
    stranger = subprocess.Popen([sys.executable, "-c", "raise SystemExit(5)"], start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [psutil.Process(p.pid).status() for p in (in_session, own_leader, stranger)]
        if all(s == psutil.STATUS_ZOMBIE for s in states):
            break
        time.sleep(0.05)
    reaped = reap_adopted()
    assert stranger.pid in reaped
    assert in_session.pid not in reaped and own_leader.pid not in reaped
    assert in_session.wait(10) == 3 and own_leader.wait(10) == 4  # their exit codes are intact
