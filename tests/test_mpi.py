"""MPI jobs on one host (``sagemaker_mpi_enabled``): mpirun without ssh, the entry kinds, failures,
options; and the plain functions behind them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smc_core.base.settings import parse_settings
from smc_core.cluster.report import RankFailure
from smc_core.errors import ConfigError
from smc_core.host.plugins import get_plugin_manager, hook_implementations
from smc_core.job.environment import create_environment
from smc_core.mpi.launch import MpiJob, mpirun_command, open_mpi_prefix, parse_custom_options
from smc_core.mpi.plugin import SETTINGS, mpi_job
from smc_core.testing import make_job_dir
from smc_core.testing.mpi import ALLREDUCE_SCRIPT, GATHER_SCRIPT, mpi_leftovers, mpi_unavailable_reason

TRAIN = str(Path(sys.executable).with_name("train"))
MPI_SETTINGS = parse_settings({}, SETTINGS)  # the core's and the MPI plugin's, as the runner parses them
UNAVAILABLE = mpi_unavailable_reason()
needs_mpi = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")
ONE_HOST = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"}


def train(base: Path, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    # The core alone: an installed adapter would add its own variables and waits.
    env.update(SAGEMAKER_BASE_DIR=str(base), SMC_DISABLE_PLUGINS="pytorch", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` in launcher.sh
    return subprocess.run([TRAIN], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def mpi_job_dir(base: Path, code: dict[str, str], entry: str, **hyperparameters: object) -> Path:
    return make_job_dir(
        base,
        hyperparameters={"sagemaker_mpi_enabled": True, **hyperparameters},
        resource_config=ONE_HOST,
        code=code,
        entry_point=entry,
    )


@needs_mpi
def test_one_host_two_processes_gather(tmp_path):
    base = mpi_job_dir(
        tmp_path, {"gather.py": GATHER_SCRIPT}, "gather.py", sagemaker_mpi_num_of_processes_per_host=2
    )
    run = train(base)
    assert run.returncode == 0, run.stderr
    assert json.loads((base / "model" / "result.json").read_text()) == [
        {"rank": 0, "size": 2},
        {"rank": 1, "size": 2},
    ]
    assert (base / "output" / "success").exists()
    # Whole lines, each prefixed with its host and rank; no ssh on one host.
    assert "[algo-1 rank 0] rank 0 of 2 gathered\n" in run.stdout
    assert "[algo-1 rank 1] rank 1 of 2 gathered\n" in run.stdout
    assert "--host localhost:2 -np 2" in run.stderr
    assert "plm_rsh_agent" not in run.stderr and "sshd" not in run.stderr
    assert mpi_leftovers("gather.py") == []


@needs_mpi
def test_shell_entry_point_under_mpirun(tmp_path):
    launcher = '#!/usr/bin/env bash\nset -ex\npython mpi_allreduce.py "$@"\n'
    base = mpi_job_dir(
        tmp_path,
        {"launcher.sh": launcher, "mpi_allreduce.py": ALLREDUCE_SCRIPT},
        "launcher.sh",
        sagemaker_mpi_num_of_processes_per_host=2,
        sleep=0,
    )
    run = train(base)
    assert run.returncode == 0, run.stderr
    for rank in (0, 1):
        record = json.loads((base / "model" / f"rank-{rank}.json").read_text())
        assert record["sum"] == 3 and record["size"] == 2
        assert record["env"]["RANK"] == str(rank) and record["env"]["LOCAL_WORLD_SIZE"] == "2"
        assert record["env"]["SM_CURRENT_HOST"] == "algo-1"
    assert "[algo-1 rank 1] + python mpi_allreduce.py --sleep 0" in run.stderr


@needs_mpi
def test_a_failing_rank_names_itself_in_the_failure_file(tmp_path):
    base = mpi_job_dir(
        tmp_path,
        {"mpi_allreduce.py": ALLREDUCE_SCRIPT},
        "mpi_allreduce.py",
        sagemaker_mpi_num_processes=2,
        sagemaker_mpi_num_of_processes_per_host=2,
        **{"fail-host": "algo-1"},
    )
    run = train(base, timeout=120)
    assert run.returncode != 0, run.stderr
    assert time.time() - float((base / "model" / "failed-at").read_text()) < 30
    failure = (base / "output" / "failure").read_text()[:1024]  # what the platform shows
    assert "rank 0 (local rank 0) on host algo-1 failed with exit code 1" in failure, failure
    assert "ValueError: boom on rank 0 on algo-1" in failure
    assert "Traceback (most recent call last)" in failure
    assert mpi_leftovers("mpi_allreduce.py") == []


@needs_mpi
@pytest.mark.parametrize(
    ("options", "named"),
    [("-np 8", "'-np'"), ("oops -x A=1", "'oops'"), ("-x 'A=1", "cannot be split")],
)
def test_bad_custom_options_fail_with_exit_2(tmp_path, options, named):
    base = mpi_job_dir(
        tmp_path, {"gather.py": GATHER_SCRIPT}, "gather.py", sagemaker_mpi_custom_mpi_options=options
    )
    run = train(base)
    assert run.returncode == 2, run.stderr
    failure = (base / "output" / "failure").read_text()
    assert "sagemaker_mpi_custom_mpi_options" in failure and named in failure, failure


@needs_mpi
def test_custom_options_reach_mpirun(tmp_path):
    base = mpi_job_dir(
        tmp_path,
        {"mpi_allreduce.py": ALLREDUCE_SCRIPT},
        "mpi_allreduce.py",
        sagemaker_mpi_custom_mpi_options="-x MY_JOB_VARIABLE='two words'",
    )
    run = train(base)
    assert run.returncode == 0, run.stderr
    record = json.loads((base / "model" / "rank-0.json").read_text())
    assert record["env"]["MY_JOB_VARIABLE"] == "two words"


def test_the_mpi_launch_is_asked_before_the_default_one():
    pm = get_plugin_manager(load_entrypoints=False, environ={})
    order = hook_implementations(pm, "invoke_train")
    assert order.index("smc_core.mpi.plugin") < order.index("smc_core.defaults.invoke")


def test_parse_custom_options():
    assert parse_custom_options("") == ()
    assert parse_custom_options("-x NCCL_DEBUG=WARN --mca btl_tcp_links 2") == (
        "-x",
        "NCCL_DEBUG=WARN",
        "--mca",
        "btl_tcp_links",
        "2",
    )
    with pytest.raises(ConfigError, match="'--host'"):
        parse_custom_options("--host algo-9")


def test_mpirun_command_follows_the_reference(tmp_path):
    environ = {"PATH": "/usr/bin", "SM_HPS": "{}", "HOSTNAME": "algo-1", "OMPI_MCA_x": "1"}
    job = MpiJob(
        hosts=("algo-1", "algo-2"),
        current_host="algo-1",
        interface="lo",
        processes_per_host=2,
        num_processes=4,
        custom_options=("-x", "A=1"),
        ssh_port=22,
        wait_timeout=10,
    )
    command = mpirun_command(job, ["python", "train.py", "--lr", "0.1"], environ, mpirun="/usr/bin/mpirun")
    text = " ".join(command)
    assert command[:5] == ["/usr/bin/mpirun", "--host", "algo-1:2,algo-2:2", "-np", "4"]
    for part in (
        "-mca btl_tcp_if_include lo -mca oob_tcp_if_include lo",
        "-mca plm_rsh_no_tree_spawn 1",
        "-mca orte_abort_on_non_zero_status 1",
        "-x NCCL_SOCKET_IFNAME=lo",
        "-x PATH",
        "-x SM_HPS",
        "-x A=1 ",
    ):
        assert part in text
    assert "HOSTNAME" not in text and "OMPI_MCA_x" not in text
    assert command[-4:] == ["python", "train.py", "--lr", "0.1"]
    assert command[-7:-4] == [sys.executable, "-m", "smc_core.mpi.rank"]


def test_open_mpi_outside_the_system_path_gets_a_prefix(tmp_path):
    assert open_mpi_prefix("/usr/bin/mpirun") is None
    venv_mpirun = tmp_path / "venv" / "bin" / "mpirun"
    venv_mpirun.parent.mkdir(parents=True)
    venv_mpirun.write_text("")
    assert open_mpi_prefix(str(venv_mpirun)) == str(tmp_path / "venv")


def test_job_counts_from_hyperparameters(tmp_path):
    base = make_job_dir(
        tmp_path,
        hyperparameters={"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 3},
        hosts=("algo-1", "algo-2"),
    )
    job = mpi_job(create_environment(base, {}, settings=MPI_SETTINGS))
    assert (job.hosts, job.processes_per_host, job.num_processes, job.master) == (
        ("algo-1", "algo-2"),
        3,
        6,
        "algo-1",
    )
    base = make_job_dir(tmp_path, hyperparameters={"sagemaker_mpi_num_processes": "zero"})
    with pytest.raises(ConfigError, match="sagemaker_mpi_num_processes"):
        mpi_job(create_environment(base, {}, settings=MPI_SETTINGS))


def test_the_replaced_silence_setting_is_an_error_naming_its_successor(tmp_path):
    # The job's channel keeps every host alive now (SMC_LIVENESS_TIMEOUT): MPI's own bound is gone, and a
    # job that still sets it is told so rather than silently running with another bound.
    base = make_job_dir(tmp_path, hyperparameters={"sagemaker_mpi_enabled": True})
    environ = {"SMC_MPI_MASTER_SILENCE_TIMEOUT": "20"}
    with pytest.raises(ConfigError) as info:
        mpi_job(create_environment(base, environ, settings=parse_settings(environ, SETTINGS)))
    assert "SMC_MPI_MASTER_SILENCE_TIMEOUT is set, but smc no longer reads it" in info.value.message
    assert "Set SMC_LIVENESS_TIMEOUT instead" in info.value.message


NOISY = """
import sys
from mpi4py import MPI

rank = MPI.COMM_WORLD.Get_rank()
for i in range(200):
    # Each line in three writes, flushed apart: the pieces of the two ranks' lines reach the pipes mixed.
    sys.stdout.write(f"{rank} {i:03d} ")
    sys.stdout.flush()
    sys.stdout.write(str(rank) * 3000)
    sys.stdout.flush()
    sys.stdout.write("\\n")
    sys.stdout.flush()
"""


@needs_mpi
def test_rank_output_arrives_in_whole_prefixed_lines(tmp_path):
    base = mpi_job_dir(tmp_path, {"noisy.py": NOISY}, "noisy.py", sagemaker_mpi_num_of_processes_per_host=2)
    run = train(base)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("[algo-1 rank")]
    assert len(lines) == 400
    for line in lines:
        match = re.fullmatch(r"\[algo-1 rank (\d)\] (\d) \d{3} (\d+)", line)
        assert match, line[:120]
        rank = match.group(1)
        assert match.group(2) == rank and match.group(3) == rank * 3000, line[:120]


def test_the_root_failure_is_the_rank_that_failed_on_its_own(capfd):
    from smc_core.cluster.channel import ChannelMaster, Connection, deliver
    from smc_core.cluster.messages import Output, OutputStream, RankFailed

    master = ChannelMaster("algo-1", (), port=0, address="127.0.0.1").start()
    try:
        assert deliver(master.endpoint, RankFailed(RankFailure("algo-1", 143, rank=0, local_rank=0)))
        # Only a rank mpirun stopped has reported, but rank 1 printed a traceback first: it is the cause.
        stream = Connection.open(master.endpoint)
        stream.send(OutputStream(host="algo-2", rank=1, local_rank=0))
        for line in ("Traceback (most recent call last):", "ValueError: boom"):
            stream.send(Output(fd=2, data=line + "\n", line=line, host="algo-2", rank=1, local_rank=0))
        stream.close()
        master.wait_for_streams(1, timeout=5)
        root = master.root_failure(wait=0)
        assert root is not None and (root.host, root.rank) == ("algo-2", 1)
        assert root.tail.endswith("ValueError: boom")
        assert "failed (it was stopped before" in root.describe("algo-1")
        own = RankFailure("algo-3", 1, "KeyError", rank=2, local_rank=0)
        assert deliver(master.endpoint, RankFailed(own))
        assert master.root_failure(wait=0) == own
    finally:
        master.close()


def test_a_silent_rank_s_output_stream_ends_when_its_connection_closes():
    # The master waits for every rank's output connection to close before its own last lines; a rank
    # that printed nothing was not counted, so every such job waited out the whole bound (5 s after a
    # success, 2 s after a failure): issue 28's failure curve showed it.
    from smc_core.cluster.channel import ChannelMaster
    from smc_core.mpi.rank import _Output

    master = ChannelMaster("algo-1", (), port=0, address="127.0.0.1").start()
    try:
        silent = _Output(master.endpoint, {"rank": 0, "local_rank": 0, "host": "algo-1"})
        silent.close()
        master.wait_for_streams(1, timeout=20)
        assert master.streams_opened == master.streams_ended == 1
    finally:
        master.close()


def test_the_readme_lists_the_mpi_settings():
    from smc_core.base.settings import settings_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(
        r"<!-- MPI settings table:[^\n]*-->\n(.*?)<!-- end of MPI settings table -->", readme, re.S
    )
    assert match and match.group(1) == settings_table(SETTINGS), "regenerate README.md's MPI settings table"


@pytest.mark.parametrize("host", ["algo-1", "algo-2"])
def test_an_image_without_mpi_or_ssh_fails_at_start_naming_what_to_install(tmp_path, host):
    # PATH without Open MPI and OpenSSH (an image that lacks them); the worker's sshd named where none
    # is. Both hosts fail at once, exit 2, before waiting for the other (which never comes).
    two_hosts = {"current_host": host, "hosts": ["algo-1", "algo-2"], "network_interface_name": "lo"}
    base = make_job_dir(
        tmp_path,
        hyperparameters={"sagemaker_mpi_enabled": True},
        resource_config=two_hosts,
        code={"train.py": "print('ran')\n"},
        entry_point="train.py",
    )
    empty = tmp_path / "bin"
    empty.mkdir()
    run = train(base, timeout=60, PATH=str(empty), SMC_MPI_SSHD="/nonexistent/sshd")
    assert run.returncode == 2, run.stderr
    failure = (base / "output" / "failure").read_text()
    if host == "algo-1":
        assert "algo-1 (the master, which runs mpirun) lacks mpirun, ssh, ssh-keygen" in failure
        assert "apt-get install -y openmpi-bin openssh-client " in failure
    else:
        assert "algo-2 (a worker, which serves the job's sshd) lacks sshd" in failure
        assert "apt-get install -y openssh-server " in failure
    assert failure.startswith("ConfigError: sagemaker_mpi_enabled is on")
    assert "ran" not in run.stdout
