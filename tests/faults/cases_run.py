"""Catalogue cases: installing, waiting for hosts, and running the user's code."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.kit import Kit, Outcome, closed_port_url, pid_gone, silent_server, tmpfs, wait_for

OK = "print('trained')\n"
NO_INDEX = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_RETRIES": "0"}


def _ready(base: Path, name: str = "ready") -> bool:
    return (base / "code" / name).exists()


# --- install (exit 5) -------------------------------------------------------------------------------
def requirement_not_found(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "open('ran', 'w').close()\n", "requirements.txt": "smc-no-such-dist==9.9\n"})
    (kit.tmp / "wheels").mkdir()
    done = kit.train(base, env={**NO_INDEX, "PIP_FIND_LINKS": str(kit.tmp / "wheels")})
    assert not (base / "code" / "ran").exists()
    return done


def index_refuses_connections(kit: Kit) -> Outcome:
    index = closed_port_url() + "/simple"
    base = kit.job({"train.py": OK, "requirements.txt": "smc-no-such-dist==9.9\n"})
    done = kit.train(base, env={"PIP_INDEX_URL": index, "PIP_RETRIES": "0", "PIP_TIMEOUT": "3"})
    assert "could not be reached" in done.first_line and index in done.first_line
    return done


def index_hangs(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK, "requirements.txt": "smc-no-such-dist==9.9\n"})
    with silent_server() as index:
        env = {"PIP_INDEX_URL": index + "/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "60"}
        done = kit.train(base, env={**env, "SMC_INSTALL_TIMEOUT": "5"})
    assert done.seconds < 40, done.seconds
    return done


def sigterm_during_install(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "open('ran', 'w').close()\n", "requirements.txt": "smc-no-such-dist==9.9\n"})
    with silent_server() as index:
        env = {"PIP_INDEX_URL": index + "/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "60"}
        started = time.monotonic()
        done = kit.signal_when(base, lambda: time.monotonic() > started + 4, env=env)
    assert not (base / "code" / "ran").exists()
    assert "check the names and versions" not in done.failure
    return done


# --- hosts (exit 6) ---------------------------------------------------------------------------------
def peer_never_resolves(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, hosts=("algo-1", "smc-no-such-host-2"))
    return kit.train(
        base, env={"SMC_DISABLE_PLUGINS": "", "SMC_ADAPTER": "pytorch", "SMC_HOST_WAIT_TIMEOUT": "2"}
    )


def sigterm_while_waiting_for_hosts(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "open('ran', 'w').close()\n"}, hosts=("algo-1", "smc-no-such-host-2"))
    started = time.monotonic()
    done = kit.signal_when(
        base,
        lambda: time.monotonic() > started + 5,
        env={"SMC_DISABLE_PLUGINS": "", "SMC_ADAPTER": "pytorch", "SMC_HOST_WAIT_TIMEOUT": "120"},
    )
    assert not (base / "code" / "ran").exists() and done.seconds < 30
    return done


# --- the user's code ----------------------------------------------------------------------------------
def user_exits_2(kit: Kit) -> Outcome:
    return kit.train(
        kit.job({"train.py": "import sys\nprint('ValueError: bad flag', file=sys.stderr)\nsys.exit(2)\n"})
    )


def user_exits_4(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": "import sys\nsys.exit(4)\n"}))


def user_exits_5(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": "import sys\nsys.exit(5)\n"}))


def user_exits_7(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": "import sys\nsys.exit(7)\n"}))


def user_raises(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": "raise ValueError('loss is NaN')\n"}))


def user_exit_0_wrote_failure(kit: Kit) -> Outcome:
    script = (
        "import os\nopen(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write('my reason\\n')\n"
    )
    base = kit.job({"train.py": script})
    done = kit.train(base)
    assert not (base / "output" / "success").exists()
    assert "exited 0 but wrote" in done.stderr
    return done


def user_kills_itself(kit: Kit) -> Outcome:
    done = kit.train(kit.job({"train.py": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"}))
    assert "out-of-memory killer (the cgroup" not in done.first_line
    return done


def user_segfaults(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": "import ctypes\nctypes.string_at(0)\n"}))


def sigterm_user_exits(kit: Kit) -> Outcome:
    script = "import pathlib, time\npathlib.Path('ready').touch()\ntime.sleep(60)\n"
    base = kit.job({"train.py": script})
    return kit.signal_when(base, lambda: _ready(base))


def sigint_user_exits(kit: Kit) -> Outcome:
    script = "import pathlib, time\npathlib.Path('ready').touch()\ntime.sleep(60)\n"
    base = kit.job({"train.py": script})
    return kit.signal_when(base, lambda: _ready(base), sig=signal.SIGINT)


def sigterm_user_ignores(kit: Kit) -> Outcome:
    script = (
        "import pathlib, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pathlib.Path('ready').touch()\ntime.sleep(60)\n"
    )
    base = kit.job({"train.py": script})
    done = kit.signal_when(base, lambda: _ready(base), env={"SMC_GRACE_PERIOD": "1"})
    assert "killed by SIGKILL, sent by smc when the grace period" in done.failure, done.failure
    assert "SMC_GRACE_PERIOD" in done.failure
    return done


def sigterm_user_checkpoints(kit: Kit) -> Outcome:
    script = (
        "import pathlib, signal, sys, time\n"
        "def stop(signum, frame):\n    pathlib.Path('checkpoint').touch()\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\npathlib.Path('ready').touch()\ntime.sleep(60)\n"
    )
    base = kit.job({"train.py": script})
    done = kit.signal_when(base, lambda: _ready(base), env={"SMC_GRACE_PERIOD": "10"})
    assert (base / "code" / "checkpoint").exists()
    assert (
        "it exited 0 (it handled the stop itself" in done.failure
        and not (base / "output" / "success").exists()
    )
    return done


# --- hosts lost or stopped while the user's code runs (exit 6, 128 + S) -----------------------------------
LOOP = """
import os, signal, sys, time
host = os.environ["SM_CURRENT_HOST"]
def checkpoint(signum, frame):
    open(os.path.join(os.environ["SM_MODEL_DIR"], "checkpoint"), "w").write(host)
    sys.exit(0)
signal.signal(signal.SIGTERM, checkpoint)
for step in range(600):
    print(f"{host} step {step}", flush=True)
    time.sleep(0.1)
"""


def _on_two_hosts(kit: Kit, fault: str, reporting: int) -> Outcome:
    """A plain script on two network-namespace hosts, ``fault`` made while it runs (see
    :mod:`smc_core.testing.hostfaults`, which checks both hosts); the outcome of host ``reporting``."""
    from smc_core.testing import JobRunner
    from smc_core.testing.hostfaults import HostFaultTrial
    from smc_core.testing.netns import NetnsCluster, netns_unavailable_reason

    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with NetnsCluster(2, kit.tmp / "hosts") as cluster:
        trial = HostFaultTrial.start(
            JobRunner(kit.tmp / "jobs"),
            cluster,
            fault,
            code={"train.py": LOOP},
            entry_point="train.py",
            env={"SMC_DISABLE_PLUGINS": "pytorch"},
        )
        trial.run()
        outcome = trial.outcomes[reporting]
    return Outcome(outcome.exit_code or 0, outcome.stdout, outcome.stderr, outcome.job_dir, outcome.duration)


def host_killed(kit: Kit) -> Outcome:
    return _on_two_hosts(kit, "host-killed", 0)


def host_network_cut(kit: Kit) -> Outcome:
    return _on_two_hosts(kit, "network-cut", 0)


def peer_stopped(kit: Kit) -> Outcome:
    done = _on_two_hosts(kit, "sigterm-master", 1)
    assert (done.base / "model" / "checkpoint").read_text() == "algo-2" if done.base else False
    return done


def orphan_in_new_session(kit: Kit) -> Outcome:
    script = (
        "import signal, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time\\n"
        'signal.signal(signal.SIGTERM, signal.SIG_IGN)\\nprint("child up", flush=True)\\ntime.sleep(300)\'],'
        " start_new_session=True)\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
    )
    base = kit.job({"train.py": script})
    done = kit.train(base, env={"SMC_LEFTOVER_GRACE": "2"})
    pid = int((base / "code" / "child.pid").read_text())
    assert pid_gone(pid), f"the child {pid} outlived the job"
    assert f"Stopping pid {pid}" in done.stderr
    assert done.seconds < 15, done.seconds
    return done


def orphan_parent_lives_3s(kit: Kit) -> Outcome:
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],\n"
        "                         start_new_session=True)\n"
        "open('child.pid', 'w').write(str(child.pid))\ntime.sleep(3)\n"
    )
    base = kit.job({"train.py": script})
    done = kit.train(base)
    assert pid_gone(int((base / "code" / "child.pid").read_text()))
    return done


def grandchild_in_group(kit: Kit) -> Outcome:
    script = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "open('child.pid', 'w').write(str(child.pid))\nsys.exit(3)\n"
    )
    base = kit.job({"train.py": script})
    done = kit.train(base)
    assert pid_gone(int((base / "code" / "child.pid").read_text()))
    return done


def double_fork_daemon(kit: Kit) -> Outcome:
    script = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        open('daemon.pid', 'w').write(str(os.getpid()))\n        time.sleep(300)\n    os._exit(0)\n"
        "time.sleep(0.5)\n"
    )
    base = kit.job({"train.py": script})
    done = kit.train(base)
    assert wait_for(lambda: (base / "code" / "daemon.pid").exists(), 5)
    assert pid_gone(int((base / "code" / "daemon.pid").read_text()))
    return done


def helpers_exit_as_orphans(kit: Kit) -> Outcome:
    script = Path(__file__).parent.parent / "fixtures" / "scripts" / "leaves_zombies.py"
    base = kit.job({"train.py": script.read_text()})
    done = kit.train(base, env={"SMC_LEFTOVER_GRACE": "2"})
    found = dict(line.split("=") for line in (base / "model" / "zombies.txt").read_text().split())
    assert found["zombies"] == "0", done.stdout  # 20 orphans exited under smc: each was reaped
    assert f"Stopping pid {found['daemon']}" in done.stderr and pid_gone(int(found["daemon"]))
    return done


def disk_full_user_exits_7(kit: Kit) -> Outcome:
    with tmpfs(kit.tmp / "small", size="2m") as mount:
        base = kit.job(
            {
                "train.py": (
                    "import os, sys\n"
                    "try:\n    with open(os.path.join(os.environ['SM_MODEL_DIR'], 'huge'), 'wb') as f:\n"
                    "        while True:\n            f.write(b'x' * 65536)\n"
                    "except OSError as e:\n    print(f'OSError: {e}', file=sys.stderr)\nsys.exit(7)\n"
                )
            },
            name="small/job",
        )
        assert mount.exists()
        done = kit.train(base)
        assert "is full" in done.first_line
        assert not list((base / "output").glob(".failure.*"))
        text = done.failure
    assert text
    return done


def disk_full_user_exits_0(kit: Kit) -> Outcome:
    with tmpfs(kit.tmp / "small0", size="2m"):
        base = kit.job(
            {
                "train.py": (
                    "import os\n"
                    "try:\n    with open(os.path.join(os.environ['SM_MODEL_DIR'], 'huge'), 'wb') as f:\n"
                    "        while True:\n            f.write(b'x' * 65536)\nexcept OSError:\n    pass\n"
                )
            },
            name="small0/job",
        )
        done = kit.train(base)
        assert (base / "output" / "success").exists()
    return done


def flood_of_output(kit: Kit) -> Outcome:
    script = (
        "import sys\nfor i in range(200000):\n    print('line', i)\n"
        "sys.stderr.write('RuntimeError: flood\\n')\nsys.exit(9)\n"
    )
    return kit.train(kit.job({"train.py": script}))


def invalid_utf8_output(kit: Kit) -> Outcome:
    script = (
        "import sys\nsys.stderr.buffer.write(b'\\xff\\xfe bad bytes\\nKeyError: \\xc3\\x28\\n')\n"
        "sys.exit(11)\n"
    )
    return kit.train(kit.job({"train.py": script}))


def entry_not_executable(kit: Kit) -> Outcome:
    return kit.train(kit.job({"run.bin": "no shebang\n"}, entry="run.bin"))


def success(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK})
    done = kit.train(base)
    assert (base / "output" / "success").exists() and not (base / "output" / ".smc-failure-reserve").exists()
    return done


_ = os


def out_of_memory(kit: Kit) -> Outcome:
    """The kernel's OOM killer, in a memory cgroup of 96 MB made for the case (root, cgroup v1 or v2)."""
    import pytest

    cgroup = _memory_cgroup()
    if cgroup is None:
        pytest.skip("needs root and a writable memory cgroup (v1 or v2) to make the OOM killer act")
    child = cgroup / f"smc-oom-{os.getpid()}-{time.monotonic_ns()}"
    try:
        child.mkdir()
        limit = "memory.max" if (child / "memory.max").exists() else "memory.limit_in_bytes"
        (child / limit).write_text(str(96 * 1024 * 1024))
        script = "x = bytearray(600 * 1024 * 1024)\nprint(len(x))\n"
        base = kit.job({"train.py": script})
        done = kit.train(base, cgroup=child)
    finally:
        with contextlib.suppress(OSError):
            child.rmdir()
    return done


def _memory_cgroup() -> Path | None:
    if os.geteuid() != 0:
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for root in (
            (Path("/sys/fs/cgroup/memory") / path.lstrip("/")) if controllers == "memory" else None,
            (Path("/sys/fs/cgroup") / path.lstrip("/")) if controllers == "" else None,
        ):
            if root is not None and root.is_dir() and os.access(root, os.W_OK):
                probe = root / "memory.max" if controllers == "" else root / "memory.limit_in_bytes"
                if probe.exists() or controllers == "memory":
                    return root
    return None
