"""The job directory's layout: ``/opt/ml`` (or ``$SAGEMAKER_BASE_DIR``) and the paths under it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_BASE_DIR",
    "WARM_POOL_CACHE_VARIABLE",
    "JobPaths",
    "base_dir",
    "job_paths",
    "persistent_cache_dir",
]

DEFAULT_BASE_DIR = "/opt/ml"
WARM_POOL_CACHE_VARIABLE = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"
"""Where SageMaker says the warm pool's persistent cache directory is, when the job has one."""


def base_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The job directory: ``$SAGEMAKER_BASE_DIR`` when set, else ``/opt/ml`` (made absolute)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR).absolute()


@dataclass(frozen=True)
class JobPaths:
    """The paths of the job directory, all derived from its base (``/opt/ml``)."""

    base_dir: Path
    custom_model_dir: Path | None = None
    """Where the model goes when the platform says so (``AIP_MODEL_DIR``, ``SMC_MODEL_DIR``),
    else None: ``model/``."""
    custom_checkpoint_dir: Path | None = None
    """Where checkpoints go when the platform says so (``AIP_CHECKPOINT_DIR``); else ``checkpoints/``."""
    custom_code_dir: Path | None = None
    """Where the user's code is when the job says so (a ModelTrainer job's ``code`` channel), else
    None: ``code/``."""

    @property
    def input_dir(self) -> Path:
        """``input/``: configuration and data the platform provides."""
        return self.base_dir / "input"

    @property
    def input_config_dir(self) -> Path:
        """``input/config/``: hyperparameters.json, resourceconfig.json, inputdataconfig.json."""
        return self.base_dir / "input" / "config"

    @property
    def input_data_dir(self) -> Path:
        """``input/data/``: one directory (File mode) or FIFOs (Pipe mode) per channel."""
        return self.base_dir / "input" / "data"

    @property
    def hyperparameters_file(self) -> Path:
        """``input/config/hyperparameters.json``."""
        return self.input_config_dir / "hyperparameters.json"

    @property
    def resource_config_file(self) -> Path:
        """``input/config/resourceconfig.json``."""
        return self.input_config_dir / "resourceconfig.json"

    @property
    def input_data_config_file(self) -> Path:
        """``input/config/inputdataconfig.json``."""
        return self.input_config_dir / "inputdataconfig.json"

    @property
    def checkpoint_config_file(self) -> Path:
        """``input/config/checkpointconfig.json`` (optional)."""
        return self.input_config_dir / "checkpointconfig.json"

    @property
    def code_dir(self) -> Path:
        """``code/``: where the user's code is placed; the working directory of the user's process.
        :attr:`custom_code_dir` when set."""
        return self.custom_code_dir or self.base_dir / "code"

    @property
    def model_dir(self) -> Path:
        """``model/``: the model the job produces (the platform tars and uploads it), unless
        :attr:`custom_model_dir` names another directory."""
        return self.custom_model_dir or self.base_dir / "model"

    @property
    def output_dir(self) -> Path:
        """``output/``: the success and failure files."""
        return self.base_dir / "output"

    @property
    def output_data_dir(self) -> Path:
        """``output/data/``: other outputs, uploaded with the model."""
        return self.base_dir / "output" / "data"

    @property
    def output_intermediate_dir(self) -> Path:
        """``output/intermediate/``: synced to S3 while the job runs (with ``sagemaker_s3_output``)."""
        return self.base_dir / "output" / "intermediate"

    @property
    def checkpoint_dir(self) -> Path:
        """``checkpoints/``: the default local checkpoint path, unless :attr:`custom_checkpoint_dir` says."""
        return self.custom_checkpoint_dir or self.base_dir / "checkpoints"

    @property
    def failure_file(self) -> Path:
        """``output/failure``: why the job failed (the platform shows its first 1024 characters)."""
        return self.output_dir / "failure"

    @property
    def success_file(self) -> Path:
        """``output/success``: written, empty, when the job succeeded."""
        return self.output_dir / "success"

    @property
    def warm_pool_cache_dir(self) -> Path:
        """``sagemaker/warmpoolcache/``: the persistent cache directory of a SageMaker managed warm pool
        (``/opt/ml/sagemaker/warmpoolcache``). It outlives the job: the next job that reuses the warm pool
        finds what this one left there. Only a job with a warm pool (``KeepAlivePeriodInSeconds``) has it:
        see :func:`persistent_cache_dir` for whether the platform offers it."""
        return self.base_dir / "sagemaker" / "warmpoolcache"

    def channel_dir(self, name: str) -> Path:
        """``input/data/<name>``."""
        return self.input_data_dir / name


def job_paths(base: Path | str | None = None, environ: Mapping[str, str] | None = None) -> JobPaths:
    """The :class:`JobPaths` of ``base``, default :func:`base_dir` (``$SAGEMAKER_BASE_DIR``, ``/opt/ml``)."""
    return JobPaths(Path(base).absolute() if base is not None else base_dir(environ))


def persistent_cache_dir(paths: JobPaths, environ: Mapping[str, str]) -> Path | None:
    """The directory that survives between jobs, where the platform offers one; else None.

    SageMaker managed warm pools: ``$SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY`` when set (the platform
    sets it), else :attr:`JobPaths.warm_pool_cache_dir` when that directory exists.
    """
    named = environ.get(WARM_POOL_CACHE_VARIABLE, "").strip()
    if named:
        return Path(named)
    return paths.warm_pool_cache_dir if paths.warm_pool_cache_dir.is_dir() else None
