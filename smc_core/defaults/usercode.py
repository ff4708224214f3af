"""Default ``fetch_user_code``: the code dir as it is."""

from __future__ import annotations

from smc_core import hookimpl
from smc_core.environment import TrainingEnv
from smc_core.usercode import UserCode, entry_kind, module_name


@hookimpl(trylast=True)
def fetch_user_code(training_env: TrainingEnv) -> UserCode:
    """Describe the code already in ``training_env.code_dir``."""
    code_dir = training_env.code_dir
    entry = training_env.user_entry_point
    kind = entry_kind(code_dir, entry) if entry else entry_kind(code_dir, "")
    return UserCode(code_dir=code_dir, entry_point=entry, kind=kind, module_name=module_name(entry))
