"""The MPI launch (``sagemaker_mpi_enabled``): ``mpirun`` over ssh, as a plugin built on the public API.

A default plugin of smc-core (:mod:`smc_core.mpi.plugin`, registered like every default), and the proof
that the adapter API is enough: like pytest's own plugins, which use the hooks external plugins use,
this package imports only names that ``smc_core.__all__`` exports (from the modules that define them),
and ``tests/test_mpi_public_api.py`` checks it. It lives in smc-core, not in a distribution of its own,
because MPI jobs are part of the container contract that smc-core alone honours (the reference toolkit
runs ``sagemaker_mpi_enabled`` jobs with no framework adapter installed).

* :mod:`smc_core.mpi.plugin`: the hooks (settings, the switch, ``invoke_train``);
* :mod:`smc_core.mpi.launch`: ``mpirun``'s command, the master and the workers over the job's channel;
* :mod:`smc_core.mpi.rank`: what ``mpirun`` starts for every rank;
* :mod:`smc_core.mpi.sshd`: the job's own sshd and keys;
* :mod:`smc_core.mpi.smddp`: SageMaker's distributed data parallel library, launched over the MPI
  launch (a default plugin of its own).
"""
