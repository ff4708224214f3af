"""What a long job asks of smc: stall detection, restarts, how stacks are read (:class:`LongJobPolicy`).

Each is a setting of the image (``SMC_STALL_TIMEOUT``, ``SMC_STALL_PROGRESS``, ``SMC_MAX_RESTARTS``,
``SMC_STACKS``) that a job may override with a hyperparameter, so that it can be asked for from the
SageMaker SDK (``hyperparameters={"sagemaker_stall_timeout": 1800, "sagemaker_max_restarts": 2}``):
the job's hyperparameter wins over the image's setting. Being ``sagemaker_*`` keys, they never reach
the script's arguments. Both are off by default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smc_core.base.messages import quoted, summary_line, type_name
from smc_core.base.settings import MAX_RESTARTS, STACKS, STALL_PROGRESS, STALL_TIMEOUT, Settings
from smc_core.errors import ConfigError

__all__ = [
    "MAX_RESTARTS_HYPERPARAMETER",
    "STALL_PROGRESS_HYPERPARAMETER",
    "STALL_TIMEOUT_HYPERPARAMETER",
    "LongJobPolicy",
    "deterministic_error",
    "long_job_policy",
]

STALL_TIMEOUT_HYPERPARAMETER = "sagemaker_stall_timeout"
STALL_PROGRESS_HYPERPARAMETER = "sagemaker_stall_progress"
MAX_RESTARTS_HYPERPARAMETER = "sagemaker_max_restarts"


@dataclass(frozen=True)
class LongJobPolicy:
    """Stall detection and restarts, as the job asks for them.

    Attributes:
        stall_timeout: seconds without progress on any host that make a stall; None: not watched.
        stall_progress: only output lines it matches count as progress (None: any line).
        max_restarts: how many times the user's code may be restarted after a failure (0: never).
        stacks: how stacks are read: ``auto``, ``py-spy`` or ``faulthandler`` (``SMC_STACKS``).
        stall_timeout_from: where the stall timeout came from, for messages.
        max_restarts_from: where the restart count came from, for messages.
    """

    stall_timeout: float | None = None
    stall_progress: re.Pattern[str] | None = None
    max_restarts: int = 0
    stacks: str = "auto"
    stall_timeout_from: str = STALL_TIMEOUT.name
    max_restarts_from: str = MAX_RESTARTS.name

    def describe(self) -> str:
        """One line for the log."""
        parts = []
        if self.stall_timeout:
            what = f"lines matching {self.stall_progress.pattern!r}" if self.stall_progress else "any line"
            parts.append(
                f"stalls watched: {self.stall_timeout:g} s without progress ({what} of any rank, or a "
                "file written under the model, checkpoint or output dirs) ends the job "
                f"({self.stall_timeout_from})"
            )
        if self.max_restarts:
            parts.append(f"up to {self.max_restarts} restart(s) after a failure ({self.max_restarts_from})")
        return "; ".join(parts) or "no stall watch, no restarts"


DETERMINISTIC = re.compile(
    r"^(?:[\w.]+\.)?(SyntaxError|IndentationError|TabError|ImportError|ModuleNotFoundError|NameError)\b"
)
"""The exceptions that fail again the same way when the code is run again."""


def deterministic_error(failure: str | None, exit_code: int = 1) -> str | None:
    """Why a failure whose stderr tail is ``failure`` would happen again on a restart (the code's own
    ``SyntaxError``, ``ImportError``, ``NameError`` ..., an argument argparse refused), else None: a
    restart may help (a lost peer, a signal, a collective's timeout, anything else)."""
    summary = summary_line(failure) or ""
    found = DETERMINISTIC.match(summary)
    if found:
        return f"it is the code's own {found.group(1)}, which a restart would raise again"
    if exit_code == 2 and "usage:" in (failure or ""):
        return "its arguments were refused (argparse's usage error), which a restart would refuse again"
    return None


def _bad(key: str, value: Any, what: str, example: str) -> ConfigError:
    return ConfigError(
        f"hyperparameters.json: {key!r} is {quoted(value)} ({type_name(value)}), but it takes {what}: "
        f"pass e.g. {example}, or remove it for the image's setting."
    )


def _seconds(key: str, value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _bad(key, value, "a number of seconds > 0 (0 turns it off)", "1800") from None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise _bad(key, value, "a number of seconds > 0 (0 turns it off)", "1800")
    return float(value) or None


def _count(key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise _bad(key, value, "a whole number from 0 to 100", "2")
    return value


def _pattern(key: str, value: Any) -> re.Pattern[str] | None:
    if not isinstance(value, str):
        raise _bad(key, value, "a regular expression (a string)", '"step [0-9]+"')
    try:
        return re.compile(value) if value else None
    except re.error as error:
        raise ConfigError(
            f"hyperparameters.json: {key!r} is {quoted(value)}, which is not a valid regular expression "
            f'({error}): fix it, e.g. "step [0-9]+".'
        ) from None


def long_job_policy(settings: Settings, framework_parameters: Mapping[str, Any]) -> LongJobPolicy:
    """The policy of a job: each hyperparameter (``sagemaker_stall_timeout``,
    ``sagemaker_stall_progress``, ``sagemaker_max_restarts``) where the job sets it, else the setting.

    :raises ConfigError: a hyperparameter's value is not accepted (naming it, the value and an example).
    """
    timeout: float | None = settings[STALL_TIMEOUT]
    timeout_from = STALL_TIMEOUT.name
    if STALL_TIMEOUT_HYPERPARAMETER in framework_parameters:
        timeout = _seconds(STALL_TIMEOUT_HYPERPARAMETER, framework_parameters[STALL_TIMEOUT_HYPERPARAMETER])
        timeout_from = f"the hyperparameter {STALL_TIMEOUT_HYPERPARAMETER}"
    progress: re.Pattern[str] | None = settings[STALL_PROGRESS]
    if STALL_PROGRESS_HYPERPARAMETER in framework_parameters:
        raw = framework_parameters[STALL_PROGRESS_HYPERPARAMETER]
        progress = _pattern(STALL_PROGRESS_HYPERPARAMETER, raw)
    restarts: int = settings[MAX_RESTARTS]
    restarts_from = MAX_RESTARTS.name
    if MAX_RESTARTS_HYPERPARAMETER in framework_parameters:
        restarts = _count(MAX_RESTARTS_HYPERPARAMETER, framework_parameters[MAX_RESTARTS_HYPERPARAMETER])
        restarts_from = f"the hyperparameter {MAX_RESTARTS_HYPERPARAMETER}"
    return LongJobPolicy(timeout, progress, restarts, settings[STACKS], timeout_from, restarts_from)
