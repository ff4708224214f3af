"""smc's ``sitecustomize`` (not imported as a package: its folder goes first on the job's ``PYTHONPATH``
where faulthandler is armed; see :mod:`smc_core.launch.stacks`)."""
