"""Default ``prepare_training``: export the ``SM_*`` variables and the process-wide ones."""

from __future__ import annotations

from smc_core import hookimpl
from smc_core.job.environment import TrainingEnv
from smc_core.job.exports import exported_vars
from smc_core.usercode.describe import UserCode


@hookimpl(trylast=True)
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> dict[str, str]:
    """The variables every user process gets (see :func:`smc_core.job.exports.exported_vars`).

    ``PYTHONPATH`` puts the code dir first and keeps the inherited path; ``PYTHONUNBUFFERED=1``
    is set only when the environment does not set it already.
    """
    return exported_vars(training_env, user_code)
