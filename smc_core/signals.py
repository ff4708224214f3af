"""Exit codes and signals: how a process death is described to the user."""

from __future__ import annotations

import signal

SIGNAL_HINTS = {
    signal.SIGKILL: "killed (SIGKILL), most likely by the out-of-memory killer: use a larger instance "
    "or a smaller batch size",
    signal.SIGTERM: "terminated (SIGTERM): the job was stopped, or the instance is being reclaimed",
    signal.SIGSEGV: "a segmentation fault (SIGSEGV), usually in a native extension",
    signal.SIGABRT: "aborted (SIGABRT), usually by a failed assertion in native code",
    signal.SIGINT: "interrupted (SIGINT)",
}


def exit_code_of(returncode: int) -> int:
    """A ``subprocess`` return code as a shell reports it: death by signal S becomes ``128 + S``."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit_code(exit_code: int) -> str:
    """``exit code 137: killed (SIGKILL), most likely by the out-of-memory killer ...``."""
    if exit_code > 128:
        try:
            sig = signal.Signals(exit_code - 128)
        except ValueError:
            return f"exit code {exit_code}"
        hint = SIGNAL_HINTS.get(sig, f"killed by {sig.name}")
        return f"exit code {exit_code}: {hint}"
    return f"exit code {exit_code}"
