"""Where jobs get big: logs at full speed, failures felt in seconds, peers found without delay.

These run smc only (the reference toolkit has no PyTorch launcher of its own to compare), in the
harness's own environment, which must have smc-core, smc-pytorch and torch installed (``make setup``):

* :func:`logs_once`: 3M lines printed by a script, run directly, through ``smc local``, and through
  torchrun with 2 processes (directly and through smc); the output file is checked line by line.
* :func:`failure_once`: one rank of a 2-process torchrun job raises; the time from its death (the
  rank writes ``time.time()`` just before raising) to the exit of every host's ``train``. On one host,
  and on two hosts in network namespaces (root and ``ip`` needed).
* :func:`peers_once`: two hosts in network namespaces, where ``algo-2`` becomes resolvable on
  ``algo-1`` only 5 s after the job starts; the time from that moment to ``algo-1`` launching
  torchrun (the launcher process's start time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from smc_core.testing import make_job_dir

BIN = Path(sys.executable).parent
TRAIN = str(BIN / "train")
SMC = str(BIN / "smc")

LOG_SCRIPT = """\
import os, sys
rank = os.environ.get("RANK", "0")
world = int(os.environ.get("WORLD_SIZE", "1"))
lines = int(os.environ["SMC_BENCH_LINES"]) // world
write = sys.stdout.write
for i in range(lines):
    write(f"r{rank} line {i} of the training log: loss=0.{i % 9973:04d} step={i} lr=0.001\\n")
"""

FAIL_SCRIPT = """\
import os, sys, time
import torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
dist.barrier()
if rank == int(os.environ.get("SMC_BENCH_FAIL_RANK", "1")):
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "died-at"), "w") as f:
        f.write(repr(time.time()))
    raise ValueError(f"boom on rank {rank}")
dist.barrier()  # the other ranks wait here for the one that died
time.sleep(600)
"""

LAUNCH_SCRIPT = """\
import time
print("launched", time.time(), flush=True)
"""


def check_log(path: Path, lines: int, ranks: int, prefixed: bool) -> str | None:
    """None when ``path`` holds every line of every rank, whole and in order (other lines ignored)."""
    head = b""
    counts = [0] * ranks
    with path.open("rb") as f:
        for raw in f:
            line = raw
            if prefixed:
                marker = line.find(b"]: r")
                if marker < 0:
                    continue
                head, line = line[: marker + 3], line[marker + 3 :]
                if b" rank " not in head:
                    return f"a line without a rank prefix: {raw[:120]!r}"
            if not line.startswith(b"r") or b" line " not in line[:8]:
                continue
            rank = int(line[1 : line.index(b" ")])
            if prefixed and not head.endswith(f"rank {rank}]: ".encode()):
                return f"rank {rank}'s line carries another rank's prefix: {raw[:120]!r}"
            if not line.endswith(b"\n"):
                return f"a line cut short: {raw[:120]!r}"
            expect = f"r{rank} line {counts[rank]} of".encode()
            if not line.startswith(expect):
                return f"rank {rank}: expected line {counts[rank]}, got {line[:60]!r}"
            counts[rank] += 1
    if counts != [lines // ranks] * ranks:
        return f"lines per rank {counts}, expected {lines // ranks} each"
    return None


@dataclass
class LogRun:
    """One run of the log benchmark."""

    seconds: float
    problem: str | None


def _log_dir(work: Path) -> Path:
    code = work / "logs-code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "spam.py").write_text(LOG_SCRIPT)
    return code


def logs_once(work: Path, how: str, lines: int, out_dir: Path) -> LogRun:
    """Print ``lines`` lines ``how``: ``direct``, ``smc`` (``smc local``), ``torchrun`` (2 processes,
    rank prefixes by torchrun's ``--tee``), or ``smc-torchrun`` (``smc local`` with the PyTorch adapter,
    2 processes). Output goes to a file in ``out_dir``, checked afterwards."""
    code = _log_dir(work)
    out = out_dir / f"log-{how}.txt"
    env = {**os.environ, "SMC_BENCH_LINES": str(lines), "PYTHONUNBUFFERED": "0"}
    port = str(_free_port())
    if how == "direct":
        cmd = [sys.executable, str(code / "spam.py")]
    elif how == "smc":
        cmd = [SMC, "local", str(code), "--entry-point", "spam.py", "--clean"]
    elif how == "torchrun":
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", port,
            "--tee", "3", "--log-dir", str(work / "torchrun-logs"), str(code / "spam.py"),
        ]  # fmt: skip
        env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] = "[algo-1 rank ${rank}]: "
    elif how == "smc-torchrun":
        cmd = [
            SMC, "local", str(code), "--entry-point", "spam.py", "--adapter", "pytorch", "--clean",
            "-p", "sagemaker_torch_distributed_enabled=true",
            "--env", "SMC_PYTORCH_PROCESSES_PER_HOST=2", "--env", f"SMC_PYTORCH_MASTER_PORT={port}",
            "--env", f"SMC_BENCH_LINES={lines}",
        ]  # fmt: skip
    else:
        raise ValueError(how)
    shutil.rmtree(work / "torchrun-logs", ignore_errors=True)
    run_dir = work / "logs-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as sink:
        started = time.perf_counter()
        done = subprocess.run(cmd, stdout=sink, stderr=subprocess.DEVNULL, env=env, cwd=run_dir, check=False)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        return LogRun(seconds, f"exit code {done.returncode}: {' '.join(cmd)}")
    ranks = 2 if "torchrun" in how else 1
    problem = check_log(out, lines, ranks, prefixed="torchrun" in how)
    out.unlink()
    return LogRun(seconds, problem)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- failures ----------------------------------------------------------------------------------------


def _torch_job(base: Path, script: str, hosts: list[str] | None, current: str | None) -> None:
    resource = None
    if hosts:
        resource = {
            "current_host": current,
            "hosts": hosts,
            "network_interface_name": "net0",
            "current_group_name": "homogeneousCluster",
            "instance_groups": [
                {"instance_group_name": "homogeneousCluster", "instance_type": "ml.c5.xlarge", "hosts": hosts}
            ],
        }
    kwargs = {"resource_config": resource} if resource else {}
    make_job_dir(
        base,
        hyperparameters={"sagemaker_torch_distributed_enabled": True},
        code={"train.py": script},
        entry_point="train.py",
        **kwargs,
    )


def _train_env(base: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env.update(SAGEMAKER_BASE_DIR=str(base), SMC_ADAPTER="pytorch", PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class FailureRun:
    """One failure run: seconds from the rank's death to the last host's exit, and the exit codes."""

    seconds: float | None
    exit_codes: list[int | None]
    problem: str | None = None


def failure_once_one_host(work: Path, timeout: float = 120) -> FailureRun:
    """A 2-process torchrun job on one host; rank 1 raises after the first barrier."""
    base = work / "failure-one-host"
    shutil.rmtree(base, ignore_errors=True)
    _torch_job(base, FAIL_SCRIPT, None, None)
    env = _train_env(base, SMC_PYTORCH_PROCESSES_PER_HOST="2", SMC_PYTORCH_MASTER_PORT=str(_free_port()))
    log = (work / "failure-one-host.log").open("wb")
    proc = subprocess.Popen([TRAIN], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        return FailureRun(None, [None], f"train still ran after {timeout:.0f} s")
    ended = time.time()
    log.close()
    died = base / "model" / "died-at"
    if not died.exists():
        return FailureRun(None, [code], f"the rank never died; see {log.name}")
    return FailureRun(ended - float(died.read_text()), [code])


def failure_once_two_hosts(work: Path, timeout: float = 120) -> FailureRun:
    """Two hosts (network namespaces), one process each; rank 1 (on algo-2) raises."""
    from smc_core.local.netns import NetnsCluster

    base = work / "failure-two-hosts"
    shutil.rmtree(base, ignore_errors=True)
    with NetnsCluster(2, base, interface="net0") as cluster:
        for host in cluster.hosts:
            _torch_job(host.job_dir, FAIL_SCRIPT, cluster.host_names, host.name)
        ended: dict[str, float] = {}
        procs = []
        for host in cluster.hosts:
            log = (base / f"{host.name}.log").open("wb")
            proc = cluster.popen(
                host, [TRAIN], env=_train_env(host.job_dir, SMC_HOST_WAIT_TIMEOUT="60"),
                stdout=log, stderr=subprocess.STDOUT, cwd=host.job_dir,
            )  # fmt: skip
            procs.append((host, proc, log))

        def wait(name: str, proc: subprocess.Popen[bytes]) -> None:
            try:
                proc.wait(timeout=timeout)
                ended[name] = time.time()
            except subprocess.TimeoutExpired:
                pass

        threads = [threading.Thread(target=wait, args=(h.name, p)) for h, p, _ in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _, _, log in procs:
            log.close()
        codes = [p.returncode for _, p, _ in procs]
        died = cluster.hosts[1].job_dir / "model" / "died-at"
        if len(ended) < 2:
            return FailureRun(None, codes, f"a host still ran after {timeout:.0f} s; see {base}")
        if not died.exists():
            return FailureRun(None, codes, f"the rank never died; see {base}")
        return FailureRun(max(ended.values()) - float(died.read_text()), codes)


# --- peers -------------------------------------------------------------------------------------------


def peers_once(work: Path, late: float = 5.0, timeout: float = 120) -> FailureRun:
    """Two hosts; ``algo-2``'s name resolves on ``algo-1`` only ``late`` seconds after the start.

    Returns the seconds from the moment it resolves to ``algo-1``'s launcher process starting (a
    process's start time is known to a clock tick, 10 ms).
    """
    import psutil

    from smc_core.local.netns import NETNS_ETC, NetnsCluster

    base = work / "peers"
    shutil.rmtree(base, ignore_errors=True)
    with NetnsCluster(2, base, interface="net0") as cluster:
        for host in cluster.hosts:
            _torch_job(host.job_dir, LAUNCH_SCRIPT, cluster.host_names, host.name)
        first = cluster.hosts[0]
        hosts_file = NETNS_ETC / first.namespace / "hosts"
        full = hosts_file.read_text()
        hosts_file.write_text("".join(line + "\n" for line in full.splitlines() if "algo-2" not in line))
        procs = []
        for host in cluster.hosts:
            log = (base / f"{host.name}.log").open("wb")
            env = _train_env(host.job_dir, SMC_HOST_WAIT_TIMEOUT="60")
            proc = cluster.popen(
                host, [TRAIN], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=host.job_dir
            )
            procs.append((proc, log))
        time.sleep(late)
        resolvable = time.time()  # taken first: the name resolves from the write on
        with hosts_file.open("r+") as f:  # in place: the namespace's /etc/hosts is a bind mount of it
            f.write(full)
            f.truncate()
        launched = None
        leader = psutil.Process(procs[0][0].pid)
        deadline = time.monotonic() + timeout
        while launched is None and time.monotonic() < deadline:
            try:
                for child in leader.children(recursive=True):
                    try:
                        if "smc_pytorch.launcher" in " ".join(child.cmdline()):
                            launched = _start_time(child.pid)
                            break
                    except psutil.Error:
                        continue
            except psutil.Error:
                break
            time.sleep(0.01)
        codes = []
        for proc, log in procs:
            try:
                codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
            log.close()
        if launched is None:
            return FailureRun(None, codes, f"algo-1 never launched torchrun; see {base}")
        if codes != [0, 0]:
            return FailureRun(launched - resolvable, codes, f"exit codes {codes}; see {base}")
        return FailureRun(launched - resolvable, codes)


def _start_time(pid: int) -> float:
    """When process ``pid`` started, on ``time.time()``'s clock, to a clock tick.

    Not psutil's ``create_time()``: it adds the start to the boot time of ``/proc/stat``, which is whole
    seconds, so its figures are off by a constant of up to a second (after a reboot here, 0.5 s early).
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def netns_available() -> bool:
    """Whether network-namespace hosts can be made here (root, ``ip``)."""
    from smc_core.local.netns import netns_unavailable_reason

    return netns_unavailable_reason() is None
