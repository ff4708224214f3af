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
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from smc_core.base.log import logger
from smc_core.base.settings import CHANNEL_PORT, HOST_WAIT_TIMEOUT
from smc_core.base.stopping import JobStopped
from smc_core.cluster.channel import ChannelLink, ChannelMaster, join_error
from smc_core.cluster.network import resolve_host
from smc_core.cluster.waits import wait_until
from smc_core.errors import ClusterError, SmcError

if TYPE_CHECKING:
    from smc_core.job.environment import TrainingEnv

__all__ = ["OUTCOME_WAIT", "JobChannel", "job_channel", "open_job_channel"]

T = TypeVar("T")

OUTCOME_WAIT = 5.0
"""Seconds the master waits at the end for every host to acknowledge the job's outcome."""


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
        self._master: ChannelMaster | None = None
        self._link: ChannelLink | None = None
        self._error: ClusterError | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.ended = False

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
        """Start listening (master) or joining (other hosts) in the background; nothing for one host."""
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
            master = ChannelMaster(self.master_host, self.workers, port=self.port, address=listen_on).start()
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
            )
        except ClusterError as error:
            self._fail(error)
            return
        with self._changed:
            self._link = link
            self._changed.notify_all()
        if self._stop.is_set():
            link.close("the job ended")

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
    except SmcError as error:
        channel.end(error.exit_code, f"{error.kind} on {channel.current_host}: {error.message}")
        raise
    except JobStopped as stopped:
        channel.end(stopped.exit_code, f"{channel.current_host} was {stopped}")
        raise
    except BaseException as error:
        channel.end(1, f"smc on {channel.current_host} failed: {type(error).__name__}: {error}")
        raise
    finally:
        channel.end(1, f"smc on {channel.current_host} ended without an outcome")
        _current.remove(channel)
