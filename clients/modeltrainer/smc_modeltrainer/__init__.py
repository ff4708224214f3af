"""Run SageMaker Python SDK v3 ``ModelTrainer`` jobs through smc: ``distributed=Smc(...)``.

``ModelTrainer`` replaces the image's entry point with its own ``sm_train.sh``, which runs the
``DistributedConfig``'s driver. :class:`Smc` is a ``DistributedConfig`` whose driver hands the job
over to the image's ``train`` (smc), so the job keeps ``source_code=SourceCode(...)`` and runs
through smc, launched as ``launch`` asks::

    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import SourceCode
    from smc_modeltrainer import Smc

    trainer = ModelTrainer(
        training_image=SMC_IMAGE,
        source_code=SourceCode(source_dir="src", entry_script="train.py", requirements="requirements.txt"),
        distributed=Smc(launch="torchrun", process_count_per_node=2),
        ...
    )

Install it where ``ModelTrainer`` runs (``pip install smc-modeltrainer``); the image needs smc-core.
This module imports the SDK; smc-core never imports it.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator
from sagemaker.train.distributed import DistributedConfig

__all__ = ["DRIVER_DIR", "DRIVER_SCRIPT", "Smc"]

DRIVER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "driver")
"""The folder the SDK copies into the job's ``sm_drivers/distributed_drivers``: the driver alone."""
DRIVER_SCRIPT = "smc_driver.py"
"""The driver ``sm_train.sh`` runs: it hands the job over to the image's ``train``."""


class Smc(DistributedConfig):
    """Run the job through smc's ``train``, launched as ``launch`` says.

    Parameters:
        launch: ``"torchrun"`` (smc-pytorch's torchrun on every host), ``"mpi"`` (smc's ``mpirun``
            from the first host over ssh, ``-np`` = hosts x ``process_count_per_node``), or None
            (the entry script once per host).
        process_count_per_node: processes per host for ``torchrun`` and ``mpi``; default: the GPU
            count, else 1.
        mpi_additional_options: ``mpirun`` arguments, one per item (``["-x", "NCCL_DEBUG=WARN"]``);
            ``mpi`` only.

    The config is written to the job's ``sm_drivers/distributed.json`` with ``driver: "smc"``, which is
    how smc recognises it.
    """

    driver: Literal["smc"] = "smc"
    launch: Literal["torchrun", "mpi"] | None = None
    process_count_per_node: int | None = Field(default=None, ge=1)
    mpi_additional_options: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> Smc:
        if self.launch is None and self.process_count_per_node is not None:
            raise ValueError(
                "process_count_per_node needs a launch: "
                "Smc(launch='torchrun' or 'mpi', process_count_per_node=N)"
            )
        if self.mpi_additional_options and self.launch != "mpi":
            raise ValueError("mpi_additional_options are for launch='mpi' only")
        return self

    @property
    def driver_dir(self) -> str:
        """The folder holding the driver, which the SDK copies into ``sm_drivers/distributed_drivers``."""
        return DRIVER_DIR

    @property
    def driver_script(self) -> str:
        """The driver ``sm_train.sh`` runs (``smc_driver.py``)."""
        return DRIVER_SCRIPT
