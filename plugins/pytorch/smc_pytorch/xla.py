"""PyTorch/XLA multi-worker jobs (``sagemaker_pytorch_xla_multi_worker_enabled``), on the runtime the
installed ``torch_xla`` uses.

* **PJRT** (torch_xla 2.0 and later, the only runtime since XRT was removed): torchrun on every host,
  as for ``sagemaker_torch_distributed_enabled``, with ``PJRT_DEVICE`` for this host's devices:
  ``NEURON`` on Trainium/Inferentia, ``CUDA`` on GPUs (``GPU`` and ``GPU_NUM_DEVICES`` for torch_xla 2.0),
  else ``CPU``. torch_xla's ``xla://`` init method reads the rest from torchrun's variables (``RANK``,
  ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ...). One process per GPU, else per Neuron core,
  else 1, unless the job or ``SMC_PYTORCH_PROCESSES_PER_HOST`` says.
* **XRT** (torch_xla before 2.0): as the reference toolkit (``sagemaker_training/pytorch_xla.py``):
  ``XRT_HOST_ORDINAL``, ``XRT_SHARD_WORLD_SIZE``, ``XRT_WORKERS``, ``GPU_NUM_DEVICES``,
  ``XRT_MESH_SERVICE_ADDRESS`` (several hosts), and ``python -m torch_xla.distributed.xla_spawn
  --num_gpus N`` once per host; GPUs only, and only where the image has SageMaker's ``xla_spawn``.

A ``PJRT_DEVICE`` (or any ``XRT_*`` variable) the job's environment sets is kept. Without ``torch_xla``
installed the job stops at once (exit 2) naming it. Plain functions; ``torch_xla`` is never imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from smc_core import ConfigError, TrainingEnv, logger

XLA_SWITCH = "sagemaker_pytorch_xla_multi_worker_enabled"
"""The SageMaker SDK's ``distribution={"pytorchxla": {"enabled": True}}``."""
MESH_SERVICE_PORT = 53957
"""XRT's mesh service on the master (the reference's port)."""
WORKER_PORT = 43857
"""XRT's worker port on every host (the reference's port)."""
MISSING = (
    f"{XLA_SWITCH} is on, but torch_xla (PyTorch/XLA) is not installed for {{python}}: install it in the "
    "image (pip install torch-xla, matching the image's torch; on Trainium, torch-neuronx brings it), "
    "or use a PyTorch/XLA or Neuron training image, or turn the switch off."
)


@dataclass(frozen=True)
class XlaRuntime:
    """The installed torch_xla and the runtime it uses."""

    version: str
    """torch_xla's version (``2.9.0``), or ``unknown`` when it has no package metadata."""
    runtime: str
    """``PJRT`` or ``XRT``."""


def installed_runtime(python: str = "this interpreter") -> XlaRuntime:
    """The torch_xla importable here and its runtime: XRT before 2.0, else PJRT (also for a torch_xla
    without package metadata, such as a source build).

    :raises ConfigError: torch_xla is not installed (exit 2), naming it and what to install.
    """
    importlib.invalidate_caches()  # requirements.txt may have installed it a moment ago
    if importlib.util.find_spec("torch_xla") is None:
        raise ConfigError(MISSING.format(python=python))
    try:
        version = importlib.metadata.version("torch_xla")
    except importlib.metadata.PackageNotFoundError:
        return XlaRuntime("unknown", "PJRT")
    major = version.split(".")[0]
    return XlaRuntime(version, "XRT" if major.isdigit() and int(major) < 2 else "PJRT")


def pjrt_device(training_env: TrainingEnv, xla: XlaRuntime) -> str:
    """``PJRT_DEVICE`` for this host: ``NEURON``, ``CUDA`` (``GPU`` for torch_xla 2.0) or ``CPU``."""
    if training_env.num_neurons:
        return "NEURON"
    if training_env.num_gpus:
        return "GPU" if xla.version.startswith("2.0") else "CUDA"
    return "CPU"


def pjrt_env(training_env: TrainingEnv, xla: XlaRuntime) -> dict[str, str]:
    """The PJRT variables of a torchrun launch (``PJRT_DEVICE`` ...), less those the job sets."""
    variables = {"PJRT_DEVICE": pjrt_device(training_env, xla)}
    if variables["PJRT_DEVICE"] == "GPU":
        variables["GPU_NUM_DEVICES"] = str(training_env.num_gpus)
    return _not_overriding(training_env, variables)


def xrt_env(training_env: TrainingEnv) -> dict[str, str]:
    """The reference's XRT variables for this host (every host a worker, the master the mesh service)."""
    hosts = list(training_env.distribution_hosts or training_env.hosts)
    variables = {
        "XRT_HOST_ORDINAL": str(hosts.index(training_env.current_host)),
        "XRT_SHARD_WORLD_SIZE": str(len(hosts)),
        "XRT_WORKERS": "|".join(f"localservice:{i};{host}:{WORKER_PORT}" for i, host in enumerate(hosts)),
        "GPU_NUM_DEVICES": str(training_env.num_gpus),
    }
    if len(hosts) > 1:
        variables["XRT_MESH_SERVICE_ADDRESS"] = f"{training_env.master_hostname}:{MESH_SERVICE_PORT}"
    return _not_overriding(training_env, variables)


def xrt_command(training_env: TrainingEnv, python: str, entry: str, args: list[str]) -> list[str]:
    """``python -m torch_xla.distributed.xla_spawn --num_gpus N ENTRY ARGS``, as the reference runs it.

    :raises ConfigError: no GPU (XRT runs on GPUs only), or no ``xla_spawn`` (SageMaker's own module).
    """
    if not training_env.num_gpus:
        raise ConfigError(
            f"{XLA_SWITCH} is on and the installed torch_xla uses the XRT runtime, which runs on GPUs "
            "only, but this host has none: run on a GPU instance, or install torch_xla 2.0 or later "
            "(PJRT, which also runs on CPU and Neuron)."
        )
    if importlib.util.find_spec("torch_xla.distributed.xla_spawn") is None:
        raise ConfigError(
            f"{XLA_SWITCH} is on and the installed torch_xla uses the XRT runtime, but it lacks "
            "torch_xla.distributed.xla_spawn, SageMaker's launcher for it (shipped only in SageMaker "
            "Training Compiler images): use such an image, or install torch_xla 2.0 or later (PJRT)."
        )
    return [
        python,
        "-m",
        "torch_xla.distributed.xla_spawn",
        "--num_gpus",
        str(training_env.num_gpus),
        entry,
        *args,
    ]


def _not_overriding(training_env: TrainingEnv, variables: dict[str, str]) -> dict[str, str]:
    kept = {name: training_env.environ[name] for name in variables if name in training_env.environ}
    if kept:
        logger.info(
            "PyTorch/XLA: kept from the job's environment: %s.", " ".join(f"{k}={v}" for k, v in kept.items())
        )
    return {name: value for name, value in variables.items() if name not in kept}
