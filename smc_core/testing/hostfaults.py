"""Hosts that die, fall silent or are stopped: the faults every multi-host launch style is held to.

On a ``netns_hosts`` cluster of two hosts (the master first), a :class:`HostFaultTrial` starts one job
on both, waits until it trains, makes one fault of :data:`HOST_FAULTS`, and checks how every host
ended:

===================  ====================================  ==========================================
fault                what it does                          every host that lives ends with
===================  ====================================  ==========================================
``host-killed``      SIGKILL to every process of the       exit 6, ``ClusterError: <worker> was lost:
                     worker host (an instance that dies)   its smc died``
``network-cut``      the worker's interface down inside    exit 6: the master ``ClusterError: <worker>
                     its namespace (a partition: silence)  was lost: it fell silent``, the worker
                                                           ``ClusterError: the master <master> was
                                                           lost: it fell silent``
``sigterm-master``   SIGTERM to the master's ``train``     exit 143, ``JobStopped: the job was stopped
                     only                                  by SIGTERM``: on the others ``... on
                                                           <master>``
``sigterm-worker``   SIGTERM to the worker's ``train``     the same, ``on <worker>`` elsewhere
                     only
===================  ====================================  ==========================================

and, for every fault: each host ends within the liveness bound plus the grace period of its
settings (:data:`FAULT_SETTINGS`) plus ``slack`` from the fault, no host writes ``output/success``,
and nothing is left running in any host's namespace. An adapter author runs it against their launch
style with a script that trains in a loop and prints ``<host> step <n>``::

    @pytest.mark.netns
    @pytest.mark.parametrize("fault", HOST_FAULTS)
    def test_a_lost_host_ends_every_host(smc_job, netns_hosts, fault):
        trial = HostFaultTrial.start(smc_job, netns_hosts(2), fault, code={"train.py": LOOP},
                                     entry_point="train.py", hyperparameters={"my_switch": True})
        trial.run()
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smc_core.local.netns import NetnsCluster
from smc_core.testing.jobs import JobOutcome, JobRunner, RunningJob

__all__ = ["FAULT_SETTINGS", "HOST_FAULTS", "HostFaultTrial"]

HOST_FAULTS = ("host-killed", "network-cut", "sigterm-master", "sigterm-worker")
"""The faults, in the order of the table above."""

FAULT_SETTINGS: Mapping[str, str] = {
    "SMC_LIVENESS_TIMEOUT": "3",
    "SMC_PEER_STOP_GRACE": "3",
    "SMC_GRACE_PERIOD": "3",
    "SMC_HOST_WAIT_TIMEOUT": "120",
}
"""Short bounds for a trial: a lost host within 3 s, its processes given 3 s (hosts of a test share a
loaded machine: the heartbeats every 0.5 s still leave six chances)."""


@dataclass
class HostFaultTrial:
    """One job on a two-host cluster, one fault (see the module docstring).

    Attributes:
        fault: one of :data:`HOST_FAULTS`.
        cluster: the cluster (master first).
        jobs: ``train`` on each host, in the cluster's order.
        settings: the job's variables (:data:`FAULT_SETTINGS` and what the test added).
        injected_at: when the fault was made (``time.monotonic()``).
        outcomes: how each host ended, once :meth:`finish` returned.
    """

    fault: str
    cluster: NetnsCluster
    jobs: list[RunningJob]
    settings: Mapping[str, str]
    injected_at: float | None = None
    outcomes: list[JobOutcome] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        smc_job: JobRunner,
        cluster: NetnsCluster,
        fault: str,
        *,
        env: Mapping[str, str | None] | None = None,
        **layout: Any,
    ) -> HostFaultTrial:
        """Lay out the job on every host of ``cluster`` and start ``train`` there (``layout``: the
        arguments of :meth:`JobRunner.layout`; ``env``: more variables, over :data:`FAULT_SETTINGS`)."""
        if fault not in HOST_FAULTS:
            raise ValueError(f"fault is {fault!r}: give one of {', '.join(HOST_FAULTS)}")
        if cluster.count != 2:
            raise ValueError(f"a trial runs on 2 hosts, not {cluster.count}")
        settings = {**FAULT_SETTINGS, **{k: v for k, v in (env or {}).items() if v is not None}}
        jobs = smc_job.start_on_cluster(cluster, env=settings, **layout)
        return cls(fault, cluster, jobs, settings)

    @property
    def bound(self) -> float:
        """Seconds within which every host must end after the fault: the liveness bound plus the
        longer of the two grace periods (a stop's, a lost host's)."""
        grace = max(float(self.settings["SMC_GRACE_PERIOD"]), float(self.settings["SMC_PEER_STOP_GRACE"]))
        return float(self.settings["SMC_LIVENESS_TIMEOUT"]) + grace

    def logs(self) -> str:
        """What every host printed so far."""
        return "".join(job.log.read_text(errors="replace") for job in self.jobs if job.log.exists())

    def wait_until(self, markers: Sequence[str], timeout: float = 180.0) -> None:
        """Wait until every one of ``markers`` is in the hosts' output (the job trains on every host).

        :raises AssertionError: a host ended first, or ``timeout`` passed (with the logs' tails).
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.logs()
            if all(marker in text for marker in markers):
                return
            ended = [job.host for job in self.jobs if job.process.poll() is not None]
            if ended or time.monotonic() > deadline:
                why = f"{', '.join(ended)} ended" if ended else f"{timeout:g} s passed"
                raise AssertionError(
                    f"{why} before the job printed {list(markers)}:\n"
                    + "\n".join(f"--- {job.host}\n{_tail(job)}" for job in self.jobs)
                )
            time.sleep(0.2)

    def inject(self) -> None:
        """Make the fault now."""
        worker = self.cluster.hosts[1]
        self.injected_at = time.monotonic()
        if self.fault == "host-killed":
            self.cluster.kill_host(worker)
        elif self.fault == "network-cut":
            self.cluster.cut_network(worker)
        elif self.fault == "sigterm-master":
            self.jobs[0].signal(signal.SIGTERM)
        else:
            self.jobs[1].signal(signal.SIGTERM)

    def finish(self, timeout: float = 120.0) -> list[JobOutcome]:
        """Wait (``timeout`` seconds at most after the fault) until ``train`` ended on every host."""
        start = self.injected_at or time.monotonic()
        self.outcomes = [job.wait(timeout=start + timeout - job.started) for job in self.jobs]
        return self.outcomes

    def run(self, markers: Sequence[str] | None = None, *, slack: float = 15.0) -> list[JobOutcome]:
        """Wait until the job trains (``markers``, default ``<host> step 3`` for every host), make the
        fault, wait for the end and :meth:`check` it; the outcomes."""
        self.wait_until(markers or [f"{host} step 3" for host in self.cluster.host_names])
        self.inject()
        self.finish()
        self.check(slack=slack)
        return self.outcomes

    def expected(self) -> list[tuple[int, str] | None]:
        """Per host: the exit code and the start of the failure file's first line (None: the host was
        killed with everything on it)."""
        master, worker = self.cluster.host_names
        if self.fault == "host-killed":
            return [(6, f"ClusterError: {worker} was lost: its smc died"), None]
        if self.fault == "network-cut":
            return [
                (6, f"ClusterError: {worker} was lost: it fell silent"),
                (6, f"ClusterError: the master {master} was lost: it fell silent"),
            ]
        stopped = master if self.fault == "sigterm-master" else worker
        here = "JobStopped: the job was stopped by SIGTERM while the user's code ran"
        there = f"JobStopped: the job was stopped by SIGTERM on {stopped} while the user's code ran"
        return [(143, here if host == stopped else there) for host in (master, worker)]

    def check(self, *, slack: float = 15.0) -> None:
        """Check the outcomes against :meth:`expected`, the bound, ``output/success`` and leftovers.

        :param slack: seconds allowed beyond :attr:`bound` for smc's own ending (stopping what was
            left, telling the other hosts): the test's machine is shared.
        :raises AssertionError: naming the host and showing its failure file and logs.
        """
        assert self.outcomes and self.injected_at is not None, "call finish() first"
        for outcome, expected in zip(self.outcomes, self.expected(), strict=True):
            where = f"{self.fault}, {outcome.host}: "
            assert not (outcome.output_dir / "success").exists(), (
                where + "wrote output/success\n" + (outcome.describe())
            )
            if expected is None:
                assert outcome.exit_code != 0, where + outcome.describe()
                continue
            code, first_line = expected
            failure = outcome.failure or ""
            assert outcome.exit_code == code and failure.startswith(first_line), (
                f"{where}expected exit code {code} and a failure file starting {first_line!r}\n"
                + outcome.describe()
            )
            assert failure.split("\n")[1] == f"ExitCode {code}", where + failure
            took = (outcome.ended or 0.0) - self.injected_at
            assert took <= self.bound + slack, (
                f"{where}ended {took:.1f} s after the fault; the bound is {self.bound:g} s "
                f"(+{slack:g} s)\n" + outcome.describe()
            )
        for host in self.cluster.hosts:
            left = _wait_empty(self.cluster, host, 10.0)
            assert not left, f"{self.fault}: left running on {host.name}: {left}"


def _wait_empty(cluster: NetnsCluster, host: Any, timeout: float) -> list[str]:
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in cluster.processes(host):
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {' '.join(proc.cmdline())[:200]}")
            except psutil.Error:
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _tail(job: RunningJob, chars: int = 3000) -> str:
    return job.log.read_text(errors="replace")[-chars:] if job.log.exists() else ""
