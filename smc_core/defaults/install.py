"""Default ``prepare_training`` part one: install what the user's code needs."""

from __future__ import annotations

from smc_core import hookimpl
from smc_core.environment import TrainingEnv
from smc_core.usercode import UserCode


@hookimpl(trylast=True)
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> None:
    """Install ``requirements.txt`` from the code dir (filled in by the user-code pipeline)."""
    return None
