"""The job's channel: opened by the core for every job, used by every launch style that spans hosts.

The runner opens it right after reading the job (:func:`open_job_channel`) and ends it with the job's
outcome; a launch style or plugin reaches it with :func:`job_channel`:

* on a **multi-host** job, the master host (``training_env.master_hostname``) listens on
  ``SMC_CHANNEL_PORT`` as soon as its own name resolves, and every other host joins in the
  background, so that neither waits for the other while it fetches code and installs requirements.
  A launch style that needs the other end waits for it, bounded by ``SMC_HOST_WAIT_TIMEOUT``:
  :meth:`JobChannel.master` on the master host, :meth:`JobChannel.link` on the others;
* on a **one-host** job nothing is opened until a launch style asks :meth:`JobChannel.master` (MPI's
  ranks report there): it then listens on ``127.0.0.1``, on any free port;
* at the end the master tells every host the outcome (:meth:`ChannelMaster.finish`) and the others
  say goodbye.

Liveness, and one outcome for the whole job
-------------------------------------------
The channel is also how every host knows, in bounded time, that the job cannot go on, whatever the
launch style (a plain script, torchrun, TensorFlow, MPI):

* **a lost host**: the channel keeps every joined host alive with heartbeats (``SMC_LIVENESS_TIMEOUT``,
  see :mod:`smc_core.cluster.channel`). A host whose smc dies is lost at once; one unheard for the bound
  is lost as silent. The master tells every other host (``lost``); each host that learns of a loss stops
  its own processes (:func:`~smc_core.launch.process.halt_processes`, with ``SMC_PEER_STOP_GRACE``),
  starts no other, and fails with :class:`~smc_core.errors.ClusterError` (exit 6) naming the lost host
  and how it was lost, the training code's own failure below it;
* **a stop**: a stop signal smc receives on any host (SIGTERM, SIGINT: the platform stops the job,
  a spot instance is reclaimed) is told to the master (``stop``), which passes it on to every host;
  each delivers the same signal to its own smc, which handles it as if it had received it (passing it
  on to the user's processes with ``SMC_GRACE_PERIOD``, in any phase). The job then ends as stopped on
  every host (:class:`~smc_core.base.stopping.JobStopped`, exit ``128 + signal``), whatever the user's
  code exits with afterwards: a handler that saves a checkpoint and exits 0 keeps its checkpoint, and
  the job is still reported as stopped, never as a success;
* the **first** of the two is the job's outcome (a host lost while the job was stopping does not turn a
  stop into a failure, nor cut the stop's grace period short); :meth:`JobChannel.conclude` applies it
  to what ``invoke_train`` returned.
  A failed result is first checked against the other hosts (:meth:`JobChannel.probe`): a framework
  that failed because a peer went silent (TensorFlow's ``UnavailableError``) is reported as the lost
  host it is, within the liveness bound.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from smc_core.base.log import logger
from smc_core.base.messages import summary_line
from smc_core.base.settings import CHANNEL_PORT, GRACE_PERIOD, HOST_WAIT_TIMEOUT, PEER_STOP_GRACE
from smc_core.base.stopping import JobStopped, add_stop_listener, current_phase, remove_stop_listener
from smc_core.cluster.channel import ChannelLink, ChannelMaster, Peer, heartbeat_interval, join_error
from smc_core.cluster.messages import Hello, HostLost, JobStopping
from smc_core.cluster.network import resolve_host
from smc_core.cluster.report import traceback_tail
from smc_core.cluster.waits import wait_until
from smc_core.errors import ClusterError, SmcError
from smc_core.launch.process import halt_processes, resume_processes
from smc_core.launch.result import TrainingResult
from smc_core.launch.signals import describe_exit_code

if TYPE_CHECKING:
    from smc_core.job.environment import TrainingEnv

__all__ = [
    "OUTCOME_WAIT",
    "JobChannel",
    "LostHost",
    "StopSeen",
    "job_channel",
    "open_job_channel",
    "stop_outcome",
]

T = TypeVar("T")

OUTCOME_WAIT = 5.0
"""Seconds the master waits at the end for every host to acknowledge the job's outcome."""


@dataclass(frozen=True)
class LostHost:
    """A host the job lost (see the module docstring).

    Attributes:
        host: the lost host.
        how: ``"died"`` (its connection ended without a goodbye: its smc was killed, or its host went
            down) or ``"silent"`` (nothing heard from it within ``SMC_LIVENESS_TIMEOUT``).
        detail: the channel's words for it (how long it was silent).
        noticed_by: the host that noticed (this one, or the master, which told the others).
    """

    host: str
    how: str
    detail: str
    noticed_by: str

    def describe(self, current_host: str, master: str) -> str:
        """``algo-2 was lost: it fell silent (...)``: the failure file's first line (after the kind)."""
        name = f"the master {self.host}" if self.host == master else self.host
        if self.how == "silent":
            how = f"it fell silent ({self.detail}: a network partition, a hung NIC or a frozen instance)"
        else:
            how = (
                "its smc died (its connection to the job's channel closed without a goodbye: smc there was "
                "killed, or the host went down)"
            )
        told = f" ({self.noticed_by} noticed and told every host)" if self.noticed_by != current_host else ""
        return f"{name} was lost{told}: {how}"


@dataclass(frozen=True)
class StopSeen:
    """A stop signal received by the smc of ``host`` (this one, or another that told this one)."""

    host: str
    signum: int

    @property
    def name(self) -> str:
        """``SIGTERM``."""
        return signal.Signals(self.signum).name


class JobChannel:
    """The channel of one job, as this host takes part in it (see the module docstring).

    :param training_env: the job; its hosts, master host, supervision policy and ``SMC_CHANNEL_PORT``.
    """

    def __init__(self, training_env: TrainingEnv) -> None:
        self.hosts: tuple[str, ...] = tuple(training_env.hosts)
        self.current_host = training_env.current_host
        self.master_host = training_env.master_hostname
        self.port: int = training_env.settings[CHANNEL_PORT]
        self.host_wait_timeout = training_env.supervision.host_wait_timeout
        self.liveness_timeout = training_env.supervision.liveness_timeout
        self.peer_stop_grace = training_env.supervision.peer_stop_grace
        self.grace_period = training_env.supervision.grace_period
        self._master: ChannelMaster | None = None
        self._link: ChannelLink | None = None
        self._error: ClusterError | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.ended = False
        self._causes: list[LostHost | StopSeen] = []  # appended from signal handlers too: no lock
        self._ruling: BaseException | None = None  # what conclude() raised

    # --- what ended the job, if anything but its code did -----------------------------------------
    @property
    def cause(self) -> LostHost | StopSeen | None:
        """The first of a lost host and a stop: what ends the job on this host, whatever its code did."""
        return self._causes[0] if self._causes else None

    @property
    def lost(self) -> LostHost | None:
        """The first host this job lost, once known."""
        return next((c for c in self._causes if isinstance(c, LostHost)), None)

    @property
    def stopped(self) -> StopSeen | None:
        """The first stop signal of the job (this host's smc received it, or another host's did)."""
        return next((c for c in self._causes if isinstance(c, StopSeen)), None)

    @property
    def is_master(self) -> bool:
        """This host is the master: it listens."""
        return self.current_host == self.master_host

    @property
    def workers(self) -> tuple[str, ...]:
        """Every host but the master."""
        return tuple(h for h in self.hosts if h != self.master_host)

    @property
    def multi_host(self) -> bool:
        """The job has more than one host."""
        return len(self.hosts) > 1

    def open(self) -> JobChannel:
        """Start listening (master) or joining (other hosts) in the background (nothing to open for one
        host), and watch for stop signals."""
        add_stop_listener(self._on_stop_signal)
        if self.multi_host:
            target = self._listen if self.is_master else self._join
            threading.Thread(target=target, daemon=True, name="smc-channel-open").start()
        return self

    # --- the background start -------------------------------------------------------------------
    def _listen(self) -> None:
        address = wait_until(
            lambda: self._stop.is_set() or resolve_host(self.master_host),
            timeout=self.host_wait_timeout,
            waiting_for=f"{self.master_host} to resolve",
            raise_on_timeout=False,
            first_log=self.host_wait_timeout,
        )
        try:
            if not isinstance(address, str):
                raise ClusterError(
                    f"The job's channel cannot open on {self.master_host}: its name does not resolve "
                    f"here within {self.host_wait_timeout:g} s ({HOST_WAIT_TIMEOUT.name})."
                )
            # A loopback address is a host of `smc local` sharing this machine's network: listen there
            # only. Anywhere else, every interface (the name may resolve to a service's address).
            listen_on = address if ipaddress.ip_address(address).is_loopback else None
            master = ChannelMaster(
                self.master_host,
                self.workers,
                port=self.port,
                address=listen_on,
                liveness=self.liveness_timeout,
            )
            master.on(JobStopping, self._stopping_reported)
            master.on(Hello, self._joined)
            master.on_closed(self._peer_closed)
            master.start()
        except ClusterError as error:
            self._fail(error)
            return
        with self._changed:
            self._master = master
            self._changed.notify_all()
        if self._stop.is_set():
            master.close()

    def _join(self) -> None:
        own = resolve_host(self.current_host)
        try:
            link = ChannelLink.connect(
                self.master_host,
                self.port,
                self.current_host,
                timeout=self.host_wait_timeout,
                setting=HOST_WAIT_TIMEOUT.name,
                source=own,
                stop=self._stop,
                quiet=True,
                liveness=self.liveness_timeout,
            )
        except ClusterError as error:
            self._fail(error)
            return
        link.on(JobStopping, self._stopping_reported)
        link.on(HostLost, self._lost_reported)
        link.on_closed(self._master_closed)
        with self._changed:
            self._link = link
            self._changed.notify_all()
        if self._stop.is_set():
            link.close("the job ended")
            return
        if link.closed is not None:  # closed before the handler was there
            self._master_closed(link)
        stop = self.stopped
        if stop is not None and stop.host == self.current_host:  # a stop that came before the link
            link.send(JobStopping(stop.host, stop.name))

    # --- liveness and stops (see the module docstring) ---------------------------------------------
    def _on_stop_signal(self, signum: int) -> None:
        # Called from the signal handler, in the main thread: record, and tell the others from a thread.
        if self.ended or self.stopped is not None:
            return
        self._causes.append(StopSeen(self.current_host, signum))
        if self.multi_host:
            threading.Thread(target=self._tell_stop, daemon=True, name="smc-channel-stop").start()

    def _tell_stop(self) -> None:
        stop = self.stopped
        if stop is None:
            return
        message = JobStopping(stop.host, stop.name)
        with self._changed:
            master, link = self._master, self._link
        if master is not None:
            master.broadcast(message)
        elif link is not None:
            link.send(message)
        logger.warning(
            "%s received %s: telling every host over the job's channel, which stop too.", stop.host, stop.name
        )

    def _stopping_reported(self, sender: Any, message: JobStopping) -> None:
        """Another host's smc received a stop signal (told by it, or by the master)."""
        try:
            signum = int(signal.Signals[message.signal])
        except KeyError:
            signum = int(signal.SIGTERM)
        if self.ended or self.stopped is not None or message.host == self.current_host:
            return
        stop = StopSeen(message.host or "another host", signum)
        self._causes.append(stop)
        logger.warning(
            "%s received %s and told the job's channel: stopping this host (%s) too.",
            stop.host,
            stop.name,
            self.current_host,
        )
        if self._master is not None:  # the master passes it on to every other host
            for host in self._master.joined():
                if host != message.host:
                    self._master.send(host, message)
        self._deliver(signum)

    def _deliver(self, signum: int) -> None:
        """Deliver ``signum`` to this smc's main thread, which handles it as any stop signal it receives
        (in every phase: passed on to the user's processes, or ending a step): a stop is a stop."""
        handler = signal.getsignal(signum)
        if not callable(handler):  # no smc handler here (a test's own process): never the default action
            logger.warning("No handler for %s in this process: the stop is recorded only.", signum)
            return
        main = threading.main_thread()
        if main.ident is not None and main.is_alive():
            signal.pthread_kill(main.ident, signum)

    def _joined(self, peer: Peer | None, _hello: Hello) -> None:
        """A host joined: it learns of a stop or a loss that came before it."""
        if peer is None or self._master is None:
            return
        stop, lost = self.stopped, self.lost
        if stop is not None:
            self._master.send(peer.host, JobStopping(stop.host, stop.name))
        if lost is not None:
            self._master.send(peer.host, HostLost(lost.host, lost.how, lost.detail))

    def _peer_closed(self, peer: Peer) -> None:
        """The master's side: a host left; lost without a goodbye, or silent, it is the job's loss."""
        if peer.closed not in ("lost", "silent") or self.ended:
            return
        how = "silent" if peer.closed == "silent" else "died"
        lost = LostHost(peer.host, how, peer.reason, self.current_host)
        if self._master is not None:
            for host in self._master.joined():
                self._master.send(host, HostLost(lost.host, lost.how, lost.detail))
        self._lose(lost)

    def _master_closed(self, link: ChannelLink) -> None:
        """A worker's side: the link to the master closed; lost without a goodbye, or silent, it is the
        job's loss."""
        if link.closed not in ("lost", "silent") or self.ended or link.welcome is None:
            return
        how = "silent" if link.closed == "silent" else "died"
        self._lose(LostHost(self.master_host, how, link.reason, self.current_host))

    def _lost_reported(self, _link: ChannelLink, message: HostLost) -> None:
        """The master lost another host."""
        if self.ended or message.host == self.current_host:
            return
        self._lose(LostHost(message.host, message.how or "died", message.detail, self.master_host))

    def _lose(self, lost: LostHost) -> None:
        if any(isinstance(c, LostHost) for c in self._causes):
            return
        self._causes.append(lost)
        text = lost.describe(self.current_host, self.master_host)
        if self.stopped is not None:  # the job is stopping: its processes keep the stop's grace period
            logger.warning("%s, while the job was stopping.", text)
            return
        stopped = halt_processes(
            ClusterError(f"{text}; the job cannot go on without {lost.host}."), self.peer_stop_grace
        )
        logger.error(
            "%s. Stopping this host's processes (%d, %s %g s).",
            text,
            stopped,
            PEER_STOP_GRACE.name,
            self.peer_stop_grace,
        )

    def probe(self) -> None:
        """Check, within the liveness bound, that every other host is still there (a failed result may
        come from a peer that went silent before the bound ran out): each live host answers at once, a
        silent one is found lost when the bound runs out, a stop on the way arrives first."""
        if not self.multi_host or self.ended or self.cause is not None:
            return
        with self._changed:
            master, link = self._master, self._link
        bound = self.liveness_timeout + 2 * heartbeat_interval(self.liveness_timeout)
        started = time.monotonic()
        if master is not None:
            master.probe(timeout=bound)
        elif link is not None and link.closed is None:
            link.probe(timeout=bound)
        took = time.monotonic() - started
        if took > 1:
            logger.info("Checked that every host is still there (%.1f s).", took)

    def conclude(self, result: TrainingResult) -> TrainingResult:
        """This host's outcome: ``result`` (how ``invoke_train`` ended), unless the job was stopped or
        lost a host first (see the module docstring); then the channel ends with it.

        :raises JobStopped: the job was stopped (on this host, or another told it), whatever ``result``.
        :raises ClusterError: the job lost a host: naming it and how, ``result``'s failure below.
        """
        if not result.succeeded:
            self.probe()
        cause = self.cause
        ruling: BaseException | None = None
        if isinstance(cause, StopSeen):
            ruling = self._stopped(cause, "invoke_train", _after_stop(result, self.grace_period))
        elif isinstance(cause, LostHost):
            ruling = self._lost_error(cause, _what_the_code_did(result, self.current_host))
        if ruling is not None:
            self._ruling = ruling
            raise ruling
        self.end(result.exit_code, result.failure)
        return result

    def _stopped(self, stop: StopSeen, phase: str, after: str | None) -> JobStopped:
        origin = stop.host if stop.host != self.current_host else None
        return JobStopped(stop.signum, phase, origin=origin, after=after)

    def _lost_error(self, lost: LostHost, below: str) -> ClusterError:
        text = lost.describe(self.current_host, self.master_host)
        return ClusterError(
            f"{text}; smc stopped the training code on {self.current_host}: the job cannot go on without "
            f"{lost.host}.\n{below}".rstrip()
        )

    def overrule(self, error: BaseException) -> BaseException | None:
        """What the job ends with when ``error`` left it after a stop or a loss (see :meth:`conclude`);
        None when ``error`` stands."""
        cause = self.cause
        if cause is None or error is self._ruling:
            return None
        if isinstance(cause, StopSeen):
            if isinstance(error, JobStopped) and (error.origin or self.current_host) == cause.host:
                return None
            phase = error.phase if isinstance(error, JobStopped) else current_phase()
            after = None if isinstance(error, JobStopped) else f"Then: {_error_line(error)}"
            return self._stopped(cause, phase, after)
        text = cause.describe(self.current_host, self.master_host)
        if isinstance(error, ClusterError) and text in error.message:  # halt_processes' own error
            return self._lost_error(cause, "")
        return self._lost_error(cause, f"Then, on {self.current_host}: {_error_line(error)}")

    def _fail(self, error: ClusterError) -> None:
        if not self._stop.is_set():  # a launch style that needs the channel raises it; say it now too
            logger.warning("The job's channel is not open on %s: %s", self.current_host, error.message)
        with self._changed:
            self._error = error
            self._changed.notify_all()

    # --- what launch styles use ------------------------------------------------------------------
    def master(self, timeout: float | None = None) -> ChannelMaster:
        """The master's end, on the master host: waits until it listens (``timeout``, default the job's
        ``SMC_HOST_WAIT_TIMEOUT``). On a one-host job, opens it now on ``127.0.0.1``, any free port.

        :raises ClusterError: this host is not the master, or the channel cannot open.
        """
        if not self.is_master:
            raise ClusterError(
                f"{self.current_host} asked for the master's end of the job's channel, which "
                f"{self.master_host} holds: use job_channel().link() on the other hosts."
            )
        if not self.multi_host:
            with self._changed:
                if self._master is None:
                    self._master = ChannelMaster(self.master_host, (), port=0, address="127.0.0.1").start()
                return self._master
        return self._wait(lambda: self._master, timeout, f"the job's channel to open on {self.master_host}")

    def link(self, timeout: float | None = None) -> ChannelLink:
        """This host's link to the master, on any other host: waits until it joined (``timeout``,
        default the job's ``SMC_HOST_WAIT_TIMEOUT``).

        :raises ClusterError: this host is the master, or it could not join (naming the master, the port
            and the setting).
        """
        if self.is_master:
            raise ClusterError(
                f"{self.current_host} is the job's master: it holds the channel's master end "
                "(job_channel().master()), not a link."
            )
        bound = self.host_wait_timeout if timeout is None else timeout
        return self._wait(
            lambda: self._link,
            timeout,
            f"{self.current_host} to join the job's channel on {self.master_host} (port {self.port})",
            error=join_error(
                self.master_host, self.port, self.current_host, bound, [], HOST_WAIT_TIMEOUT.name
            ),
        )

    def _wait(
        self, get: Callable[[], T | None], timeout: float | None, what: str, error: str | None = None
    ) -> T:
        def ready() -> T | None:
            if self._error is not None:
                raise self._error
            return get()

        bound = self.host_wait_timeout if timeout is None else timeout
        value = wait_until(
            ready,
            timeout=bound,
            waiting_for=what,
            setting=HOST_WAIT_TIMEOUT.name,
            changed=self._changed,
            error=(lambda _: error) if error else None,
        )
        assert value is not None
        return value

    def end(self, exit_code: int, failure: str | None) -> None:
        """The job ended so on this host: the master tells every host and closes; another host says
        goodbye. Once; later calls do nothing."""
        if self.ended:
            return
        self.ended = True
        self._stop.set()
        remove_stop_listener(self._on_stop_signal)
        resume_processes()
        with self._changed:
            master, link = self._master, self._link
        if master is not None:
            master.finish(exit_code, failure, timeout=OUTCOME_WAIT)
        if link is not None and link.closed is None:
            link.close("succeeded" if exit_code == 0 else f"ended with exit code {exit_code}")


_current: list[JobChannel] = []


def job_channel() -> JobChannel:
    """The channel of the job now running (the runner opens it: :func:`open_job_channel`).

    :raises ClusterError: no job is running in this process (a hook called outside ``train``).
    """
    if not _current:
        raise ClusterError(
            "No job channel is open: the runner opens it for the job it runs (train). Outside a job, "
            "open one with open_job_channel(training_env)."
        )
    return _current[-1]


@contextlib.contextmanager
def open_job_channel(training_env: TrainingEnv) -> Iterator[JobChannel]:
    """Open the job's channel for the block (see the module docstring); :func:`job_channel` returns it
    inside. Ended with the outcome the block gives :meth:`JobChannel.end`, or with the error that
    leaves it."""
    channel = JobChannel(training_env).open()
    _current.append(channel)
    try:
        yield channel
    except (SmcError, JobStopped) as error:
        ruling = channel.overrule(error) if not channel.ended else None
        final = ruling or error
        if isinstance(final, SmcError):
            channel.end(final.exit_code, f"{final.kind} on {channel.current_host}: {final.message}")
        elif isinstance(final, JobStopped):
            channel.end(final.exit_code, f"{channel.current_host} was {final}")
        if ruling is not None:
            raise ruling from error
        raise
    except BaseException as error:
        channel.end(1, f"smc on {channel.current_host} failed: {type(error).__name__}: {error}")
        raise
    finally:
        channel.end(1, f"smc on {channel.current_host} ended without an outcome")
        _current.remove(channel)


def stop_outcome(after: str, phase: str = "invoke_train") -> JobStopped | None:
    """The job's outcome when the job now running was stopped (see the module docstring): a
    :class:`JobStopped` with ``after`` (what came after the stop) for the failure file; None when it
    was not stopped, or no job runs."""
    channel = _current[-1] if _current else None
    stop = channel.stopped if channel is not None else None
    if channel is None or stop is None:
        return None
    return channel._stopped(stop, phase, after)


def _error_line(error: BaseException) -> str:
    if isinstance(error, SmcError):
        return f"{error.kind}: {error.message}"
    return f"{type(error).__name__}: {error}"


def _what_the_code_did(result: TrainingResult, host: str) -> str:
    """What this host's training code did once smc stopped it: its end, then its last error output."""
    cause = result.details.get("kill_cause")
    if result.details.get("stopped_by_smc") and cause in (None, "unknown"):
        cause = "smc-stop"  # smc stopped it: a SIGKILL is smc's, never the OOM killer's
    ended = describe_exit_code(result.exit_code, cause) if result.exit_code else "exit code 0"
    lines = [f"The training code on {host} then ended with {ended}."]
    tail = traceback_tail(result.failure or "")
    if tail.strip():
        lines += ["Its last error output:", tail]
    return "\n".join(lines)


def _after_stop(result: TrainingResult, grace: float) -> str:
    """What the training code did after the stop (it had ``grace`` seconds), for the failure file."""
    had = f"The training code had {GRACE_PERIOD.name} ({grace:g} s) to end after the stop"
    if result.succeeded:
        return (
            f"{had}; it exited 0 (it handled the stop itself, e.g. saved a checkpoint): the job is still "
            "reported as stopped, and what it saved is kept."
        )
    ended = describe_exit_code(result.exit_code, result.details.get("kill_cause"))
    summary = summary_line(result.failure)
    last = f"; last error output: {summary}" if summary else "."
    return f"{had}; it ended with {ended}{last}"
