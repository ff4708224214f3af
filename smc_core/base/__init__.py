"""The bottom layer: the settings registry, the messages' wording and the logger.

Everything else in smc imports these; they import nothing of smc but :mod:`smc_core.errors`."""
