"""The ``train`` command's entry point: stop signals are held before anything else is imported.

A platform stops a job by signalling ``train``, and may do so at once (``docker stop`` on a
container that just started). Importing smc takes tenths of a second, during which a stop signal
would have its default action: as a container's PID 1 the kernel drops it (the engine's SIGKILL
follows after its timeout, with no outcome), as any other process ``train`` dies without one. So
this module imports only the standard library and :mod:`smc_core.base.stopping`, holds the stop
signals (:func:`~smc_core.base.stopping.catch_early_stops`), and then runs
:func:`smc_core.cli.main.train_main`, whose runner reports a held signal as the job's stop.
"""

from __future__ import annotations

from smc_core.base.stopping import catch_early_stops


def main() -> int:
    """The ``train`` console script: :func:`~smc_core.cli.main.train_main`, stops held from the start."""
    catch_early_stops()
    from smc_core.cli.main import train_main  # after the signals are held: the imports take time

    return train_main()
