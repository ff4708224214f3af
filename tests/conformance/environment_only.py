"""A plugin for the conformance suite: claims every distribution switch without launching anything.

The suite checks the environment a user's script sees (SM_* values, argv, working directory) for jobs
that the SDK writes with distribution switches on; the launch itself is each adapter's own suite's
business. Claiming the switches here keeps those jobs running as one plain process, as they did in
the reference toolkit that produced the golden values.
"""

from smc_core import hookimpl

CONTRACT_SWITCHES = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)


@hookimpl
def claim_switches():
    return CONTRACT_SWITCHES
