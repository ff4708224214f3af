"""What a launch on accelerator and network hardware adds to the user's environment: the EFA and NCCL
variables the reference toolkit sets for each launcher, and the Neuron compile cache.

Each hardware fact comes from :class:`~smc_core.job.environment.TrainingEnv` (``training_env.efa``,
``num_gpus``, ``num_neurons``, ``persistent_cache_dir``), read once by :mod:`smc_core.job.hardware`.
A variable the job's own environment (``training_env.environ``) already sets is never replaced: it is
left out of what these functions return, and the log says it was kept.

============  ===============  ==========================  ===================  ================
launcher      ``FI_PROVIDER``  ``FI_EFA_USE_DEVICE_RDMA``  ``RDMAV_FORK_SAFE``  ``NCCL_PROTO``
============  ===============  ==========================  ===================  ================
``torchrun``  efa, with EFA    1, with device RDMA         1, with device RDMA  simple, always
``mpi``       efa, with EFA    1, with device RDMA         never                simple, with EFA
``smddp``     efa, always      1, with device RDMA         1, always            simple, with EFA
``xla``       efa, with EFA    1, with device RDMA         1, with device RDMA  simple, always
============  ===============  ==========================  ===================  ================

``xla`` also gets ``OFI_NCCL_NIC_DUP_CONNS`` (the GPU count) on EFA hosts with GPUs, as the reference
sets it. The rows are the reference's (``torch_distributed.py``, ``mpi.py``, ``smdataparallel.py``,
``pytorch_xla.py``), with two differences, both for hardware the reference's lists do not know: EFA
and device RDMA come from :func:`~smc_core.job.hardware.detect_efa`, and ``xla`` asks for device RDMA
only where the device has it (the reference asks always, and libfabric aborts on a device without it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from smc_core.errors import ConfigError
from smc_core.job.environment import TrainingEnv

__all__ = ["LAUNCHERS", "NEURON_CACHE_SUBDIRS", "network_variables", "neuron_cache_variables"]

logger = logging.getLogger("smc")

LAUNCHERS = ("torchrun", "mpi", "smddp", "xla")
"""The launch styles :func:`network_variables` knows."""

NEURON_CACHE_SUBDIRS: Mapping[str, str] = {
    "NEURON_COMPILE_CACHE_URL": "neuron-compile-cache",
    "TORCH_NEURONX_NEFF_CACHE_DIR": "neuron-neff-cache",
}
"""Each Neuron compile cache variable, and its folder in the persistent cache directory:
``NEURON_COMPILE_CACHE_URL`` for torch-neuronx on PyTorch/XLA (Trn1, Inf2), ``TORCH_NEURONX_NEFF_CACHE_DIR``
for TorchNeuron's native backend (Trn2, Trn3)."""


def _wanted(training_env: TrainingEnv, launcher: str) -> dict[str, str]:
    efa = training_env.efa
    wanted: dict[str, str] = {}
    if efa.present or launcher == "smddp":
        wanted["FI_PROVIDER"] = "efa"
    if efa.rdma:
        wanted["FI_EFA_USE_DEVICE_RDMA"] = "1"
    if (efa.rdma and launcher in ("torchrun", "xla")) or launcher == "smddp":
        wanted["RDMAV_FORK_SAFE"] = "1"
    if launcher in ("torchrun", "xla") or efa.present:
        wanted["NCCL_PROTO"] = "simple"
    if launcher == "xla" and efa.present and training_env.num_gpus:
        wanted["OFI_NCCL_NIC_DUP_CONNS"] = str(training_env.num_gpus)
    return wanted


def network_variables(training_env: TrainingEnv, launcher: str) -> dict[str, str]:
    """The EFA and NCCL variables ``launcher`` gets on this host (see the table above), less those
    the job's environment already sets; logs what was found, what is set and what is kept.

    :param launcher: one of :data:`LAUNCHERS` (``torchrun``, ``mpi``, ``smddp``, ``xla``).
    :raises ConfigError: an unknown ``launcher``.
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"network_variables: launcher {launcher!r} is not one of {', '.join(LAUNCHERS)}.")
    wanted = _wanted(training_env, launcher)
    kept = {name: training_env.environ[name] for name in wanted if name in training_env.environ}
    chosen = {name: value for name, value in wanted.items() if name not in kept}
    sets = " ".join(f"{k}={v}" for k, v in chosen.items()) or "nothing"
    line = f"Network for {launcher}: {training_env.efa.describe()}; sets {sets}"
    if kept:
        line += "; kept from the job's environment: " + " ".join(f"{k}={v}" for k, v in kept.items())
    logger.info("%s.", line)
    return chosen


def _sets_cache(name: str, environ: Mapping[str, str]) -> bool:
    """Whether the job's environment already chooses (or turns off) the cache that ``name`` sets."""
    if environ.get(name, "").strip():
        return True
    if name == "NEURON_COMPILE_CACHE_URL":
        flags = environ.get("NEURON_CC_FLAGS", "")
        return "--cache_dir" in flags or "--no_cache" in flags
    return environ.get("TORCH_NEURONX_NEFF_DISABLE_CACHE", "").strip().lower() in ("1", "true", "yes")


def neuron_cache_variables(training_env: TrainingEnv) -> dict[str, str]:
    """On a Neuron host (``num_neurons`` > 0) whose platform offers a persistent cache directory (a
    SageMaker warm pool's, :attr:`TrainingEnv.persistent_cache_dir`): the Neuron compile caches in it
    (:data:`NEURON_CACHE_SUBDIRS`), so the next job on the warm pool skips compiling the same graphs.

    A cache the job already chooses is kept: ``NEURON_COMPILE_CACHE_URL`` set, or ``--cache_dir`` /
    ``--no_cache`` in ``NEURON_CC_FLAGS`` (which the Neuron docs rank above the variable);
    ``TORCH_NEURONX_NEFF_CACHE_DIR`` set, or ``TORCH_NEURONX_NEFF_DISABLE_CACHE`` on. Elsewhere nothing
    is set, and Neuron keeps its default (``/var/tmp/neuron-compile-cache``), which lasts one job.
    """
    if not training_env.num_neurons:
        return {}
    cache: Path | None = training_env.persistent_cache_dir
    if cache is None:
        logger.info(
            "Neuron: no persistent cache directory here (no warm pool: %s does not exist), so the compile "
            "cache stays where Neuron puts it and lasts this job only.",
            training_env.paths.warm_pool_cache_dir,
        )
        return {}
    chosen: dict[str, str] = {}
    for name, folder in NEURON_CACHE_SUBDIRS.items():
        if _sets_cache(name, training_env.environ):
            logger.info("Neuron: the job's environment chooses the cache %s sets: kept.", name)
            continue
        chosen[name] = str(cache / folder)
    if chosen:
        logger.info(
            "Neuron: compile caches in the warm pool's persistent cache: %s.",
            " ".join(f"{k}={v}" for k, v in chosen.items()),
        )
    return chosen
