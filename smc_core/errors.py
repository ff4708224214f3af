"""The errors smc raises, and the exit code each one maps to.

Every expected failure is an :class:`SmcError`: the runner shows its message without a traceback,
writes it to ``output/failure`` (first line ``<kind>: <message>``, second ``ExitCode N``) and exits
with its ``exit_code``. Any other exception is logged with its traceback: when a plugin's own code
raised it (the innermost smc or plugin frame of the traceback is the plugin's), it is that plugin's
failure and the job exits 3 naming the plugin; otherwise smc itself crashed, a bug: the failure
file's first line says ``InternalError: internal error ...`` (exit 1).

=====  ================================================================  ===========================
code   meaning                                                           failure file's first line
=====  ================================================================  ===========================
0      the training job succeeded                                        none: ``output/success``
1      the user's code failed and gave no exit code of its own           ``UserCodeError: ...``
1      smc itself crashed (a bug; the traceback is in the log)           ``InternalError: internal
                                                                         error ...``
2      the job configuration is wrong (a config file, a hyperparameter,  ``ConfigError: ...``
       a setting), or the job dir is missing, read-only or busy
3      a plugin failed to load, broke the hook contract, or raised an    ``PluginError: ...``
       exception of its own
4      the user's code could not be fetched (S3 unreachable, a missing   ``FetchError: ...``
       object, a truncated, corrupt or hostile archive)
5      the user's requirements or package could not be installed         ``InstallError: ...``
6      the cluster did not come together, or lost a host: a peer host    ``ClusterError: ...``
       did not resolve or join; a host's smc died, or it fell silent
       for ``SMC_LIVENESS_TIMEOUT`` (the failure file names it and how)
7      the job stalled: no progress on any host for the stall timeout    ``StallError: ...``
       (``SMC_STALL_TIMEOUT``), every host still there; every rank's
       stacks are in the log
128+S  the job was stopped by signal S, in any phase, on this host or    ``JobStopped: ...``
       on another that told every host, whatever the user's code
       exited with afterwards (a checkpoint it saved is kept)
N      any other code is the user's own process's exit code, kept as     ``UserCodeError: ...``
       it was; killed by signal S: ``128 + S`` (137: SIGKILL, its cause
       named when known: smc's grace period or its own stop, the OOM
       killer)
=====  ================================================================  ===========================

**User exit codes 2-7 overlap smc's own.** A user's script that exits 2 (argparse does, for a bad
argument) ends the job with exit code 2 as a configuration error does: the failure file's first
line tells them apart (``UserCodeError`` for the user's code, the kinds above for smc's).
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ConfigError",
    "FetchError",
    "InstallError",
    "PluginError",
    "SmcError",
    "StallError",
    "UserCodeError",
]


class SmcError(Exception):
    """Base of every expected error: shown to the user without a traceback.

    Attributes:
        exit_code: the process exit code the runner uses for this error.
        kind: a short name for the first line of the failure file.
    """

    exit_code: int = 1
    kind: str = "SmcError"

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        """The explanation given when the error was raised."""
        return str(self.args[0]) if self.args else ""


class ConfigError(SmcError):
    """The job's configuration (a config file, a hyperparameter, an env var) is wrong."""

    exit_code = 2
    kind = "ConfigError"


class PluginError(SmcError):
    """A plugin failed to load, was ambiguous, or broke the hook contract."""

    exit_code = 3
    kind = "PluginError"


class FetchError(SmcError):
    """The user's code could not be fetched or safely extracted."""

    exit_code = 4
    kind = "FetchError"


class InstallError(SmcError):
    """The user's requirements or package could not be installed."""

    exit_code = 5
    kind = "InstallError"


class ClusterError(SmcError):
    """A peer host did not resolve, or did not accept connections, within the bound; or the job lost a
    host while it ran (its smc died, or it fell silent for ``SMC_LIVENESS_TIMEOUT``)."""

    exit_code = 6
    kind = "ClusterError"


class UserCodeError(SmcError):
    """The user's training code failed; ``exit_code`` is the user's own code where there is one."""

    exit_code = 1
    kind = "UserCodeError"


class StallError(SmcError):
    """The job made no progress on any host for the stall timeout (``SMC_STALL_TIMEOUT``): smc read
    every rank's stacks and ended the job on every host; the message says where each rank was."""

    exit_code = 7
    kind = "StallError"
