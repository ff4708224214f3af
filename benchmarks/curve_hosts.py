"""Curve 1 of issue 28: what a distributed job pays in smc as hosts are added (2, 4, 8, 16, 32).

Every host is a Linux network namespace of the project's rig (:class:`NetnsCluster`), running a full
``train`` (or, for the baselines, the framework's own launcher) as a real process. One run of one
*style* on N hosts gives three figures:

* **launch**: from the last host's start (the harness's clock just before it spawns that host's
  command) to every rank's user code running (the script's first line, ``time.time()``); also
  *ready*: to every rank past its first collective (a barrier, or MultiWorkerMirroredStrategy's
  first all-reduce).
* **failure** (smc's styles): after that barrier the last rank raises (it writes ``time.time()``
  first); from that moment to every host's ``train`` exited.
* **the master's cost**: a sampler reads the master's process tree every 0.1 s: peak resident set
  (``VmHWM``) and CPU seconds of each process, by kind (smc's ``train``, its sshd, torchrun's agent
  with smc's additions, mpirun and its ssh clients, the user's ranks), and the sockets smc's own
  processes hold open.

Styles: ``torchrun`` (torchrun directly on every host: the framework's own rendezvous, the
baseline), ``smc-torchrun`` (smc-pytorch), ``smc-mpi`` (the core's MPI: mpirun over ssh, 1 rank a
host; mpirun's own share is the time from its process starting on the master to every rank
running), ``tf`` (MultiWorkerMirroredStrategy with ``TF_CONFIG`` written by hand: the baseline)
and ``smc-tf`` (smc-tensorflow; needs ``.venv-tensorflow``, ``make adapters``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TF_BIN = REPO / ".venv-tensorflow" / "bin"
INTERFACE = "net0"
SCRIPT = "bench_host.py"

STYLES = ("torchrun", "smc-torchrun", "smc-mpi", "tf", "smc-tf", "smc-plain", "ref-plain")
OWN_KINDS = ("train", "sshd", "rank-wrapper")
"""The runner's own processes (smc's, or the reference's ``train``)."""
FAILING = ("smc-torchrun", "smc-mpi", "smc-tf")
"""The styles whose last rank raises (a plain job has no peers to end: each host runs alone)."""
BASELINE = {"smc-torchrun": "torchrun", "smc-tf": "tf"}
SWITCHES = {
    "smc-torchrun": "sagemaker_torch_distributed_enabled",
    "smc-mpi": "sagemaker_mpi_enabled",
    "smc-tf": "sagemaker_multi_worker_mirrored_strategy_enabled",
}
FIRST_GUESS_MIB = {
    "torchrun": 700, "smc-torchrun": 750, "smc-mpi": 200, "tf": 900, "smc-tf": 950, "smc-plain": 80,
    "ref-plain": 120,
}  # fmt: skip
"""Resident memory a host needs, before one was measured (to decide whether N hosts fit)."""
RESERVE_MIB = 3072
"""Memory left to the machine's other users: a size that would leave less is not run."""

HOST_SCRIPT = r"""
import time; first = time.time()
import json, os, sys
out, style = os.environ["BENCH_OUT"], os.environ["BENCH_STYLE"]
host = os.environ.get("SM_CURRENT_HOST") or os.environ.get("BENCH_HOST")
if style in ("torchrun", "smc-torchrun"):
    import torch.distributed as dist
    dist.init_process_group("gloo")
    rank, world, barrier = dist.get_rank(), dist.get_world_size(), dist.barrier
elif style in ("smc-plain", "ref-plain"):  # no distribution: every host runs the script alone
    rank = int(host.rsplit("-", 1)[1]) - 1
    world, barrier = len(json.loads(os.environ["SM_HOSTS"])), lambda: None
elif style == "smc-mpi":
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, world, barrier = comm.Get_rank(), comm.Get_size(), comm.Barrier
else:
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rank = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    world = strategy.num_replicas_in_sync
    def barrier():
        strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
barrier()
record = {"first": first, "ready": time.time(), "rank": rank, "world": world, "host": host}
with open(os.path.join(out, f"rank-{rank}.json.tmp"), "w") as f:
    json.dump(record, f)
os.replace(os.path.join(out, f"rank-{rank}.json.tmp"), os.path.join(out, f"rank-{rank}.json"))
if os.environ.get("BENCH_FAIL") == "1" and rank == world - 1:
    with open(os.path.join(out, "died-at"), "w") as f:
        f.write(repr(time.time()))
    raise ValueError(f"boom on rank {rank} on {host}")
barrier()  # the others wait here for the one that died
time.sleep(float(os.environ.get("BENCH_HOLD", "1")))
"""


# --- the master's process tree ---------------------------------------------------------------------


def _kind(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    base = os.path.basename(cmdline[0]) if cmdline else ""
    # The framework's launchers first: their command lines name the user's script too.
    if base in ("mpirun", "prterun", "orterun", "mpiexec", "orted", "prted", "ssh"):
        return "mpirun"
    if "sshd" in text:
        return "sshd"
    if "smc_pytorch.launcher" in text or "torch.distributed.run" in text:
        return "launcher"
    if "smc_core.mpi.rank" in text:
        return "rank-wrapper"  # smc's, one a rank: passes its lines on and reports its failure
    if SCRIPT in text:
        return "user"
    return "other"


def _start_time(pid: int) -> float:
    """When ``pid`` started, on ``time.time()``'s clock to a clock tick (psutil's ``create_time()``
    counts from the boot time in whole seconds: up to a second off, 0.61 s early on this machine)."""
    from scale import _start_time as start_time

    return start_time(pid)


def _proc_status(pid: int) -> dict[str, str]:
    status = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return status


def _sockets(pid: int) -> int:
    count = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    count += 1
    return count


class TreeSampler(threading.Thread):
    """Samples one host's process tree (rooted at ``pid``) until stopped."""

    def __init__(self, pid: int, root_kind: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="bench-sampler")
        self.pid, self.root_kind, self.interval = pid, root_kind, interval
        self.stop_event = threading.Event()
        self.peak_kib: dict[int, int] = {}
        self.cpu_s: dict[int, float] = {}
        self.kinds: dict[int, str] = {}
        self.started: dict[int, float] = {}
        self.last_seen: dict[int, float] = {}
        self.max_sockets: dict[str, int] = {}

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop_event.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            sockets: dict[str, int] = {}
            for proc in procs:
                try:
                    if proc.pid not in self.kinds or self.kinds[proc.pid] == "other":
                        self.kinds[proc.pid] = (
                            self.root_kind if proc.pid == self.pid else _kind(proc.cmdline())
                        )
                        self.started[proc.pid] = _start_time(proc.pid)
                    times = proc.cpu_times()
                    self.cpu_s[proc.pid] = times.user + times.system
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        self.last_seen[proc.pid] = time.time()
                except (psutil.Error, OSError, ValueError, IndexError):
                    continue
                hwm = _proc_status(proc.pid).get("VmHWM", "0 kB").split()[0]
                self.peak_kib[proc.pid] = max(self.peak_kib.get(proc.pid, 0), int(hwm or 0))
                kind = self.kinds[proc.pid]
                sockets[kind] = sockets.get(kind, 0) + _sockets(proc.pid)
            for kind, n in sockets.items():
                self.max_sockets[kind] = max(self.max_sockets.get(kind, 0), n)
            self.stop_event.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        """Per kind: summed peak RSS (MiB), summed CPU seconds, processes, most sockets at once,
        and the earliest start time (for ``mpirun`` and ``launcher``)."""
        by: dict[str, dict[str, Any]] = {}
        for pid, kind in self.kinds.items():
            entry = by.setdefault(kind, {"rss_mib": 0.0, "cpu_s": 0.0, "processes": 0, "sockets": 0})
            entry["rss_mib"] += self.peak_kib.get(pid, 0) / 1024
            entry["cpu_s"] += self.cpu_s.get(pid, 0.0)
            entry["processes"] += 1
            entry["started"] = min(entry.get("started", float("inf")), self.started.get(pid, float("inf")))
            entry["last_seen"] = max(entry.get("last_seen", 0.0), self.last_seen.get(pid, 0.0))
        for kind, n in self.max_sockets.items():
            by.setdefault(kind, {"rss_mib": 0.0, "cpu_s": 0.0, "processes": 0})["sockets"] = n
        return by


# --- one run -----------------------------------------------------------------------------------------


@dataclass
class HostsRun:
    """One run of one style on N hosts."""

    style: str
    hosts: int
    launch_s: float | None = None
    ready_s: float | None = None
    failure_s: float | None = None
    framework_start_s: float | None = None
    """From the last host's start to the framework's launcher starting on the master (smc-mpi).
    ``master[kind]["gone_after_death_s"]``: when a kind of process (``mpirun``, ``launcher``) was last
    seen running on the master, from the failing rank's death (the framework's share of a failure)."""
    exit_codes: list[int | None] = field(default_factory=list)
    master: dict[str, Any] = field(default_factory=dict)
    worker: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    wall_s: float | None = None


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_", "BENCH_"))}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _command(style: str, host_index: int, names: list[str], base: Path) -> tuple[list[str], dict[str, str]]:
    """The command one host runs, and its environment (the ``BENCH_*`` variables added by the caller)."""
    host = names[host_index]
    if style == "torchrun":
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", str(len(names)),
            "--node-rank", str(host_index), "--nproc-per-node", "1", "--master-addr", names[0],
            "--master-port", "29500", str(base / "code" / SCRIPT),
        ]  # fmt: skip
        return cmd, _clean_env(GLOO_SOCKET_IFNAME=INTERFACE, BENCH_HOST=host)
    if style == "tf":
        tf_config = {
            "cluster": {"worker": [f"{name}:8890" for name in names]},
            "task": {"type": "worker", "index": host_index},
        }
        cmd = [str(TF_BIN / "python"), str(base / "code" / SCRIPT)]
        return cmd, _clean_env(TF_CONFIG=json.dumps(tf_config), BENCH_HOST=host, TF_CPP_MIN_LOG_LEVEL="2")
    job_dir = base / host
    if style == "ref-plain":
        import envs

        reference = envs.ensure_reference("small")
        path = f"{reference.path / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return [str(reference.train)], _clean_env(SAGEMAKER_BASE_DIR=str(job_dir), PATH=path)
    train = str((TF_BIN if style == "smc-tf" else BIN) / "train")
    env = _clean_env(SAGEMAKER_BASE_DIR=str(job_dir), SMC_HOST_WAIT_TIMEOUT="300")
    if style == "smc-torchrun":
        env["SMC_ADAPTER"] = "pytorch"
        env["SMC_PYTORCH_RENDEZVOUS_TIMEOUT"] = "600"
    elif style in ("smc-mpi", "smc-plain"):  # the core alone
        env.update(SMC_DISABLE_PLUGINS="pytorch", SMC_MPI_WAIT_TIMEOUT="300")
    else:
        env.update(SMC_ADAPTER="tensorflow", SMC_TF_PEER_WAIT_TIMEOUT="300", TF_CPP_MIN_LOG_LEVEL="2")
    return [train], env


def style_unavailable(style: str) -> str | None:
    """Why ``style`` cannot run here, or None."""
    if style in ("tf", "smc-tf") and not (TF_BIN / "train").exists():
        return f"TensorFlow's environment {TF_BIN.parent} is missing (`make adapters` builds it)"
    if style == "smc-mpi" and not shutil.which("mpirun"):
        return "Open MPI's mpirun is not installed"
    return None


def hosts_once(
    work: Path, style: str, count: int, *, fail: bool, timeout: float | None = None, keep: bool = False
) -> HostsRun:
    """Run ``style`` on ``count`` network-namespace hosts once (see the module docstring)."""
    from smc_core.testing import make_job_dir
    from smc_core.testing.netns import NetnsCluster

    timeout = timeout or 90 + 20 * count
    base = work / f"hosts-{style}-{count}"
    shutil.rmtree(base, ignore_errors=True)
    out = base / "out"
    out.mkdir(parents=True)
    run = HostsRun(style, count)
    code = base / "code"
    code.mkdir()
    (code / SCRIPT).write_text(HOST_SCRIPT)
    bench_env = {"BENCH_OUT": str(out), "BENCH_STYLE": style, "BENCH_FAIL": "1" if fail else "0"}
    with NetnsCluster(count, base, interface=INTERFACE) as cluster:
        names = cluster.host_names
        if style.startswith(("smc-", "ref-")):
            for host in cluster.hosts:
                hyperparameters: dict[str, object] = {SWITCHES[style]: True} if style in SWITCHES else {}
                if style == "smc-mpi":
                    hyperparameters["sagemaker_mpi_num_of_processes_per_host"] = 1
                    if os.environ.get("BENCH_MPI_OPTIONS"):  # exploring Open MPI's own settings
                        hyperparameters["sagemaker_mpi_custom_mpi_options"] = os.environ["BENCH_MPI_OPTIONS"]
                make_job_dir(
                    host.job_dir,
                    hyperparameters=hyperparameters,
                    resource_config=host.resource_config(names),
                    code={SCRIPT: HOST_SCRIPT},
                    entry_point=SCRIPT,
                )
        procs: list[tuple[Any, subprocess.Popen[bytes], Any]] = []
        starts: list[float] = []
        ended: dict[str, float] = {}
        samplers: list[TreeSampler] = []
        began = time.time()
        for index, host in enumerate(cluster.hosts):
            cmd, env = _command(style, index, names, base)
            env.update(bench_env)
            log = (base / f"{host.name}.log").open("wb")
            starts.append(time.time())
            proc = cluster.popen(host, cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=host.job_dir)
            procs.append((host, proc, log))
            if index in (0, count - 1) and not (index and count == 1):
                root_kind = {"torchrun": "launcher", "tf": "user"}.get(style, "train")
                sampler = TreeSampler(proc.pid, root_kind)
                sampler.start()
                samplers.append(sampler)

        def wait(name: str, proc: subprocess.Popen[bytes]) -> None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
                ended[name] = time.time()

        threads = [threading.Thread(target=wait, args=(h.name, p)) for h, p, _ in procs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for sampler in samplers:
            sampler.stop_event.set()
            sampler.join()
        for _, _, log in procs:
            log.close()
        run.wall_s = time.time() - began
        run.exit_codes = [p.returncode for _, p, _ in procs]
        run.master = samplers[0].summary()
        run.worker = samplers[-1].summary() if len(samplers) > 1 else {}
        last_start = max(starts)
        records = []
        for rank in range(count):
            with contextlib.suppress(OSError, ValueError):
                records.append(json.loads((out / f"rank-{rank}.json").read_text()))
        if len(records) < count:
            run.problem = (
                f"{count - len(records)} of {count} ranks never got past their first barrier; see {base}"
            )
        else:
            run.launch_s = max(r["first"] for r in records) - last_start
            run.ready_s = max(r["ready"] for r in records) - last_start
        framework = run.master.get("mpirun", {}).get("started")
        if style == "smc-mpi" and framework and framework != float("inf"):
            run.framework_start_s = framework - last_start
        if len(ended) < count:
            still = [h.name for h, _, _ in procs if h.name not in ended]
            run.problem = run.problem or f"{', '.join(still[:4])} still ran after {timeout:.0f} s; see {base}"
        elif fail:
            died = out / "died-at"
            if died.exists():
                died_at = float(died.read_text())
                run.failure_s = max(ended.values()) - died_at
                # The framework's launcher on the master: how long after the death it was last seen.
                for tree in (run.master, run.worker):  # the worker tree is the failing rank's host
                    for kind in ("mpirun", "launcher", "user"):
                        seen = tree.get(kind, {}).get("last_seen")
                        if seen:
                            tree[kind]["gone_after_death_s"] = seen - died_at
            else:
                run.problem = run.problem or f"the last rank never raised; see {base}"
        expected = 1 if fail else 0
        wrong = any(code != expected for code in run.exit_codes) and (not fail or 0 in run.exit_codes)
        if not run.problem and wrong:
            run.problem = f"exit codes {run.exit_codes}, expected {expected} on every host; see {base}"
    if not run.problem and not keep:
        shutil.rmtree(base, ignore_errors=True)
    return run


def mem_available_mib() -> float:
    """``MemAvailable`` of this machine, MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def host_footprint_mib(run: HostsRun) -> float:
    """The resident memory one host's whole tree took at its peak (the last host's, all kinds)."""
    tree = run.worker or run.master
    return sum(float(v.get("rss_mib", 0)) for v in tree.values())


def hosts_curve(
    work: Path,
    sizes: list[int],
    styles: list[str],
    runs: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every style at every size, ``runs`` times, interleaved (style by style within a round).

    Returns ``{"runs": [HostsRun as dict], "skipped": {"style@N": reason}}``. A size is skipped for a
    style when the memory it would take (the last measured per-host footprint times N, with a
    margin) would leave less than :data:`RESERVE_MIB` available.
    """
    result: dict[str, Any] = {"runs": [], "skipped": {}}
    footprint = dict(FIRST_GUESS_MIB)
    styles = [s for s in styles if not _note_unavailable(s, result, log)]
    for count in sizes:
        for round_index in range(runs):
            for style in styles:
                need = footprint[style] * count * 1.15
                available = mem_available_mib()
                if available - need < RESERVE_MIB:
                    reason = (
                        f"needs about {need / 1024:.1f} GiB ({footprint[style]:.0f} MiB a host measured at "
                        f"the previous size), {available / 1024:.1f} GiB available, "
                        f"{RESERVE_MIB / 1024:.0f} GiB kept for the machine's other users"
                    )
                    result["skipped"][f"{style}@{count}"] = reason
                    log(f"  hosts {style:<13} {count:>2} hosts: skipped: {reason}")
                    continue
                fail = style in FAILING
                run = hosts_once(work, style, count, fail=fail)
                if run.worker or run.master:
                    footprint[style] = max(footprint[style] * 0.5, host_footprint_mib(run))
                result["runs"].append({**asdict(run), "round": round_index, "load": os.getloadavg()[0]})
                smc_rss = sum(run.master.get(k, {}).get("rss_mib", 0) for k in OWN_KINDS)
                log(
                    f"  hosts {style:<13} {count:>2} hosts: launch {_s(run.launch_s)}, "
                    f"ready {_s(run.ready_s)}, failure {_s(run.failure_s)}, "
                    f"master smc RSS {smc_rss:.0f} MiB, "
                    f"host {host_footprint_mib(run):.0f} MiB, wall {_s(run.wall_s)} {run.problem or ''}"
                )
    return result


def _note_unavailable(style: str, result: dict[str, Any], log: Callable[[str], None]) -> bool:
    reason = style_unavailable(style)
    if reason:
        result["skipped"][style] = reason
        log(f"  hosts {style}: skipped: {reason}")
    return reason is not None


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"
