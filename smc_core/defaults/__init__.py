"""The built-in behaviour, as ordinary plugins registered ``trylast`` so that anything else wins."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "smc_core.defaults.environment",
    "smc_core.defaults.kubeflow",
    "smc_core.defaults.vertex",
    "smc_core.defaults.usercode",
    "smc_core.defaults.exports",
    "smc_core.defaults.accelerators",
    "smc_core.defaults.install",
    # before invoke: among trylast implementations the one registered first is called first
    "smc_core.defaults.mpi",
    "smc_core.defaults.smddp",
    "smc_core.defaults.invoke",
    "smc_core.defaults.intermediate",
    "smc_core.defaults.reporting",
)
"""Module names of the default plugins, registered in this order by ``get_plugin_manager``."""
