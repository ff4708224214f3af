"""Local mode, ``smc local``: a training job on this machine, on one host or N, apart from what
runs in a container.

:mod:`~smc_core.local.command` (the command), :mod:`~smc_core.local.job` (the job and its directory),
:mod:`~smc_core.local.run` (the one runner), :mod:`~smc_core.local.hosts` and
:mod:`~smc_core.local.netns` (where the hosts live), :mod:`~smc_core.local.output` (one terminal for
many hosts), :mod:`~smc_core.local.checkpoints` (checkpoints kept in step with S3, as the platform
does), :mod:`~smc_core.local.metrics` and :mod:`~smc_core.local.summary`. It starts ``train`` as the
platform would; nothing that runs in a container imports it."""
