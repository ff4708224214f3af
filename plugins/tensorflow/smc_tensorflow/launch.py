"""Running a multi-host TensorFlow job on one host: the worker, the parameter server beside it, and the
control channel that ends every host when one fails (:mod:`smc_tensorflow.peers`).

On every host of a MultiWorkerMirrored or parameter-server job with more than one host:

1. the control channel opens (the master listens, the others join: a bounded, logged wait);
2. parameter-server jobs: the parameter server starts (``python -m smc_tensorflow.ps_server``, a
   supervised background process with its own ``TF_CONFIG``, task ``ps``) and smc waits until it
   listens on port 2223;
3. the worker (the user's entry point) runs, supervised, with the job's ``TF_CONFIG``;
4. while it runs: a failure reported by another host, or the death of this host's parameter server,
   stops it (SIGTERM, SIGKILL after :data:`PEER_STOP_GRACE` seconds); on a non-master host of a
   parameter-server job, the master's ``done`` stops a worker that is still serving (a TF2 worker runs
   ``server.join()``);
5. when it has ended: a non-master parameter-server host keeps its parameter server until the master
   host is done (bounded by ``SMC_TF_PS_WAIT_TIMEOUT``, logged every 10 s), then stops it; the master
   says ``done`` and waits for the others (``SMC_TF_PEER_WAIT_TIMEOUT``).

Nothing is left running: every process is supervised by the core (:func:`smc_core.start_process`),
which stops whatever a process leaves behind.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any

from smc_core import (
    HOST_WAIT_TIMEOUT,
    ClusterError,
    SupervisedProcess,
    TrainingEnv,
    TrainingResult,
    UserCode,
    entry_command,
    logger,
    python_executable,
    start_process,
    tf_config_json,
    user_args,
)
from smc_tensorflow.distribution import (
    CONTROL_PORT,
    PEER_WAIT_TIMEOUT,
    PS_PORT,
    PS_WAIT_TIMEOUT,
    LaunchStyle,
    cluster_hosts,
    ps_tf_config,
)
from smc_tensorflow.hints import hints_for, without_log_noise
from smc_tensorflow.peers import Channel, MasterChannel, PeerChannel, failure

STOP_GRACE = 5.0
"""Seconds a host's processes get after SIGTERM before SIGKILL when the job is over (the master's
``done``), and a parameter server when it is stopped."""
PEER_STOP_GRACE = 1.0
"""Seconds a worker gets after SIGTERM before SIGKILL when another host failed, this host's parameter
server ended or the master was lost: the job has failed, and a MultiWorkerMirrored worker does not act
on SIGTERM at all (TensorFlow's coordination service takes SIGTERM as a preemption notice), so any
grace is waited out in full (5 s made every failure take over 6 s; issue 28)."""
PS_START_TIMEOUT = 120.0
"""Seconds the parameter server has to start listening on its port."""
TAIL_LINES = 200
"""Lines of stderr kept from each process: a traceback can end in a long repr (a tensor's)."""
TRACEBACK_CHARS = 700
"""How much of the failing process's stderr goes into the failure file (it shows 1024 characters)."""


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
        grace_period=STOP_GRACE,
        tail_lines=TAIL_LINES,
    )
    deadline = time.monotonic() + PS_START_TIMEOUT
    while not _listening(PS_PORT):
        if ps.poll() is not None:
            result = ps.wait()
            raise ClusterError(
                f"The parameter server on {host} exited with code {result.exit_code} before listening on "
                f"port {PS_PORT}:\n{_tail(result.failure or '')}"
            )
        if time.monotonic() > deadline:
            ps.stop(STOP_GRACE)
            raise ClusterError(
                f"The parameter server on {host} did not listen on port {PS_PORT} within "
                f"{PS_START_TIMEOUT:g} s; is another process using the port?"
            )
        time.sleep(0.2)
    return ps


def run_on_host(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str], style: LaunchStyle
) -> TrainingResult:
    """Run this host's share of a multi-host job (see the module docstring) and return its result."""
    settings = training_env.settings
    hosts = cluster_hosts(training_env)
    host, master = training_env.current_host, hosts[0]
    port = settings[CONTROL_PORT]
    command = entry_command(user_code, user_args(training_env), process_env)
    channel: MasterChannel | PeerChannel
    if host == master:
        channel = MasterChannel(host, [h for h in hosts if h != host], port).start()
    else:
        channel = PeerChannel(host, master, port).start(settings[HOST_WAIT_TIMEOUT])
    with channel:
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
                ps.stop(STOP_GRACE)
    return outcome


def _supervise(
    training_env: TrainingEnv, channel: MasterChannel | PeerChannel, worker: SupervisedProcess,
    ps: SupervisedProcess | None,
) -> TrainingResult:  # fmt: skip
    host = training_env.current_host
    settings = training_env.settings
    stopped_for: str | None = None  # why smc stopped the worker, when it did
    ps_failure: dict[str, Any] | None = None
    while worker.poll() is None:
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
            missing = channel.missing_peers(settings[HOST_WAIT_TIMEOUT])
            if missing:
                channel.publish(failure(missing[0], "smc", 1, _missing_text(missing, host, channel.port)))
                continue
        if stopped_for:
            _log_stop(stopped_for, host, channel)
            worker.stop(STOP_GRACE if stopped_for == "done" else PEER_STOP_GRACE)
            break
        channel.wait_changed(0.5)
    result = worker.wait()
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
    also = local if stopped_for is None and root.get("host") != host else None
    return _failed(result, root, host, channel, also=also)


def _after_success(
    training_env: TrainingEnv, channel: MasterChannel | PeerChannel, result: TrainingResult,
    ps: SupervisedProcess | None,
) -> TrainingResult:  # fmt: skip
    settings = training_env.settings
    host = training_env.current_host
    success = dataclasses.replace(result, exit_code=0, failure=None)
    if isinstance(channel, MasterChannel):
        if ps is not None:
            logger.info("The master's worker is done: stopping the parameter servers.")
        channel.finish(succeeded=True, timeout=settings[PEER_WAIT_TIMEOUT])
        return success
    channel.report_end(None)
    if ps is None:
        return success
    timeout = settings[PS_WAIT_TIMEOUT]
    start = last_log = time.monotonic()
    if not channel.done:
        logger.info(
            "The worker on %s has ended; its parameter server keeps serving until the master host %s is done "
            "(at most %g s, SMC_TF_PS_WAIT_TIMEOUT).",
            host,
            channel.master,
            timeout,
        )
    while not channel.done:
        if channel.root is not None:
            return _failed(result, channel.root, host, channel)
        if channel.lost:
            return _failed(result, channel.lost, host, channel)
        if ps.poll() is not None:
            entry = _ps_failure(host, ps.wait())
            return _failed(result, channel.report_end(entry) or entry, host, channel)
        now = time.monotonic()
        if now - start >= timeout:
            return _failed(
                result,
                f"the master host {channel.master} was not done {timeout:g} s after the worker on {host} "
                "ended: smc stopped this host's parameter server. Set SMC_TF_PS_WAIT_TIMEOUT (seconds) to "
                "wait longer.",
                host,
                channel,
            )
        if now - last_log >= 10:
            logger.info(
                "Waiting for the master host %s to finish (%.0f s of %g s, SMC_TF_PS_WAIT_TIMEOUT).",
                channel.master,
                now - start,
                timeout,
            )
            last_log = now
        channel.wait_changed(0.5)
    logger.info("The master host %s is done: stopping the parameter server on %s.", channel.master, host)
    ps.stop(STOP_GRACE)
    return success


def _log_stop(reason: str, host: str, channel: Channel) -> None:
    if reason == "failure":
        root = channel.remote_failure or {}
        logger.error(
            "The %s on %s failed: stopping the worker on %s.", root.get("process"), root.get("host"), host
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


def _ps_failure(host: str, result: TrainingResult) -> dict[str, Any]:
    return failure(host, "parameter server", result.exit_code or 1, result.details.get("stderr_tail", ""))


def _missing_text(missing: list[str], host: str, port: int) -> str:
    return (
        f"{', '.join(missing)} did not join the control channel on {host}:{port} within "
        "SMC_HOST_WAIT_TIMEOUT: smc there failed before launching (see its failure file), or cannot "
        "reach this port."
    )


def _failed(
    result: TrainingResult,
    root: dict[str, Any] | str,
    host: str,
    channel: Channel,
    *,
    also: Mapping[str, Any] | None = None,
) -> TrainingResult:
    if isinstance(root, str):
        root = failure(host, "smc", 1, root)
    exit_code = int(root.get("exit_code") or result.exit_code or 1)
    return dataclasses.replace(
        result,
        exit_code=exit_code if exit_code else 1,
        failure=failure_reason(root, host, also=also),
        details={**result.details, "host": root.get("host"), "process": root.get("process")},
    )


def failure_reason(
    root: Mapping[str, Any], current_host: str, *, also: Mapping[str, Any] | None = None
) -> str:
    """The failure-file reason: the tail of the failing process's stderr, then which process on which
    host failed (last: the failure file keeps a reason's last lines within its first 1024 characters),
    then the hints for known upstream failures.

    :param also: this host's own failure, when its worker failed by itself after the root cause.
    """
    process, where = root.get("process", "worker"), root.get("host", "?")
    if process == "smc":
        head = f"the job failed on {where}"
    else:
        head = f"the {process} on host {where} failed with exit code {root.get('exit_code')}"
    if where != current_host and also is not None:
        head += f"; the {also.get('process')} on {current_host} failed after it"
        head += f" (exit code {also.get('exit_code')})"
    elif where != current_host:
        head += f"; {current_host} stopped its own processes because of it"
    full = without_log_noise(str(root.get("tail") or "")) or ""
    tail = _tail(full)
    reason = f"{tail}\n({head}.)" if tail else f"{head}."
    return "\n".join([reason, *hints_for(full)])


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit))\b")


def _tail(text: str) -> str:
    """The end of a traceback, at most about :data:`TRACEBACK_CHARS` characters, always with its last
    exception line (``ValueError: ...``), shortened, when what follows it is long (a tensor's repr)."""
    text = text.rstrip()
    if len(text) <= TRACEBACK_CHARS:
        return text
    tail = text[-TRACEBACK_CHARS:]
    tail = tail[tail.find("\n") + 1 :] if "\n" in tail else tail
    lines = text.splitlines()
    last = next((line for line in reversed(lines) if _EXCEPTION_LINE.match(line)), None)
    if last is not None and last not in tail:
        kept = tail[-(TRACEBACK_CHARS // 2) :]
        kept = kept[kept.find("\n") + 1 :] if "\n" in kept else kept
        tail = f"{last[:200]}\n[...]\n{kept}"
    return tail
