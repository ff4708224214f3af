"""Run a real training job in a test: lay out a job directory, run ``train`` on it, read the outcome.

The ``smc_job`` fixture (registered by ``smc_core.testing``) is a :class:`JobRunner`::

    def test_my_adapter_trains(smc_job):
        outcome = smc_job(
            code={"train.py": TRAIN_PY},
            entry_point="train.py",
            hyperparameters={"epochs": 2},
            channels={"train": {"points.csv": "1,2\\n3,4\\n"}},
        )
        outcome.assert_success()
        assert (outcome.model_dir / "model.pt").exists()

Every job runs through the real ``train`` console script in a subprocess of its own (its own process
group, killed whole at the timeout), with the adapter named by the ``smc_adapter`` fixture pinned as
``SMC_ADAPTER``. Nothing is patched: what the test sees is what a platform would see.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import psutil

if TYPE_CHECKING:
    from smc_core.local.netns import NetnsCluster

__all__ = [
    "CLEAN_PREFIXES",
    "ChannelFiles",
    "CodeFiles",
    "JobOutcome",
    "JobRunner",
    "RunningJob",
    "encode_hyperparameters",
    "job_environ",
    "make_job_dir",
    "run_job",
    "train_command",
]

CLEAN_PREFIXES = ("SM_", "SMC_", "SAGEMAKER_")
"""Variables of the test process that a job does not inherit: every job starts from a clean slate."""

DEFAULT_TIMEOUT = 240.0
"""Seconds a job may run before its process group is killed (below pytest-timeout's 300)."""

CodeFiles = Union[Mapping[str, Union[str, bytes]], Path]
"""``{relative path: text or bytes}`` written into ``code/``, or a directory copied there."""

ChannelFiles = Union[Mapping[str, Union[str, bytes]], Path]
"""``{relative path: text or bytes}`` written into a channel's data directory, or a directory copied."""

_UNSET: Any = object()


def encode_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """JSON-encode every value, as the SageMaker Python SDK writes ``hyperparameters.json``."""
    return {key: json.dumps(value) for key, value in hyperparameters.items()}


def _write_files(target: Path, files: Mapping[str, str | bytes] | Path) -> None:
    if isinstance(files, Path):
        if not files.is_dir():
            raise FileNotFoundError(
                f"{files} is not a directory: give a directory to copy, or {{path: text}}"
            )
        shutil.copytree(files, target, dirs_exist_ok=True)
        return
    for rel, content in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        if rel.endswith(".sh"):
            path.chmod(0o755)


def make_job_dir(
    base: Path,
    *,
    hyperparameters: Mapping[str, Any] | None = None,
    raw_hyperparameters: Mapping[str, str] | None = None,
    channels: Mapping[str, Mapping[str, str]] | Sequence[str] = (),
    hosts: Sequence[str] = ("algo-1",),
    current_host: str = "algo-1",
    interface: str = "eth0",
    instance_type: str | None = None,
    resource_config: Mapping[str, Any] | None = None,
    code: CodeFiles | None = None,
    entry_point: str | None = None,
) -> Path:
    """Write a job directory under ``base`` the way the SageMaker SDK lays it out, and return ``base``.

    :param hyperparameters: decoded values, JSON-encoded on the way in (as the SDK does).
    :param raw_hyperparameters: values written as they are (for other clients' bare strings).
    :param channels: channel names, or ``{name: inputdataconfig entry}``; each gets an empty data dir.
    :param hosts: the cluster's host names, in ``resourceconfig.json`` order.
    :param current_host: the host this job directory belongs to.
    :param interface: ``network_interface_name`` in ``resourceconfig.json``.
    :param instance_type: ``current_instance_type`` in ``resourceconfig.json`` (``ml.trn1.32xlarge``);
        None leaves it out, as SDK local mode does.
    :param resource_config: written as is, instead of one built from the four above.
    :param code: files for ``code/`` (``{relative path: text}``) or a directory to copy there.
    :param entry_point: sets ``sagemaker_program``.
    """
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    encoded = encode_hyperparameters(hyperparameters or {})
    if entry_point is not None:
        encoded["sagemaker_program"] = json.dumps(entry_point)
    encoded.update(raw_hyperparameters or {})
    (config / "hyperparameters.json").write_text(json.dumps(encoded))
    if resource_config is None:
        resource_config = {
            "current_host": current_host,
            "hosts": list(hosts),
            "network_interface_name": interface,
        }
        if instance_type is not None:
            resource_config["current_instance_type"] = instance_type
    (config / "resourceconfig.json").write_text(json.dumps(resource_config))
    if not isinstance(channels, Mapping):
        channels = {name: {"TrainingInputMode": "File"} for name in channels}
    (config / "inputdataconfig.json").write_text(json.dumps(dict(channels)))
    for name in channels:
        (base / "input" / "data" / name).mkdir(parents=True, exist_ok=True)
    for sub in ("model", "output/data", "code"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if code is not None:
        _write_files(base / "code", code)
    return base


def train_command() -> list[str]:
    """The ``train`` console script of this environment (beside this interpreter, else on PATH).

    :raises RuntimeError: no ``train`` is installed; the message says what to install.
    """
    beside = Path(sys.executable).with_name("train")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("train")
    if found:
        return [found]
    raise RuntimeError(
        f"No `train` console script beside {sys.executable} or on PATH: install smc-core into the "
        "environment that runs the tests (pip install smc-core, or pip install -e . in its checkout)."
    )


def job_environ(
    job_dir: Path, *, adapter: str | None = None, env: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """The environment ``train`` runs with: this process's, less ``SM_*``/``SMC_*``/``SAGEMAKER_*``,
    plus ``SAGEMAKER_BASE_DIR``, ``SMC_ADAPTER`` (when ``adapter`` is given) and ``env``.

    A value of ``env`` that is None removes that variable.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN_PREFIXES)}
    environ.update(SAGEMAKER_BASE_DIR=str(job_dir), PYTHONUNBUFFERED="1")
    if adapter:
        environ["SMC_ADAPTER"] = adapter
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = str(value)
    return environ


@dataclass(frozen=True)
class JobOutcome:
    """How one ``train`` run ended, on one host.

    ``exit_code`` is None when the job was killed at its timeout (:attr:`timed_out`).
    """

    job_dir: Path
    """The job directory (``SAGEMAKER_BASE_DIR``)."""
    exit_code: int | None
    """``train``'s exit code (see the exit codes in the docs), or None after a timeout."""
    stdout: str
    """What ``train`` and the user's processes printed on stdout (on a cluster host: everything)."""
    stderr: str
    """What they printed on stderr (smc's own log lines go here)."""
    command: tuple[str, ...]
    """The command that ran."""
    duration: float
    """Seconds from start to end."""
    host: str = "algo-1"
    """The host this outcome belongs to."""
    ended: float | None = None
    """When ``train`` ended (``time.monotonic()``), for a job started in the background
    (:class:`RunningJob`): compare it with when a signal was sent."""

    @property
    def logs(self) -> str:
        """stdout then stderr: everything the job printed."""
        return self.stdout + self.stderr

    @property
    def timed_out(self) -> bool:
        """Whether the job was killed at its timeout."""
        return self.exit_code is None

    @property
    def model_dir(self) -> Path:
        """``<job dir>/model``: what the platform would upload as the model."""
        return self.job_dir / "model"

    @property
    def output_dir(self) -> Path:
        """``<job dir>/output``: the failure or success file, ``data/``, ``intermediate/``."""
        return self.job_dir / "output"

    @property
    def failure(self) -> str | None:
        """The text of ``output/failure``, or None when the job wrote none."""
        path = self.output_dir / "failure"
        return path.read_text(errors="replace") if path.exists() else None

    @property
    def succeeded(self) -> bool:
        """Exit code 0 and ``output/success`` written."""
        return self.exit_code == 0 and (self.output_dir / "success").exists()

    def describe(self, tail: int = 4000) -> str:
        """A summary for assertion messages: exit code, failure file, the tail of the logs."""
        state = "timed out (killed)" if self.timed_out else f"exit code {self.exit_code}"
        parts = [f"train on {self.host} ({self.job_dir}): {state} after {self.duration:.1f} s"]
        if self.failure is not None:
            parts.append(f"output/failure:\n{self.failure}")
        parts.append(f"last {tail} characters of the logs:\n{self.logs[-tail:]}")
        return "\n".join(parts)

    def assert_success(self) -> JobOutcome:
        """Fail the test, showing the failure file and the logs, unless the job succeeded."""
        if not self.succeeded:
            raise AssertionError("the job did not succeed: " + self.describe())
        return self

    def assert_failure(self, exit_code: int | None = None, *, reason: str | None = None) -> str:
        """Fail the test unless the job failed (with ``exit_code``, and ``reason`` in the failure file).

        :return: the failure file's text.
        """
        if self.timed_out or self.exit_code == 0:
            raise AssertionError("the job was expected to fail: " + self.describe())
        if exit_code is not None and self.exit_code != exit_code:
            raise AssertionError(f"expected exit code {exit_code}: " + self.describe())
        failure = self.failure
        if failure is None:
            raise AssertionError("the job failed but wrote no output/failure: " + self.describe())
        if reason is not None and reason not in failure:
            raise AssertionError(f"{reason!r} is not in output/failure: " + self.describe())
        if (self.output_dir / "success").exists():
            raise AssertionError("a failed job wrote output/success: " + self.describe())
        return failure


def run_job(
    job_dir: Path,
    *,
    adapter: str | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> JobOutcome:
    """Run ``train`` on ``job_dir`` in a subprocess (its own process group) and return how it ended.

    At the timeout the whole group (the user's processes too) is killed and the outcome's
    ``exit_code`` is None.
    """
    from smc_core.launch.leftovers import own_session_leader

    command = train_command()
    start = time.monotonic()
    with own_session_leader() as register:  # never reaped behind this Popen by a supervisor in this process
        process = subprocess.Popen(
            command,
            env=job_environ(job_dir, adapter=adapter, env=env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        register(process.pid)
    with process:
        code: int | None
        try:
            out, err = process.communicate(timeout=timeout)
            code = process.returncode
        except subprocess.TimeoutExpired:
            _kill_job(process.pid)
            out, err = process.communicate()
            code = None
    return JobOutcome(job_dir, code, out, err, tuple(command), time.monotonic() - start)


class RunningJob:
    """A ``train`` started in the background (:meth:`JobRunner.start`, :meth:`JobRunner.start_on_cluster`):
    signal it as a platform stops a job, then wait for how it ended.

    Its output goes to ``<job dir>.log`` (stdout and stderr together), read back by :meth:`wait`.
    """

    def __init__(
        self, process: subprocess.Popen[Any], job_dir: Path, log: Path, host: str, command: Sequence[str]
    ) -> None:
        self.process = process
        self._command = list(command)
        self.job_dir = job_dir
        self.log = log
        self.host = host
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        """``train``'s process id (the command wrapping it into a host execs it)."""
        return self.process.pid

    def signal(self, signum: int = signal.SIGTERM) -> float:
        """Send ``signum`` to ``train`` alone (not its group: smc passes it on); return when
        (``time.monotonic()``)."""
        sent = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)
        return sent

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> JobOutcome:
        """Wait until ``train`` ends (killing everything it started at ``timeout`` seconds after its
        start); how it ended (``duration`` from the start, ``ended`` when)."""
        code: int | None
        try:
            code = self.process.wait(timeout=max(0.1, self.started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_job(self.process.pid)
            self.process.wait()
            code = None
        ended = time.monotonic()
        output = self.log.read_text(errors="replace") if self.log.exists() else ""
        command = tuple(str(part) for part in self._command)
        return JobOutcome(self.job_dir, code, output, "", command, ended - self.started, self.host, ended)


def _kill_job(pid: int) -> None:
    """SIGKILL ``train`` (pid ``pid``), its group, and every process below it: the user's processes
    run in sessions of their own, which killing ``train``'s group alone would leave running."""
    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        below = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for proc in below:
        with contextlib.suppress(psutil.Error):
            proc.kill()


class JobRunner:
    """The ``smc_job`` fixture: lays out jobs under a temporary directory and runs them.

    :param root: where job directories go (``root/job-0``, ``root/job-1`` ...).
    :param adapter: the adapter pinned as ``SMC_ADAPTER`` (the ``smc_adapter`` fixture), or None.
    """

    def __init__(self, root: Path, adapter: str | None = None) -> None:
        self.root = Path(root)
        self.adapter = adapter
        self._counter = itertools.count()

    def __call__(
        self,
        *,
        env: Mapping[str, str | None] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        adapter: str | None = _UNSET,
        **layout: Any,
    ) -> JobOutcome:
        """Lay out a job (``layout``: the arguments of :meth:`layout`), run it, return its outcome.

        :param env: variables for ``train`` (e.g. ``{"SMC_FUNCTION_MODE": "1"}``); None removes one.
        :param timeout: seconds before the job's process group is killed.
        :param adapter: pins another adapter than the fixture's for this job (None: pin none).
        """
        return self.run(self.layout(**layout), env=env, timeout=timeout, adapter=adapter)

    def layout(
        self,
        *,
        code: CodeFiles | None = None,
        entry_point: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        raw_hyperparameters: Mapping[str, str] | None = None,
        channels: Mapping[str, ChannelFiles] | Sequence[str] = (),
        hosts: Sequence[str] = ("algo-1",),
        current_host: str = "algo-1",
        interface: str = "lo",
        instance_type: str | None = None,
        job_dir: Path | None = None,
    ) -> Path:
        """Write a job directory and return it (run it later with :meth:`run`).

        :param code: files for ``code/`` (``{"train.py": "..."}``) or a directory to copy there.
        :param entry_point: the entry point (``sagemaker_program``), e.g. ``"train.py"``.
        :param hyperparameters: decoded values (``{"epochs": 2, "lr": 0.1}``), JSON-encoded as the SDK does.
        :param raw_hyperparameters: values written into ``hyperparameters.json`` as they are.
        :param channels: channel names, or ``{name: {relative path: text}}`` / ``{name: directory}``
            for the files of each channel (``input/data/<name>/``).
        :param hosts: the cluster's host names; the job runs as ``current_host``.
        :param interface: ``network_interface_name``; ``lo`` by default, since the job runs on this
            machine (the platform's default is ``eth0``).
        :param instance_type: ``current_instance_type`` (``ml.p4d.24xlarge``); None leaves it out.
        :param job_dir: where to lay it out (default: a fresh directory under the runner's root).
        """
        if job_dir is None:
            job_dir = self.root / f"job-{next(self._counter)}"
        names = list(channels)
        make_job_dir(
            job_dir,
            hyperparameters=hyperparameters,
            raw_hyperparameters=raw_hyperparameters,
            channels=names,
            hosts=hosts,
            current_host=current_host,
            interface=interface,
            instance_type=instance_type,
            code=code,
            entry_point=entry_point,
        )
        if isinstance(channels, Mapping):
            for name, files in channels.items():
                _write_files(job_dir / "input" / "data" / name, files)
        return job_dir

    def run(
        self,
        job_dir: Path,
        *,
        env: Mapping[str, str | None] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        adapter: str | None = _UNSET,
    ) -> JobOutcome:
        """Run ``train`` on a laid-out ``job_dir`` (see :func:`run_job`)."""
        pinned = self.adapter if adapter is _UNSET else adapter
        return run_job(job_dir, adapter=pinned, env=env, timeout=timeout)

    def start(
        self,
        *,
        env: Mapping[str, str | None] | None = None,
        adapter: str | None = _UNSET,
        **layout: Any,
    ) -> RunningJob:
        """Lay out a job (``layout``: the arguments of :meth:`layout`) and start ``train`` on it in the
        background; :meth:`RunningJob.wait` says how it ended."""
        job_dir = self.layout(**layout)
        pinned = self.adapter if adapter is _UNSET else adapter
        log = job_dir.with_name(job_dir.name + ".log")
        with log.open("wb") as out:
            process = subprocess.Popen(
                train_command(),
                env=job_environ(job_dir, adapter=pinned, env=env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return RunningJob(process, job_dir, log, layout.get("current_host", "algo-1"), train_command())

    def start_on_cluster(
        self,
        cluster: NetnsCluster,
        *,
        env: Mapping[str, str | None] | None = None,
        adapter: str | None = _UNSET,
        hosts: Sequence[str] | None = None,
        **layout: Any,
    ) -> list[RunningJob]:
        """Lay out one job on every host of a ``netns_hosts`` cluster (as :meth:`on_cluster`) and start
        ``train`` in the background on each host of ``hosts`` (default: all); one :class:`RunningJob`
        per host started."""
        pinned = self.adapter if adapter is _UNSET else adapter
        running = []
        for host in cluster.hosts:
            self.layout(
                hosts=cluster.host_names,
                current_host=host.name,
                interface=cluster.interface,
                job_dir=host.job_dir,
                **layout,
            )
            if hosts is not None and host.name not in hosts:
                continue
            log = host.job_dir.with_name(host.job_dir.name + ".log")
            with log.open("wb") as out:
                process = cluster.popen(
                    host,
                    train_command(),
                    env=job_environ(host.job_dir, adapter=pinned, env=env),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=host.job_dir,
                )
            running.append(RunningJob(process, host.job_dir, log, host.name, train_command()))
        return running

    def on_cluster(
        self,
        cluster: NetnsCluster,
        *,
        env: Mapping[str, str | None] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        adapter: str | None = _UNSET,
        **layout: Any,
    ) -> list[JobOutcome]:
        """Run one job on every host of a ``netns_hosts`` cluster at once; one outcome per host.

        Each host gets its own job directory (``host.job_dir``) laid out with ``layout`` (the
        arguments of :meth:`layout`, less ``hosts``, ``current_host`` and ``interface``, which come
        from the cluster). Each outcome's ``stdout`` holds everything that host printed.
        """
        pinned = self.adapter if adapter is _UNSET else adapter
        for host in cluster.hosts:
            self.layout(
                hosts=cluster.host_names,
                current_host=host.name,
                interface=cluster.interface,
                job_dir=host.job_dir,
                **layout,
            )
        command = train_command()
        start = time.monotonic()
        runs = cluster.run_all(
            lambda host: command,
            env_for=lambda host: job_environ(host.job_dir, adapter=pinned, env=env),
            timeout=timeout,
        )
        duration = time.monotonic() - start
        return [
            JobOutcome(host.job_dir, run.returncode, run.output, "", tuple(command), duration, host.name)
            for host, run in zip(cluster.hosts, runs, strict=True)
        ]
