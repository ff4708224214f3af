"""The user's code in attempts: restarts after a failure, agreed by every host (``SMC_MAX_RESTARTS``).

:func:`run_attempts` runs ``invoke_train`` once, under an :class:`~smc_core.host.watch.AttemptWatch`
(stalls, stacks on demand), and again after a failure when the job asks for restarts
(``SMC_MAX_RESTARTS`` or the hyperparameter ``sagemaker_max_restarts``; 0 by default):

* **what is restarted**: the whole user code on every host, for every launch style that does not
  restart on its own. A launch style that does (smc-pytorch passes the count to torchrun's
  ``--max-restarts``, whose rendezvous restarts every host's workers together) says so in its
  result's ``details["restarted_by"]``, and the core adds no restart of its own;
* **what is not**: a deterministic error of the user's code (:func:`restart_refusal`: a
  ``SyntaxError``, ``IndentationError``, ``ImportError``, ``ModuleNotFoundError``, ``NameError``, an
  argument error of argparse), a stop (a stop is a stop) and a lost host (``ClusterError``, exit 6:
  the job's channel concludes both, :meth:`~smc_core.cluster.job.JobChannel.conclude`). A
  **stall** is restarted as any other failure is (every host's stacks logged first, each time): a
  hang in a collective after a lost link is the failure a restart from the checkpoint survives, and
  one that comes back at the same place costs at most the restarts the job asked for, then ends in
  :class:`~smc_core.errors.StallError` (exit 7) naming every attempt. A launch style that restarts
  on its own (torchrun) is not restarted by the core after a stall either: smc ended it on every host;
  torch's own collective timeouts (its NCCL watchdog) end a worker, which torchrun does restart;
* **agreed over the job's channel**: the master decides. A host whose attempt failed asks it
  (``attempt.failed``); the master answers (``attempt.decision``) and, to restart, tells every host
  (``restart``, with the next attempt's number): each stops what still runs of the attempt
  (``SMC_PEER_STOP_GRACE``) and starts the next one. One decision per attempt, whoever asks first;
* the checkpoint directory is the job's and is left as it is; each process knows its attempt from
  ``SMC_ATTEMPT`` (1, 2, ...); every attempt is logged, and the failure file of the last one names
  them all (``details["attempts"]``).

Messages on the job's channel: ``attempt.failed`` (worker→master: ``attempt``, ``exit_code``,
``restartable``, ``reason``), ``attempt.decision`` (the reply: ``restart``, ``reason``), ``restart``
(master→all: ``attempt``, the next one, and ``reason``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from smc_core.base.log import logger
from smc_core.base.messages import summary_line
from smc_core.cluster.channel import ChannelLink, Peer
from smc_core.cluster.job import JobChannel
from smc_core.cluster.messages import Message, message_kind
from smc_core.errors import ClusterError, ConfigError, StallError
from smc_core.host.watch import AttemptWatch
from smc_core.job.environment import TrainingEnv
from smc_core.job.longjobs import deterministic_error
from smc_core.launch.process import running_processes
from smc_core.launch.result import TrainingResult
from smc_core.launch.signals import describe_exit_code
from smc_core.usercode.describe import UserCode, function_mode

__all__ = ["ATTEMPT_VAR", "check_long_jobs", "restart_refusal", "run_attempts"]

ATTEMPT_VAR = "SMC_ATTEMPT"
"""Set for the user's processes: the attempt they belong to (1 for the first)."""
DECISION_TIMEOUT = 30.0
"""Seconds a host waits for the master's decision on a failed attempt."""


def check_long_jobs(training_env: TrainingEnv) -> None:
    """Fail the job before any work when its stall or restart policy is bad, or asks for what its
    launch cannot give: function mode (``train()`` inside smc's own process) cannot be watched for
    stalls, since its output is not smc's to read line by line and a hang there could only be ended
    by ending smc itself, before any failure file told why.

    :raises ConfigError: naming the setting or hyperparameter and the fix.
    """
    policy = training_env.long_jobs
    if policy.stall_timeout and function_mode(training_env):
        raise ConfigError(
            f"{policy.stall_timeout_from} asks for stall detection, but the job runs in function mode "
            "(SMC_FUNCTION_MODE or sagemaker_function_mode), whose train() runs inside smc's own "
            "process, which smc cannot watch for stalls: run the module as a script (turn function "
            f"mode off), or leave {policy.stall_timeout_from} unset for this job."
        )


def restart_refusal(result: TrainingResult) -> str | None:
    """Why ``result``'s failure must not be restarted (a stop, or the code's own deterministic
    error: :func:`~smc_core.job.longjobs.deterministic_error`), or None when a restart may help."""
    if result.details.get("signal"):
        return f"it was stopped by {result.details['signal']}: a stop is not retried"
    return deterministic_error(result.failure, result.exit_code)


@message_kind("attempt.failed")
@dataclass(frozen=True)
class AttemptFailed(Message):
    """A host's attempt failed: may the job restart? (worker to master, a request)"""

    attempt: int = 1
    exit_code: int = 1
    restartable: bool = True
    reason: str = ""


@message_kind("attempt.decision")
@dataclass(frozen=True)
class AttemptDecision(Message):
    """The master's decision on a failed attempt (the reply to ``attempt.failed``)."""

    restart: bool = False
    reason: str = ""


@message_kind("restart")
@dataclass(frozen=True)
class Restart(Message):
    """Every host starts attempt ``attempt`` (master to every host)."""

    attempt: int = 2
    reason: str = ""


class _Agreement:
    """The restart decisions of one job on this host: made here (master) or heard (other hosts)."""

    def __init__(self, training_env: TrainingEnv, channel: JobChannel, max_restarts: int) -> None:
        self.channel = channel
        self.host = training_env.current_host
        self.max_restarts = max_restarts
        self.grace = training_env.supervision.peer_stop_grace
        self.lock = threading.Condition()
        self.decisions: dict[int, tuple[bool, str]] = {}
        self.current = 1
        self._undo: list[Callable[[], None]] = []
        if channel.multi_host and max_restarts:
            threading.Thread(target=self._join, daemon=True, name="smc-restart-channel").start()

    def _join(self) -> None:
        try:
            if self.channel.is_master:
                master = self.channel.master()
                master.on(AttemptFailed, self._asked)
                self._undo.append(lambda: master.off(AttemptFailed, self._asked))
            else:
                link = self.channel.link()
                link.on(Restart, self._told)
                self._undo.append(lambda: link.off(Restart, self._told))
        except ClusterError:
            return

    def close(self) -> None:
        for undo in self._undo:
            undo()

    # --- the master ---------------------------------------------------------------------------------
    def decide(self, attempt: int, restartable: bool, reason: str, where: str) -> tuple[bool, str]:
        """The decision on ``attempt`` (made once: the first failure reported wins); to restart, every
        host is told and this host's processes are stopped."""
        with self.lock:
            if attempt in self.decisions:
                return self.decisions[attempt]
            if not restartable:
                decision = (False, f"the failure on {where} is not restarted: {reason}")
            elif attempt > self.max_restarts:
                decision = (False, f"no restart left ({self.max_restarts} used)")
            else:
                decision = (True, f"attempt {attempt} failed on {where}: {reason}")
            self.decisions[attempt] = decision
            self.lock.notify_all()
        if decision[0]:
            if self.channel.multi_host:
                try:
                    self.channel.master(timeout=1.0).broadcast(Restart(attempt + 1, decision[1]))
                except ClusterError:
                    pass
            self._stop_local(attempt)
        return decision

    def _asked(self, peer: Peer | None, message: AttemptFailed) -> Message:
        where = peer.host if peer is not None else "a host"
        restart, reason = self.decide(message.attempt, message.restartable, message.reason, where)
        return AttemptDecision(restart, reason)

    # --- the other hosts ------------------------------------------------------------------------------
    def _told(self, _link: ChannelLink, message: Restart) -> None:
        attempt = message.attempt - 1
        with self.lock:
            if attempt in self.decisions:
                return
            self.decisions[attempt] = (True, message.reason)
            self.lock.notify_all()
        logger.warning("The master restarts the job (attempt %d): %s.", message.attempt, message.reason)
        self._stop_local(attempt)

    def ask(self, attempt: int, result: TrainingResult, restartable: bool, reason: str) -> tuple[bool, str]:
        """The master's decision on this host's failed ``attempt`` (no restart when it cannot be had)."""
        with self.lock:
            if attempt in self.decisions:
                return self.decisions[attempt]
        try:
            link = self.channel.link(timeout=5.0)
        except ClusterError as error:
            return False, f"the master could not be asked ({error.message})"
        reply = link.request(
            AttemptFailed(attempt, result.exit_code, restartable, reason), timeout=DECISION_TIMEOUT
        )
        with self.lock:
            if attempt in self.decisions:  # the master's restart came first
                return self.decisions[attempt]
            if isinstance(reply, AttemptDecision):
                self.decisions[attempt] = (reply.restart, reply.reason)
                return self.decisions[attempt]
        return False, f"no decision from the master {self.channel.master_host} within {DECISION_TIMEOUT:g} s"

    def _stop_local(self, attempt: int) -> None:
        if attempt != self.current:
            return

        for process in running_processes():  # without waiting: the attempt's own wait sees them end
            process.terminate(self.grace, f"the job restarts (attempt {attempt + 1})")

    def restarting(self, attempt: int) -> tuple[bool, str] | None:
        """The decision already taken on ``attempt`` (a restart the master told), if any."""
        with self.lock:
            return self.decisions.get(attempt)


def _summary(attempt: int, result: TrainingResult, host: str) -> str:
    where = result.details.get("host") or host
    rank = result.details.get("rank")
    who = f"rank {rank} on {where}" if rank is not None else str(where)
    what = summary_line(result.failure) or describe_exit_code(result.exit_code)
    return f"attempt {attempt}: {who}, exit code {result.exit_code}: {what}"


def run_attempts(
    invoke: Callable[[Mapping[str, str]], TrainingResult],
    training_env: TrainingEnv,
    user_code: UserCode,
    process_env: Mapping[str, str],
    channel: JobChannel,
) -> TrainingResult:
    """Run the user's code (``invoke(process_env)``: the ``invoke_train`` hook) in attempts, each
    watched (see the module docstring); the last attempt's result, naming every attempt.

    :raises StallError: the job stalled (on this host, or as the master said).
    """
    policy = training_env.long_jobs
    if policy.stall_timeout or policy.max_restarts:
        logger.info("Long job: %s.", policy.describe())
    agreement = _Agreement(training_env, channel, policy.max_restarts)
    attempts: list[str] = []
    attempt = 1
    try:
        while True:
            agreement.current = attempt
            watch = AttemptWatch(training_env, channel, attempt, user_code.code_dir)
            env = {**process_env, **watch.environment(process_env), ATTEMPT_VAR: str(attempt)}
            if policy.max_restarts:
                logger.info("Attempt %d of at most %d starts.", attempt, policy.max_restarts + 1)
            with watch:
                result = invoke(env)
            if channel.cause is not None:  # a stop or a lost host: the channel concludes, no restart
                return _with_attempts(result, attempts, attempt)
            stalled = watch.stalled
            final = not policy.max_restarts or result.details.get("restarted_by")
            if stalled is not None and final:
                raise StallError(stalled + _named(attempts, f"attempt {attempt}: stalled"))
            if stalled is None and (result.succeeded or final):
                return _with_attempts(result, attempts, attempt)
            told = agreement.restarting(attempt)
            if stalled is not None:  # restarted as any failure is: a hang may not come back
                refusal, summary = None, f"attempt {attempt}: stalled ({_shorten(stalled)})"
            else:
                refusal = restart_refusal(result)
                summary = _summary(attempt, result, training_env.current_host)
            if told is not None:
                restart, reason = told
            elif channel.is_master:
                restart, reason = agreement.decide(
                    attempt, refusal is None, refusal or summary, training_env.current_host
                )
            else:
                restart, reason = agreement.ask(attempt, result, refusal is None, refusal or summary)
            attempts.append(
                summary if told is None else f"attempt {attempt}: stopped for a restart ({reason})"
            )
            if not restart:
                logger.error("Attempt %d failed; no restart: %s.", attempt, reason)
                if stalled is not None:
                    raise StallError(stalled + _named(attempts[:-1], f"attempt {attempt}: stalled"))
                return _with_attempts(result, attempts[:-1], attempt, last=summary)
            logger.warning(
                "Attempt %d failed (%s); restarting the user's code (attempt %d of at most %d).",
                attempt,
                reason,
                attempt + 1,
                policy.max_restarts + 1,
            )
            attempt += 1
    finally:
        agreement.close()


def _shorten(stall: str, limit: int = 200) -> str:
    head = stall.split("\n", 1)[0]
    return head if len(head) <= limit else head[: limit - 3] + "..."


def _named(attempts: list[str], last: str) -> str:
    if not attempts:
        return ""
    return "\nAttempts: " + "; ".join([*attempts, last])


def _with_attempts(
    result: TrainingResult, earlier: list[str], attempt: int, last: str | None = None
) -> TrainingResult:
    if attempt == 1:
        return result
    record: list[Any] = [*earlier, last or f"attempt {attempt}: exit code {result.exit_code}"]
    return dataclasses.replace(result, details={**result.details, "attempts": record})
