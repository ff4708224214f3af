"""The cluster toolkit: what every launch style that spans hosts shares (public, from ``smc_core``).

* :mod:`smc_core.cluster.channel`: the job's channel, JSON lines over TCP between the smc processes of a
  job: the master's end (:class:`~smc_core.cluster.channel.ChannelMaster`), a host's link
  (:class:`~smc_core.cluster.channel.ChannelLink`), typed messages (:mod:`smc_core.cluster.messages`)
  and a launch style's own, requests and bounded gathers, a goodbye told apart from a lost peer;
* :mod:`smc_core.cluster.job`: the channel the core opens for every job
  (:func:`~smc_core.cluster.job.job_channel`);
* :mod:`smc_core.cluster.report`: the failing-rank report, one budget everywhere;
* :mod:`smc_core.cluster.group`: the ranks of one host launched together, the first to fail named
  (:func:`~smc_core.cluster.group.run_ranks`);
* :mod:`smc_core.cluster.waits`: :func:`~smc_core.cluster.waits.wait_until`, the one bounded wait with
  progress lines;
* :mod:`smc_core.cluster.network`: waiting for peer hosts and ports, this host's interfaces.

It sits above :mod:`smc_core.launch` and below the host (the runner opens the job's channel) and the
plugins that use it (:mod:`smc_core.mpi`, the adapters).
"""
