"""The outcome of the user's processes (:class:`TrainingResult`), and the words for how one ended.

A death by SIGKILL is told apart by its cause: smc's own SIGKILL after the grace period (of a stop
signal it passed on, or of a stop it decided itself: another host was lost or failed), the
kernel's out-of-memory killer (where the cgroup's ``memory.events``, or ``memory.oom_control`` on
cgroup v1, counted an ``oom_kill`` while the process ran), or neither (plainly "killed by SIGKILL").
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainingResult", "kill_cause", "oom_kill_count", "supervised_result"]


@dataclass(frozen=True)
class TrainingResult:
    """What ``invoke_train`` returns: how the user's code ended.

    Attributes:
        exit_code: 0 on success; the user's own exit code otherwise (``128 + signal`` when killed).
        command: the command that ran (for the failure file), or None in function mode.
        failure: the reason to report when ``exit_code`` is not 0 (the stderr tail, a traceback).
        model: in function mode, the object ``train()`` returned, for the adapter to save.
        model_handled_by: the plugin that took care of ``model`` (saved it, or left the saving to
            the master host); a ``model`` that no plugin handled fails the job (exit 2) rather than
            being lost. Adapters set it in their ``invoke_train`` wrapper with
            ``dataclasses.replace(result, model_handled_by="smc-myfw")``.
        details: facts a plugin wants to pass on (host, rank of the failing process ...).
            :func:`~smc_core.launch.process.run_process` sets ``pid``, ``stderr_tail``, and
            ``signal`` (the name of a signal passed on from smc), ``killed_after_grace_period`` and
            ``kill_cause`` (``"grace-period"``, ``"out-of-memory"`` or ``"unknown"`` for a SIGKILL)
            where they apply.
    """

    exit_code: int
    command: Sequence[str] | None = None
    failure: str | None = None
    model: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)
    model_handled_by: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when ``exit_code`` is 0."""
        return self.exit_code == 0


def _memory_events() -> Path | None:
    """The file counting this process's cgroup's OOM kills: cgroup v2 ``memory.events``, else v1
    ``memory.oom_control``; None when there is neither."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.strip().lstrip("/")
        if controllers == "memory":  # v1
            for root in (Path("/sys/fs/cgroup/memory") / relative, Path("/sys/fs/cgroup/memory")):
                if (root / "memory.oom_control").is_file():
                    return root / "memory.oom_control"
        elif controllers == "" and (Path("/sys/fs/cgroup") / relative / "memory.events").is_file():
            return Path("/sys/fs/cgroup") / relative / "memory.events"
    return None


def oom_kill_count() -> int | None:
    """How many processes the kernel's OOM killer has killed in smc's cgroup, or None if unknown."""
    path = _memory_events()
    if path is None:
        return None
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def kill_cause(
    exit_code: int, *, killed_after_grace: bool, oom_before: int | None, stopped_by_smc: bool = False
) -> str | None:
    """Why a process ended by SIGKILL: ``grace-period`` (after a stop signal smc passed on),
    ``smc-stop`` (after smc stopped it on its own account), ``out-of-memory`` or ``unknown``; else None."""
    if exit_code != 128 + signal.SIGKILL:
        return None
    if killed_after_grace:
        return "smc-stop" if stopped_by_smc else "grace-period"
    after = oom_kill_count()
    if oom_before is not None and after is not None and after > oom_before:
        return "out-of-memory"
    return "unknown"


def supervised_result(
    exit_code: int,
    *,
    command: Sequence[str],
    pid: int,
    tail: str,
    forwarded: Sequence[str],
    grace_period: float,
    killed_after_grace: bool,
    oom_before: int | None,
    stopped_by_smc: str | None = None,
) -> TrainingResult:
    """The :class:`TrainingResult` of a supervised process, with its ``failure`` text and ``details``.

    :param stopped_by_smc: why smc stopped the process on its own account, if it did.
    """
    details: dict[str, Any] = {"pid": pid, "stderr_tail": tail}
    if forwarded:
        details["signal"] = forwarded[0]
    if stopped_by_smc:
        details["stopped_by_smc"] = stopped_by_smc
    cause = kill_cause(
        exit_code,
        killed_after_grace=killed_after_grace,
        oom_before=oom_before,
        stopped_by_smc=bool(stopped_by_smc) and not forwarded,
    )
    if cause:
        details["kill_cause"] = cause
    failure = None
    if exit_code != 0:
        failure = tail
        if killed_after_grace and cause == "smc-stop":
            details["killed_after_grace_period"] = grace_period
            failure = (
                f"smc stopped the process and sent SIGKILL {grace_period:g} s later: it did not exit within "
                "that grace.\n" + tail
            )
        elif killed_after_grace:
            details["killed_after_grace_period"] = grace_period
            failure = (
                f"smc sent SIGKILL {grace_period:.0f} s after passing on "
                f"{'/'.join(forwarded) or 'SIGTERM'}: the process did not exit in the grace period "
                "(set SMC_GRACE_PERIOD to allow more).\n" + tail
            )
        elif cause == "out-of-memory":
            failure = (
                "The kernel's out-of-memory killer killed the process (cgroup memory.events oom_kill).\n"
                + tail
            )
    return TrainingResult(exit_code=exit_code, command=list(command), failure=failure, details=details)
