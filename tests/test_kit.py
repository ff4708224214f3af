"""The test kit itself: ``smc_job`` lays out, runs and reports real jobs (``smc_core.testing``)."""

from __future__ import annotations

import pytest

PROBE = """
import json, os, sys
with open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "points.csv")) as f:
    points = f.read()
with open(os.path.join(os.environ["SM_MODEL_DIR"], "seen.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "points": points, "kit": os.environ.get("KIT"),
               "adapter": os.environ.get("SMC_ADAPTER"),
               "interface": os.environ["SM_NETWORK_INTERFACE_NAME"]}, f)
print("probe done")
"""


@pytest.fixture
def smc_adapter():
    return "pytorch"  # installed beside smc-core in this repository's environment (make setup)


def test_a_job_is_laid_out_and_run_clean(smc_job, monkeypatch):
    import json

    monkeypatch.setenv("SMC_GRACE_PERIOD", "not a number")  # the test process's SMC_* never leak in
    outcome = smc_job(
        code={"train.py": PROBE},
        entry_point="train.py",
        hyperparameters={"epochs": 2, "name": "x y"},
        channels={"train": {"points.csv": "1,2\n"}},
        env={"KIT": "yes"},
    )
    outcome.assert_success()
    seen = json.loads((outcome.model_dir / "seen.json").read_text())
    assert seen == {
        "argv": ["--epochs", "2", "--name", "x y"],
        "points": "1,2\n",
        "kit": "yes",
        "adapter": "pytorch",
        "interface": "lo",
    }
    assert "probe done" in outcome.stdout and outcome.failure is None and outcome.exit_code == 0


def test_a_failing_job_is_reported_with_its_failure_file(smc_job):
    outcome = smc_job(
        code={"train.py": "import sys\nprint('bad things', file=sys.stderr)\nsys.exit(3)\n"},
        entry_point="train.py",
    )
    assert outcome.exit_code == 3 and not outcome.succeeded
    assert "bad things" in outcome.assert_failure(3, reason="bad things")
    with pytest.raises(AssertionError, match=r"(?s)exit code 3.*output/failure:.*bad things"):
        outcome.assert_success()
    with pytest.raises(AssertionError, match="expected exit code 4"):
        outcome.assert_failure(4)


def test_a_job_past_its_timeout_is_killed(smc_job):
    outcome = smc_job(code={"train.py": "import time\ntime.sleep(120)\n"}, entry_point="train.py", timeout=5)
    assert outcome.timed_out and outcome.exit_code is None
    assert outcome.duration < 60
    with pytest.raises(AssertionError, match="timed out"):
        outcome.assert_success()


def test_a_bad_setting_given_to_the_job_fails_it_with_exit_2(smc_job):
    outcome = smc_job(code={"train.py": "pass\n"}, entry_point="train.py", env={"SMC_GRACE_PERIOD": "soon"})
    outcome.assert_failure(2, reason="SMC_GRACE_PERIOD")


def test_the_kit_does_not_import_the_command_line():
    import subprocess
    import sys

    probe = "import sys, smc_core.testing; print([m for m in sys.modules if m.startswith('smc_core.cli')])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- what a framework team's first adapter tripped on (issue 30) -----------------------------------

# A plugin that waits for its hosts and tells the script where the master listens, as an adapter does.
MEETING_PLUGIN = """
from smc_core import hookimpl, rendezvous_host, wait_for_hosts

@hookimpl
def prepare_training(training_env, user_code):
    addresses = wait_for_hosts(training_env)
    return {"MEET_ADDR": rendezvous_host(training_env), "MEET_RESOLVED": addresses[training_env.current_host]}
"""

MEET_PY = """
import os, socket
address = (os.environ["MEET_ADDR"], int(os.environ["MEET_PORT"]))
with socket.create_server(address) as server, socket.create_connection(address, timeout=5):
    server.accept()
print("met on", os.environ["MEET_ADDR"], os.environ["MEET_RESOLVED"])
"""


def test_a_one_host_job_meets_itself_where_its_host_name_does_not_resolve(smc_job, tmp_path):
    from smc_core import resolve_host
    from smc_core.testing import free_port

    (tmp_path / "meeting.py").write_text(MEETING_PLUGIN)
    outcome = smc_job(
        code={"train.py": MEET_PY},
        entry_point="train.py",
        env={
            "SMC_PLUGINS": "meeting",
            "PYTHONPATH": str(tmp_path),
            "MEET_PORT": str(free_port()),
            "SMC_HOST_WAIT_TIMEOUT": "60",
        },
        timeout=50,  # a wait for algo-1 to resolve would outlast this
    )
    outcome.assert_success()
    address = resolve_host("algo-1") or "127.0.0.1"
    assert f"met on {'algo-1' if resolve_host('algo-1') else '127.0.0.1'} {address}" in outcome.stdout
    assert "Waiting for hosts to resolve" not in outcome.logs


def test_the_folders_the_contract_promises_are_made_when_missing(smc_job):
    import shutil

    script = (
        "import os\n"
        "for var in ('SM_MODEL_DIR', 'SM_OUTPUT_DATA_DIR', 'SM_OUTPUT_INTERMEDIATE_DIR'):\n"
        "    open(os.path.join(os.environ[var], 'written'), 'w').close()\n"
    )
    job = smc_job.layout(code={"train.py": script}, entry_point="train.py")
    shutil.rmtree(job / "model")
    shutil.rmtree(job / "output")
    outcome = smc_job.run(job)
    outcome.assert_success()
    for folder in ("model", "output/data", "output/intermediate"):
        assert (job / folder / "written").exists(), folder
    assert (job / "checkpoints").is_dir()


def test_free_port_gives_a_port_one_can_listen_on():
    import socket

    from smc_core.testing import free_port

    ports = {free_port() for _ in range(3)}
    for port in ports:
        with socket.create_server(("127.0.0.1", port)):
            pass
    assert all(1024 <= port < 65536 for port in ports)


def test_the_kit_registers_the_netns_mark(pytestconfig):
    from smc_core.testing import NETNS_MARK

    assert NETNS_MARK in pytestconfig.getini("markers")


OWNING_PLUGIN = """
from smc_core import hookimpl

@hookimpl
def claim_hyperparameters():
    return ["git_repo"]

@hookimpl
def prepare_training(training_env, user_code):
    return {"OWNED_REPO": training_env.plugin_hyperparameters["git_repo"]}
"""

STRICT_PY = """
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
args = parser.parse_args()  # an option it does not know: exit 2
print("epochs", args.epochs, "repo for the plugin", os.environ["OWNED_REPO"], "SM_HPS", os.environ["SM_HPS"])
"""


def test_a_hyperparameter_a_plugin_claims_never_reaches_an_argparse_script(smc_job, tmp_path):
    (tmp_path / "owning.py").write_text(OWNING_PLUGIN)
    outcome = smc_job(
        code={"train.py": STRICT_PY},
        entry_point="train.py",
        hyperparameters={"epochs": 3, "git_repo": "https://git.example/r.git"},
        env={"SMC_PLUGINS": "owning", "PYTHONPATH": str(tmp_path)},
    )
    outcome.assert_success()
    assert 'epochs 3 repo for the plugin https://git.example/r.git SM_HPS {"epochs":3}' in outcome.stdout
