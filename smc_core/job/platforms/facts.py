"""One record of what a platform says about a training job: :class:`PlatformFacts`.

Each platform's reader (:mod:`smc_core.job.platforms.sagemaker` with its ModelTrainer layouts,
``kubeflow``, ``vertex``) turns what the platform gives a container (a job directory, an
``sm_drivers`` channel, ``PET_*`` variables, a ``CLUSTER_SPEC``) into one
``PlatformFacts``, and :func:`~smc_core.job.environment.create_environment` reads the job from it: a
fact the record holds replaces what SageMaker's job directory would say, a fact it leaves ``None``
is read from the job directory (or, for the hardware counts, detected on this host), as on SageMaker.
A plugin that reads a platform of its own builds one the same way::

    @hookimpl
    def load_environment(base_dir, environ, settings):
        if "MY_CLUSTER_FILE" not in environ:
            return None
        facts = PlatformFacts(name="my-cluster", resource_config=read_my_cluster(environ["MY_CLUSTER_FILE"]))
        return create_environment(base_dir, environ, settings=settings, platform=facts)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smc_core.job.platforms.modeltrainer import ModelTrainerJob

__all__ = ["PlatformFacts"]


@dataclass(frozen=True)
class PlatformFacts:
    """What a platform says about a training job, in place of SageMaker's job directory.

    Every field but :attr:`name` is optional: None means "read it as on SageMaker" (the job
    directory's config files, or this host's hardware). Tests fix facts the same way, e.g.
    ``PlatformFacts(num_gpus=0)`` for a host whose GPUs must not be counted.
    """

    name: str = "sagemaker"
    """The platform (:attr:`TrainingEnv.platform <smc_core.TrainingEnv.platform>`): ``sagemaker``,
    ``kubeflow``, ``vertex``, or a plugin's own name."""
    hyperparameters: Mapping[str, Any] | None = None
    """The hyperparameters, decoded (as :func:`~smc_core.job.hyperparameters.load_hyperparameters`
    returns them; reserved ``sagemaker_*`` keys included), in place of ``hyperparameters.json``."""
    resource_config: Mapping[str, Any] | None = None
    """The hosts, as ``resourceconfig.json`` lays them out (``current_host``, ``hosts``, optionally
    ``instance_groups`` ...); checked like the file."""
    input_data_config: Mapping[str, Any] | None = None
    """The channels' configuration, in place of ``inputdataconfig.json`` (default with
    :attr:`channel_dirs`: each of them in File mode)."""
    channel_dirs: Mapping[str, Path] | None = None
    """Channel name to its data directory, in place of ``input/data/<name>``."""
    model_dir: Path | None = None
    """The model directory, in place of ``model/``."""
    checkpoint_dir: Path | None = None
    """The checkpoint directory, in place of ``checkpoints/``; the checkpoint config then names it as
    ``LocalPath``."""
    code_dir: Path | None = None
    """Where the user's code is, in place of ``code/`` (a ModelTrainer job's ``code`` channel)."""
    entry_point: str | None = None
    """The entry point when neither ``SAGEMAKER_PROGRAM`` nor ``sagemaker_program`` names one."""
    script_args: tuple[str, ...] | None = None
    """The script's arguments as the container was given them, passed on as they are; None: rendered
    from the hyperparameters, as the contract says."""
    master_port: int | None = None
    """The rendezvous port the platform names (Kubeflow's ``PET_MASTER_PORT``), or None: each
    launcher uses the contract's."""
    processes_per_host: int | None = None
    """Processes per host the platform asks for (``PET_NPROC_PER_NODE``), or None: the launcher decides."""
    distributed_by: str | None = None
    """What, on a platform without ``sagemaker_*`` switches, asks for a distributed launch (e.g.
    ``Kubeflow Trainer's PET_* variables``), or None."""
    num_cpus: int | None = None
    """CPUs this process may use, or None: counted (affinity and cgroup quota)."""
    num_gpus: int | None = None
    """NVIDIA GPUs, or None: counted (``nvidia-smi --list-gpus``)."""
    num_neurons: int | None = None
    """AWS Neuron cores, or None: counted (``neuron-ls -j``)."""
    model_trainer: ModelTrainerJob | None = None
    """The SageMaker Python SDK v3 ``ModelTrainer`` layout the job came as (its ``sm_drivers``
    channel), or None; with one, the distribution hosts are every host, sorted, as the SDK's drivers
    take them (``algo-1`` the master)."""
