"""Default ``prepare_training``: export the SM_* variables."""

from __future__ import annotations

from smc_core import hookimpl
from smc_core.environment import TrainingEnv
from smc_core.usercode import UserCode


@hookimpl(trylast=True)
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> dict[str, str]:
    """The variables every user process gets."""
    return {
        "SM_MODEL_DIR": str(training_env.model_dir),
        "SM_OUTPUT_DATA_DIR": str(training_env.output_data_dir),
        "SM_CURRENT_HOST": training_env.current_host,
        "PYTHONUNBUFFERED": "1",
    }
