"""Default ``prepare_training``: what accelerator hardware needs whatever the launch style.

On a Neuron host whose platform offers a persistent cache directory (a SageMaker warm pool), the Neuron
compile caches go there (:func:`smc_core.job.accelerators.neuron_cache_variables`). The EFA and NCCL
variables belong to each launcher, which asks :func:`smc_core.job.accelerators.network_variables`.
"""

from __future__ import annotations

from smc_core import hookimpl
from smc_core.job.accelerators import neuron_cache_variables
from smc_core.job.environment import TrainingEnv
from smc_core.usercode.describe import UserCode


@hookimpl(trylast=True)
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> dict[str, str]:
    """The Neuron compile cache variables (none off Neuron hosts, or without a persistent cache)."""
    return neuron_cache_variables(training_env)
