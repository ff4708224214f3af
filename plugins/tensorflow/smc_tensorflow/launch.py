"""Running a multi-host TensorFlow job on one host: the worker, the parameter server beside it, and the
failure relay over the job's channel that ends every host when one fails (:mod:`smc_tensorflow.peers`).

On every host of a MultiWorkerMirrored or parameter-server job with more than one host:

1. the job's channel is ready (the core opened it; the master holds its master end, the others wait
   for their link: a bounded, logged wait);
2. parameter-server jobs: the parameter server starts (``python -m smc_tensorflow.ps_server``, a
   supervised background process with its own ``TF_CONFIG``, task ``ps``) and smc waits until it
   listens on port 2223;
3. the worker (the user's entry point) runs, supervised, with the job's ``TF_CONFIG``;
4. while it runs: a failure reported by another host, or the death of this host's parameter server,
   stops it (SIGTERM, SIGKILL after the job's ``SMC_PEER_STOP_GRACE``); on a non-master host of a
   parameter-server job, the master's ``done`` stops a worker that is still serving (a TF2 worker runs
   ``server.join()``; SIGKILL after ``SMC_LEFTOVER_GRACE``);
5. when it has ended: a non-master parameter-server host keeps its parameter server until the master
   host is done (bounded by ``SMC_TF_PS_WAIT_TIMEOUT``, logged every 10 s), then stops it; the master
   says ``done`` and waits for the others (``SMC_TF_PEER_WAIT_TIMEOUT``).

Every grace period and bound comes from the job's supervision policy (``training_env.supervision``),
a stop signal's included: smc passes it on to the worker and the parameter server, which get
``SMC_GRACE_PERIOD``.

Nothing is left running: every process is supervised by the core (:func:`smc_core.start_process`),
which stops whatever a process leaves behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from smc_core import (
    ClusterError,
    RankFailure,
    SupervisedProcess,
    TrainingEnv,
    TrainingResult,
    UserCode,
    entry_command,
    job_channel,
    logger,
    python_executable,
    start_process,
    tf_config_json,
    traceback_tail,
    user_args,
    wait_until,
)
from smc_tensorflow.distribution import (
    PEER_WAIT_TIMEOUT,
    PS_PORT,
    PS_WAIT_TIMEOUT,
    LaunchStyle,
    cluster_hosts,
    ps_tf_config,
)
from smc_tensorflow.hints import hints_for, without_log_noise
from smc_tensorflow.peers import Channel, MasterChannel, PeerChannel, failure

PS_START_TIMEOUT = 120.0
"""Seconds the parameter server has to start listening on its port."""
TAIL_LINES = 200
"""Lines of stderr kept from each process: a traceback can end in a long repr (a tensor's)."""


def ps_command() -> list[str]:
    """The parameter-server process's command."""
    return [python_executable(), "-m", "smc_tensorflow.ps_server"]


def ps_environment(training_env: TrainingEnv, process_env: Mapping[str, str]) -> dict[str, str]:
    """The parameter server's environment: the job's, with its own ``TF_CONFIG`` (task ``ps``) and no GPU."""
    env = dict(process_env)
    env["TF_CONFIG"] = tf_config_json(ps_tf_config(training_env))
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_parameter_server(training_env: TrainingEnv, process_env: Mapping[str, str]) -> SupervisedProcess:
    """Start this host's parameter server and wait until it listens on port 2223.

    :raises ClusterError: it exited, or did not listen within :data:`PS_START_TIMEOUT` seconds.
    """
    host = training_env.current_host
    logger.info("Starting the parameter server on %s:%d.", host, PS_PORT)
    ps = start_process(
        ps_command(),
        env=ps_environment(training_env, process_env),
        cwd=training_env.code_dir,
        prefix=f"[{host} ps] ",
        tail_lines=TAIL_LINES,
    )

    def listening() -> bool:
        if ps.poll() is not None:
            result = ps.wait()
            raise ClusterError(
                f"The parameter server on {host} exited with code {result.exit_code} before listening on "
                f"port {PS_PORT}:\n{traceback_tail(result.failure or '')}"
            )
        return _listening(PS_PORT)

    try:
        wait_until(
            listening,
            timeout=PS_START_TIMEOUT,
            waiting_for=f"the parameter server on {host} to listen on port {PS_PORT}",
            error=lambda _: (
                f"The parameter server on {host} did not listen on port {PS_PORT} within "
                f"{PS_START_TIMEOUT:g} s; is another process using the port?"
            ),
        )
    except ClusterError:
        if ps.poll() is None:
            ps.stop(training_env.supervision.leftover_grace)
        raise
    return ps


def run_on_host(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str], style: LaunchStyle
) -> TrainingResult:
    """Run this host's share of a multi-host job (see the module docstring) and return its result."""
    hosts = cluster_hosts(training_env)
    host = training_env.current_host
    command = entry_command(user_code, user_args(training_env), process_env)
    job = job_channel()
    channel: MasterChannel | PeerChannel
    if job.is_master:
        channel = MasterChannel(job.master(), [h for h in hosts if h != host])
    else:
        channel = PeerChannel(job.link())
    leftover = training_env.supervision.leftover_grace
    try:
        ps = None
        if style is LaunchStyle.PARAMETER_SERVER:
            try:
                ps = start_parameter_server(training_env, process_env)
            except ClusterError as error:  # tell the other hosts why, then fail here
                channel.report_end(failure(host, "parameter server", 1, error.message))
                raise
        try:
            logger.info("%s: starting the worker on %s: %s", style.value, host, " ".join(command))
            worker = start_process(command, env=process_env, cwd=user_code.code_dir, tail_lines=TAIL_LINES)
            outcome = _supervise(training_env, channel, worker, ps)
        finally:
            if ps is not None and ps.poll() is None:
                ps.stop(leftover)
    finally:
        if isinstance(channel, PeerChannel):
            channel.close()
    return outcome


def _supervise(
    training_env: TrainingEnv, channel: MasterChannel | PeerChannel, worker: SupervisedProcess,
    ps: SupervisedProcess | None,
) -> TrainingResult:  # fmt: skip
    host = training_env.current_host
    policy = training_env.supervision
    stopped_for: str | None = None  # why smc stopped the worker, when it did
    ps_failure: RankFailure | None = None
    while worker.poll() is None:
        if worker.forwarded:
            # smc passed a stop signal on (to the parameter server too): the worker has the job's grace
            # period, after which its supervision kills it; a parameter server that ended is no failure.
            stopped_for = "signal"
            break
        if channel.remote_failure is not None:
            stopped_for = "failure"
        elif isinstance(channel, PeerChannel) and channel.lost:
            stopped_for = "lost"
        elif isinstance(channel, PeerChannel) and channel.done and ps is not None:
            stopped_for = "done"
        elif ps is not None and ps.poll() is not None:
            ps_failure = _ps_failure(host, ps.wait())
            stopped_for = "ps"
        elif isinstance(channel, MasterChannel):
            missing = channel.missing_peers(policy.host_wait_timeout)
            if missing:
                channel.publish(failure(missing[0], "smc", 1, _missing_text(missing, host, channel.port)))
                continue
        if stopped_for:
            _log_stop(stopped_for, host, channel)
            # The job is over for this worker: the end of a serving worker is a leftover's; anything
            # else means the job failed (elsewhere, or in this host's parameter server).
            if stopped_for == "done":
                worker.stop(policy.leftover_grace)
            else:
                worker.stop(policy.peer_stop_grace, reason=_STOP_REASONS[stopped_for])
            break
        channel.wait_changed(0.5)
    result = worker.wait()
    if stopped_for == "signal" or (stopped_for is None and result.details.get("signal")):
        return _stopped(training_env, channel, result)
    if stopped_for == "done" or (result.succeeded and stopped_for is None):
        return _after_success(training_env, channel, result, ps)
    if stopped_for == "lost":
        assert isinstance(channel, PeerChannel)
        return _failed(result, channel.lost or "lost contact with the master host", host, channel)
    local = ps_failure or failure(host, "worker", result.exit_code, result.details.get("stderr_tail", ""))
    root = channel.report_end(local) or local
    if isinstance(channel, MasterChannel):
        channel.finish(succeeded=False, timeout=0)
    # This host's own failure, when it failed by itself after another host's (it was not stopped).
    also = local if stopped_for is None and root.host != host else None
    return _failed(result, root, host, channel, also=also)


def _stopped(
    training_env: TrainingEnv, channel: MasterChannel | PeerChannel, result: TrainingResult
) -> TrainingResult:
    """The worker was stopped by a signal smc passed on: that is this host's outcome (the result says
    how the grace period went). The other hosts hear that it ended, without waiting for a verdict."""
    host = training_env.current_host
    logger.error("The worker on %s ended after %s.", host, result.details.get("signal") or "a stop signal")
    channel.report_end(
        failure(host, "worker", result.exit_code, result.details.get("stderr_tail", "")), wait=False
    )
    if isinstance(channel, MasterChannel):
        channel.finish(succeeded=False, timeout=0)
    return result


def _after_success(
    training_env: TrainingEnv, channel: MasterChannel | PeerChannel, result: TrainingResult,
    ps: SupervisedProcess | None,
) -> TrainingResult:  # fmt: skip
    policy = training_env.supervision
    host = training_env.current_host
    success = dataclasses.replace(result, exit_code=0, failure=None)
    if isinstance(channel, MasterChannel):
        if ps is not None:
            logger.info("The master's worker is done: stopping the parameter servers.")
        channel.finish(succeeded=True, timeout=policy[PEER_WAIT_TIMEOUT])
        return success
    channel.report_end(None)
    if ps is None:
        return success
    timeout = policy[PS_WAIT_TIMEOUT]
    if not channel.done:
        logger.info(
            "The worker on %s has ended; its parameter server keeps serving until the master host %s is done "
            "(at most %g s, SMC_TF_PS_WAIT_TIMEOUT).",
            host,
            channel.master,
            timeout,
        )

    def over() -> TrainingResult | bool:
        """The master is done (True), or this host failed meanwhile (its result); else False."""
        if channel.done:
            return True
        if channel.root is not None:
            return _failed(result, channel.root, host, channel)
        if channel.lost:
            return _failed(result, channel.lost, host, channel)
        if ps.poll() is not None:
            entry = _ps_failure(host, ps.wait())
            return _failed(result, channel.report_end(entry) or entry, host, channel)
        channel.wait_changed(0.5)
        return False

    ended = wait_until(
        over,
        timeout=timeout,
        waiting_for=f"the master host {channel.master} to finish",
        setting="SMC_TF_PS_WAIT_TIMEOUT",
        interval=0.0,
        first_log=10.0,
        raise_on_timeout=False,
    )
    if isinstance(ended, TrainingResult):
        return ended
    if ended is None:
        return _failed(
            result,
            f"the master host {channel.master} was not done {timeout:g} s after the worker on {host} "
            "ended: smc stopped this host's parameter server. Set SMC_TF_PS_WAIT_TIMEOUT (seconds) to "
            "wait longer.",
            host,
            channel,
        )
    logger.info("The master host %s is done: stopping the parameter server on %s.", channel.master, host)
    ps.stop(policy.leftover_grace)
    return success


_STOP_REASONS = {
    "failure": "a process of another host failed",
    "ps": "this host's parameter server ended",
    "lost": "this host lost contact with the master host",
}
"""Why smc stops a worker that still runs, for its result (a SIGKILL after the grace is smc's)."""


def _log_stop(reason: str, host: str, channel: Channel) -> None:
    if reason == "failure":
        root = channel.remote_failure
        logger.error(
            "%s failed: stopping the worker on %s.", root.who if root else "another host's process", host
        )
    elif reason == "done":
        logger.info(
            "The master host is done while the worker on %s still runs (a worker that serves): stopping it.",
            host,
        )
    elif reason == "ps":
        logger.error("The parameter server on %s ended: stopping the worker.", host)
    else:
        logger.error("Lost contact with the master host: stopping the worker on %s.", host)


def _ps_failure(host: str, result: TrainingResult) -> RankFailure:
    return failure(host, "parameter server", result.exit_code or 1, result.details.get("stderr_tail", ""))


def _missing_text(missing: list[str], host: str, port: int) -> str:
    return (
        f"{', '.join(missing)} did not join the job's channel on {host}:{port} within "
        "SMC_HOST_WAIT_TIMEOUT: smc there failed before launching (see its failure file), or cannot "
        "reach this port (SMC_CHANNEL_PORT)."
    )


def _failed(
    result: TrainingResult,
    root: RankFailure | str,
    host: str,
    channel: Channel,
    *,
    also: RankFailure | None = None,
) -> TrainingResult:
    if isinstance(root, str):
        root = failure(host, "smc", 1, root)
    exit_code = int(root.exit_code or result.exit_code or 1)
    return dataclasses.replace(
        result,
        exit_code=exit_code if exit_code else 1,
        failure=failure_reason(root, host, also=also),
        details={**result.details, "host": root.host, "process": root.process, "failing_process": root.who},
    )


def failure_reason(root: RankFailure, current_host: str, *, also: RankFailure | None = None) -> str:
    """The failure-file reason: which process on which host failed and the end of its stderr (the core's
    failing-rank report, TensorFlow's log noise left out), then the hints for known upstream failures.

    :param also: this host's own failure, when its worker failed by itself after the root cause.
    """
    full = without_log_noise(root.tail) or ""
    reason = dataclasses.replace(root, tail=full).describe(current_host, also=also)
    return "\n".join([reason, *hints_for(full)])
