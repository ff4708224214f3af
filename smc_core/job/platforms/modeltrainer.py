"""SageMaker Python SDK v3 ``ModelTrainer`` layouts: what the SDK's ``sm_drivers`` channel asks for.

With ``source_code=SourceCode(...)``, ``ModelTrainer`` (``sagemaker`` 3.x) adds two channels to the
training job and replaces the image's entry point with its own ``sm_train.sh``:

* ``code``: the ``source_dir``, as uploaded (a ``.tar.gz`` source dir arrives as that file);
* ``sm_drivers``: ``sourcecode.json`` (``SourceCode.model_dump()``: ``source_dir``, ``requirements``,
  ``entry_script``, ``command``, ``args``, ``ignore_patterns``), ``distributed.json`` (the
  ``DistributedConfig``'s dump: ``{}``; ``Torchrun``: ``process_count_per_node``, ``smp``; ``MPI``:
  ``process_count_per_node``, ``mpi_additional_options``; smc-modeltrainer's ``Smc``: ``driver``,
  ``launch``, ...), ``sm_train.sh``, ``scripts/environment.py`` and the SDK's drivers.

The image's own ``train`` runs on such a layout when the user chose it (``SourceCode(command="train")``,
or smc-modeltrainer's ``Smc`` config, whose driver hands over to ``train``; both after ``sm_train.sh``
has set up the environment and installed the requirements), and for tuning jobs, whose layout has no
``code`` channel but ``sagemaker_program`` and ``sagemaker_submit_directory`` hyperparameters.

:func:`read_model_trainer_job` reads the layout into a :class:`ModelTrainerJob`; the SageMaker reader
(:mod:`smc_core.job.platforms.sagemaker`) then builds the ``TrainingEnv`` from it:
``distributed.json`` becomes the classic launch switch (:meth:`ModelTrainerJob.framework_parameters`),
and :mod:`smc_core.job.platforms.modeltrainer_env` gives the user's process what the SDK's
``environment.py`` and drivers give it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smc_core.base.messages import quoted, type_name
from smc_core.errors import ConfigError
from smc_core.job.config import load_object
from smc_core.job.hyperparameters import DISTRIBUTION_SWITCHES, is_true
from smc_core.job.paths import JobPaths

__all__ = [
    "CODE_CHANNEL",
    "DRIVERS_CHANNEL",
    "ModelTrainerJob",
    "merged_framework_parameters",
    "read_model_trainer_job",
    "sdk_deserialize",
    "sdk_script_ran",
    "sdk_serialize",
]

DRIVERS_CHANNEL = "sm_drivers"
"""The channel the SDK ships its drivers and ``sourcecode.json`` in."""
CODE_CHANNEL = "code"
"""The channel holding the ``source_dir`` (training jobs; tuning jobs have none)."""
SOURCE_CODE_FILE = "sourcecode.json"
DISTRIBUTED_FILE = "distributed.json"
SDK_ENV_FILE = "sm_training.env"
"""What the SDK's ``environment.py`` writes under ``input/`` and ``sm_train.sh`` sources."""

TORCHRUN = "torchrun"
MPI = "mpi"
SMC_DRIVER = "smc"
"""``distributed.json``'s ``driver`` when it is smc-modeltrainer's ``Smc`` config."""

# The mpirun options smc sets from the job itself (as for sagemaker_mpi_custom_mpi_options).
_JOB_MPI_OPTIONS = frozenset(
    {"--", "-np", "-n", "--np", "--host", "-H", "--hostfile", "-hostfile", "--prefix"}
)
_DISTRIBUTED_EXAMPLES = (
    '{} (no DistributedConfig), {"process_count_per_node": 2, "smp": null} (Torchrun), '
    '{"process_count_per_node": 2, "mpi_additional_options": []} (MPI), or '
    '{"driver": "smc", "launch": "torchrun", "process_count_per_node": 2, "mpi_additional_options": null} '
    "(smc_modeltrainer.Smc)"
)


def sdk_deserialize(value: Any) -> Any:
    """A value as the SDK's drivers decode it (``safe_deserialize``): a string that is JSON as its
    JSON value, any other string as it is, anything else unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def sdk_serialize(value: Any) -> str:
    """A value as the SDK writes it (``safe_serialize``): a string as it is, anything else as JSON
    (``json.dumps``' default spacing: ``[64, 32]``), else ``str(value)``."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


@dataclass(frozen=True)
class ModelTrainerJob:
    """A ModelTrainer layout as read from the ``sm_drivers`` channel (see the module docstring)."""

    drivers_dir: Path
    """``input/data/sm_drivers``."""
    source_code: Mapping[str, Any] = field(hash=False)
    """``sourcecode.json`` as read."""
    distributed: Mapping[str, Any] = field(hash=False)
    """``distributed.json`` as read (``{}``: not distributed)."""
    hyperparameters: Mapping[str, Any] = field(hash=False)
    """Every hyperparameter of ``hyperparameters.json``, in its order, decoded as the SDK's
    ``environment.py`` decodes it (``SM_HPS``)."""
    code_channel: Path | None = None
    """``input/data/code`` when the job has the ``code`` channel (training jobs), else None: the code
    comes from ``sagemaker_submit_directory`` (tuning jobs)."""
    launch: str | None = None
    """``torchrun``, ``mpi``, or None (one process per host), from ``distributed.json``."""
    processes_per_host: int | None = None
    """``distributed.json``'s ``process_count_per_node`` (None: the GPU count, else the Neuron core
    count, else 1)."""
    mpi_options: tuple[str, ...] = ()
    """``distributed.json``'s ``mpi_additional_options``: ``mpirun`` arguments, each one argv item."""
    config_name: str | None = None
    """The ``DistributedConfig`` that wrote ``distributed.json`` (``Torchrun``, ``MPI``, ``Smc``), or None."""
    sdk_script_ran: bool = False
    """The SDK's ``sm_train.sh`` ran before ``train`` (``SourceCode(command="train")``, the ``Smc``
    driver): it set the environment (``input/sm_training.env``), extracted a ``.tar.gz`` source dir
    and installed the requirements file."""

    @property
    def source_code_file(self) -> Path:
        """``sm_drivers/sourcecode.json``."""
        return self.drivers_dir / SOURCE_CODE_FILE

    @property
    def distributed_file(self) -> Path:
        """``sm_drivers/distributed.json``."""
        return self.drivers_dir / DISTRIBUTED_FILE

    @property
    def driver_dir(self) -> Path:
        """``sm_drivers/distributed_drivers`` (``SM_DISTRIBUTED_DRIVER_DIR``)."""
        return self.drivers_dir / "distributed_drivers"

    @property
    def entry_script(self) -> str | None:
        """``SourceCode.entry_script``: the script, relative to the source dir."""
        value = self.source_code.get("entry_script")
        return value if isinstance(value, str) and value else None

    @property
    def requirements(self) -> str | None:
        """``SourceCode.requirements``: the requirements file, relative to the source dir."""
        value = self.source_code.get("requirements")
        return value if isinstance(value, str) and value else None

    @property
    def source_archive(self) -> str | None:
        """The name of the ``.tar.gz`` in the ``code`` channel when the source dir was one, else None."""
        source_dir = self.source_code.get("source_dir")
        if self.code_channel is None or not isinstance(source_dir, str) or not source_dir.endswith(".tar.gz"):
            return None
        return source_dir.rstrip("/").rsplit("/", 1)[-1]

    def framework_parameters(self) -> dict[str, Any]:
        """``distributed.json`` as the classic ``sagemaker_*`` framework parameters smc launches by:
        ``Torchrun`` is ``sagemaker_torch_distributed_enabled`` (smc-pytorch's torchrun), ``MPI`` is
        ``sagemaker_mpi_enabled`` (the core's mpirun, ``-np`` = hosts x processes per host);
        ``process_count_per_node`` is ``sagemaker_mpi_num_of_processes_per_host`` and
        ``mpi_additional_options`` is ``sagemaker_mpi_custom_mpi_options`` (shell-quoted, so each item
        stays one argument)."""
        if self.launch is None:
            return {}
        switch = "sagemaker_torch_distributed_enabled" if self.launch == TORCHRUN else "sagemaker_mpi_enabled"
        params: dict[str, Any] = {switch: True}
        if self.processes_per_host is not None:
            params["sagemaker_mpi_num_of_processes_per_host"] = self.processes_per_host
        if self.mpi_options:
            params["sagemaker_mpi_custom_mpi_options"] = shlex.join(self.mpi_options)
        return params

    def describe(self) -> str:
        """What the layout asks for, in one line for the log."""
        parts = [f"entry script {self.entry_script!r}" if self.entry_script else "no entry script"]
        parts.append(
            f"code in the {CODE_CHANNEL!r} channel"
            if self.code_channel is not None
            else "no code channel: the code from sagemaker_submit_directory (tuning jobs), else code/"
        )
        if self.requirements:
            done = " (installed by the SDK's sm_train.sh)" if self.sdk_script_ran else ""
            parts.append(f"requirements {self.requirements!r}{done}")
        if self.launch is None:
            parts.append(f"{DISTRIBUTED_FILE}: {self.config_name or 'not distributed'}, one process per host")
        else:
            count = f"{self.processes_per_host} process(es) per host"
            if self.processes_per_host is None:
                count = "one process per GPU (else one per host)"
            how = (
                "smc-pytorch's torchrun (sagemaker_torch_distributed_enabled)"
                if self.launch == TORCHRUN
                else "the core's mpirun (sagemaker_mpi_enabled), -np = hosts x processes per host"
            )
            parts.append(f"{DISTRIBUTED_FILE}: {self.config_name}, {count}, via {how}")
        return "; ".join(parts)


def _optional_count(path: Path, config: Mapping[str, Any], key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{path}: {key!r} is {quoted(value)} ({type_name(value)}), expected a whole number of processes "
            "per host (e.g. 2) or null (the GPU count, else 1)."
        )
    return value


def _mpi_options(path: Path, config: Mapping[str, Any]) -> tuple[str, ...]:
    key = "mpi_additional_options"
    value = config.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(
            f"{path}: {key!r} is {quoted(value)} ({type_name(value)}), expected a list of mpirun "
            'arguments, one per item, e.g. ["-x", "NCCL_DEBUG=WARN"].'
        )
    if value and not value[0].startswith("-"):
        raise ConfigError(
            f"{path}: {key!r} starts with {value[0]!r}, which is not an mpirun option: give options only, "
            'e.g. ["-x", "NCCL_DEBUG=WARN", "--mca", "btl_tcp_links", "2"].'
        )
    for item in value:
        if item in _JOB_MPI_OPTIONS:
            raise ConfigError(
                f"{path}: {key!r} sets {item!r}, which smc sets from the job (-np = hosts x "
                "process_count_per_node, --host from resourceconfig.json): remove it."
            )
    return tuple(value)


def _launch(path: Path, distributed: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The launch style and the name of the config that asked for it."""
    if not distributed:
        return None, None
    if distributed.get("driver") == SMC_DRIVER:
        launch = distributed.get("launch")
        if launch not in (None, TORCHRUN, MPI):
            raise ConfigError(
                f'{path}: \'launch\' is {quoted(launch)}, expected "torchrun", "mpi" or null '
                "(one process per host), as smc_modeltrainer.Smc writes it."
            )
        return launch, "Smc"
    if "smp" in distributed:  # SMP v2's settings travel as the mp_parameters hyperparameter
        return TORCHRUN, "Torchrun"
    if "mpi_additional_options" in distributed:
        return MPI, "MPI"
    raise ConfigError(
        f"{path}: holds {quoted(dict(distributed))}, which is none of the DistributedConfigs smc knows: "
        f"expected {_DISTRIBUTED_EXAMPLES}. A DistributedConfig of your own runs its own driver: run it "
        "through smc with smc_modeltrainer.Smc, or the SDK's Torchrun or MPI."
    )


def _string_fields(path: Path, source_code: Mapping[str, Any]) -> None:
    for key in ("source_dir", "requirements", "entry_script", "command"):
        value = source_code.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(
                f"{path}: {key!r} is {quoted(value)} ({type_name(value)}), expected a string or null, "
                "as SourceCode writes it."
            )
    for key in ("entry_script", "requirements"):
        value = source_code.get(key)
        if isinstance(value, str) and (value.startswith("/") or ".." in Path(value).parts):
            raise ConfigError(
                f"{path}: {key!r} is {value!r}, which is not a path inside the source dir: give it "
                'relative to SourceCode.source_dir (e.g. "train.py").'
            )


def sdk_script_ran(paths: JobPaths, environ: Mapping[str, str]) -> bool:
    """Whether the SDK's ``sm_train.sh`` ran before ``train``: its ``environment.py`` wrote
    ``input/sm_training.env`` and ``sm_train.sh`` exported what it holds (``SM_SOURCE_DIR`` among them)."""
    return (paths.input_dir / SDK_ENV_FILE).is_file() and "SM_SOURCE_DIR" in environ


def read_model_trainer_job(paths: JobPaths, environ: Mapping[str, str]) -> ModelTrainerJob | None:
    """The ModelTrainer layout of the job directory ``paths``, or None for a classic one.

    A job is a ModelTrainer one when its ``sm_drivers`` channel holds ``sourcecode.json``.

    :raises ConfigError: ``sourcecode.json`` or ``distributed.json`` is malformed, or asks for
        something smc cannot do (naming the file, the field, the value and the fix).
    """
    drivers = paths.channel_dir(DRIVERS_CHANNEL)
    source_file = drivers / SOURCE_CODE_FILE
    if not source_file.is_file():
        return None
    example = '{"source_dir": "src", "requirements": null, "entry_script": "train.py", "command": null}'
    source_code = load_object(source_file, {}, example)
    _string_fields(source_file, source_code)
    distributed_file = drivers / DISTRIBUTED_FILE
    distributed = load_object(distributed_file, {}, '{"process_count_per_node": 2, "smp": null}')
    launch, config_name = _launch(distributed_file, distributed)
    processes = _optional_count(distributed_file, distributed, "process_count_per_node")
    if launch is None and processes is not None:
        raise ConfigError(
            f"{distributed_file}: 'process_count_per_node' is {processes} but 'launch' is null: one process "
            'per host runs. Give launch="torchrun" or launch="mpi" to Smc, or leave the count out.'
        )
    options = _mpi_options(distributed_file, distributed)
    if options and launch != MPI:
        raise ConfigError(
            f"{distributed_file}: 'mpi_additional_options' is set, but the launch is "
            f'{launch or "one process per host"}, not MPI: give launch="mpi", or leave the options out.'
        )
    raw = load_object(paths.hyperparameters_file, {}, '{"epochs": "10"}')
    code = paths.channel_dir(CODE_CHANNEL)
    return ModelTrainerJob(
        drivers_dir=drivers,
        source_code=source_code,
        distributed=distributed,
        hyperparameters={key: sdk_deserialize(value) for key, value in raw.items()},
        code_channel=code if code.is_dir() else None,
        launch=launch,
        processes_per_host=processes,
        mpi_options=options,
        config_name=config_name,
        sdk_script_ran=sdk_script_ran(paths, environ),
    )


def merged_framework_parameters(job: ModelTrainerJob, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """``hyperparameters`` (decoded) with :meth:`ModelTrainerJob.framework_parameters` added.

    :raises ConfigError: ``hyperparameters.json`` turns on another launch, or gives one of those keys
        another value.
    """
    derived = job.framework_parameters()
    merged = dict(hyperparameters)
    for key, value in derived.items():
        if key in merged and merged[key] != value and not (value is True and is_true(merged[key])):
            raise ConfigError(
                f"{job.distributed_file} asks for {job.config_name} ({key}={quoted(value)}), but "
                f"hyperparameters.json sets {key!r} to {quoted(merged[key])}: keep one of them."
            )
        merged[key] = value
    others = [s for s in DISTRIBUTION_SWITCHES if s not in derived and is_true(merged.get(s, False))]
    if derived and others:
        raise ConfigError(
            f"{job.distributed_file} asks for {job.config_name}, but hyperparameters.json also turns on "
            f"{', '.join(others)}: one launch per job. Remove the hyperparameter, or the DistributedConfig."
        )
    return merged
