"""The command line: ``train`` and ``smc`` (``smc local`` is :mod:`smc_core.local`'s)."""
