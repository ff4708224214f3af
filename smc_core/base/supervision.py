"""The supervision policy: the bounds every launch obeys, built once from the job's settings.

The runner builds one :class:`Supervision` from the parsed settings (``training_env.supervision``) and
applies it for the whole job (:func:`apply_supervision`). Every supervised process
(:func:`~smc_core.launch.process.run_process`, :func:`~smc_core.launch.process.start_process`) and every
wait for peers (:func:`~smc_core.cluster.network.wait_for_hosts`, the job's channel) takes its bounds
from the applied policy unless handed another one, so no launch style can drop a bound by forgetting
to pass it:

=====================  =========================  ===============================================
field                  setting                    what it bounds
=====================  =========================  ===============================================
``grace_period``       ``SMC_GRACE_PERIOD``       from passing on a stop signal smc received
                                                  (SIGTERM, SIGINT) to the user's processes, to
                                                  SIGKILL of every one of them
``peer_stop_grace``    ``SMC_PEER_STOP_GRACE``    from SIGTERM to SIGKILL when smc stops
                                                  processes because the job failed elsewhere (a
                                                  peer host, another rank of this host)
``leftover_grace``     ``SMC_LEFTOVER_GRACE``     from SIGTERM to SIGKILL for processes left
                                                  running once the user's process ended, and for
                                                  smc's own helpers (an sshd, a parameter server)
                                                  once the job is over
``host_wait_timeout``  ``SMC_HOST_WAIT_TIMEOUT``  every wait for a peer host: its name to resolve,
                                                  its port to open, it to join the job's channel
``liveness_timeout``   ``SMC_LIVENESS_TIMEOUT``   how long a host of a running job may go unheard
                                                  on the job's channel before the others take it
                                                  as lost (heartbeats every sixth of it)
=====================  =========================  ===============================================

**Why 30 s for** ``SMC_LIVENESS_TIMEOUT``: a host whose smc dies is known at once (its connection
closes); the bound is for a host that falls silent (a network partition, a hung NIC, a frozen
instance). Six heartbeats missed in a row ride out what is not a loss (a long garbage-collection
pause, a CPU saturated by data loading, a brief network blip) and the whole job still ends in well
under a minute, where the frameworks' own timeouts wait 30 minutes (NCCL's, gloo's). It is of the same
order as PyTorch elastic's rendezvous keep-alive (3 missed beats of 5 s) and Kubernetes' node
monitor grace (40 s).

**A plugin adds a field of its own** by declaring a seconds setting with ``policy=True``; the policy
then carries its value, read by the launch as ``training_env.supervision[SETTING]``::

    PEER_WAIT = Setting.seconds("SMC_MYFW_PEER_WAIT", 600.0, "seconds ...", owner="smc-myfw",
                                policy=True)

    @hookimpl
    def register_settings():
        return [PEER_WAIT]

    @hookimpl
    def invoke_train(training_env, user_code, process_env):
        bound = training_env.supervision[PEER_WAIT]  # the job's value, parsed once at start

Outside a job (a test, a script that uses smc's functions alone) the applied policy is the settings'
defaults; pass ``supervision=Supervision(grace_period=2)`` to a function to use another.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from smc_core.base.settings import (
    GRACE_PERIOD,
    HOST_WAIT_TIMEOUT,
    LEFTOVER_GRACE,
    LIVENESS_TIMEOUT,
    PEER_STOP_GRACE,
    Setting,
    Settings,
)

__all__ = ["Supervision", "applied_supervision", "apply_supervision"]

_CORE_FIELDS: Mapping[str, Setting[Any]] = {
    "grace_period": GRACE_PERIOD,
    "peer_stop_grace": PEER_STOP_GRACE,
    "leftover_grace": LEFTOVER_GRACE,
    "host_wait_timeout": HOST_WAIT_TIMEOUT,
    "liveness_timeout": LIVENESS_TIMEOUT,
}


@dataclass(frozen=True)
class Supervision:
    """The bounds every launch of a job obeys (see the module docstring); immutable.

    Attributes:
        grace_period: seconds from passing on a stop signal to SIGKILL (``SMC_GRACE_PERIOD``).
        peer_stop_grace: seconds from SIGTERM to SIGKILL when smc stops this host's processes because
            the job failed elsewhere (``SMC_PEER_STOP_GRACE``).
        leftover_grace: seconds from SIGTERM to SIGKILL for what is left running once a process ended,
            and for smc's own helpers at the end (``SMC_LEFTOVER_GRACE``).
        host_wait_timeout: seconds any wait for a peer host lasts (``SMC_HOST_WAIT_TIMEOUT``).
        liveness_timeout: seconds a host of a running job may go unheard before the others take it as
            lost (``SMC_LIVENESS_TIMEOUT``).
        declared: the plugins' own policy fields, by setting name (settings declared ``policy=True``).
    """

    grace_period: float = GRACE_PERIOD.default
    peer_stop_grace: float = PEER_STOP_GRACE.default
    leftover_grace: float = LEFTOVER_GRACE.default
    host_wait_timeout: float = HOST_WAIT_TIMEOUT.default
    liveness_timeout: float = LIVENESS_TIMEOUT.default
    declared: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Supervision:
        """The policy of a job whose parsed settings are ``settings``: the core's fields, and every
        declared setting marked ``policy=True`` (a plugin's own)."""
        core = {name: settings[setting] for name, setting in _CORE_FIELDS.items()}
        core_names = {setting.name for setting in _CORE_FIELDS.values()}
        declared = {
            setting.name: settings[setting]
            for setting in settings.declared
            if setting.policy and setting.name not in core_names
        }
        return cls(**core, declared=declared)

    def __getitem__(self, setting: Setting[Any] | str) -> Any:
        """The value of a policy field by its setting (``supervision[GRACE_PERIOD]``, a plugin's own).

        :raises KeyError: naming the setting, when it is no field of this policy (not declared
            ``policy=True``, or its plugin is not loaded).
        """
        name = setting if isinstance(setting, str) else setting.name
        for field_name, core in _CORE_FIELDS.items():
            if core.name == name:
                return getattr(self, field_name)
        if name in self.declared:
            return self.declared[name]
        raise KeyError(
            f"{name} is not a field of the job's supervision policy (fields: {', '.join(self.settings())}): "
            "declare it with Setting.seconds(..., policy=True) in the plugin's register_settings."
        )

    def settings(self) -> dict[str, Any]:
        """Every field by its setting's name, the core's first: what the job's log shows at start."""
        fields = {setting.name: getattr(self, name) for name, setting in _CORE_FIELDS.items()}
        return {**fields, **self.declared}

    def describe(self) -> str:
        """One line for the log: ``SMC_GRACE_PERIOD=100 s, SMC_PEER_STOP_GRACE=1 s, ...``."""
        return ", ".join(f"{name}={value:g} s" for name, value in self.settings().items())


_lock = threading.Lock()
_applied: list[Supervision] = []


def applied_supervision() -> Supervision:
    """The policy the runner applies to the job now running (:func:`apply_supervision`); outside a
    job, the settings' defaults."""
    with _lock:
        return _applied[-1] if _applied else Supervision()


@contextlib.contextmanager
def apply_supervision(policy: Supervision) -> Iterator[Supervision]:
    """Apply ``policy`` while inside: processes started and waits begun then obey it when they are
    handed no policy of their own. Nestable; the runner applies the job's for the whole job."""
    with _lock:
        _applied.append(policy)
    try:
        yield policy
    finally:
        with _lock:
            _applied.remove(policy)
