"""The training environment: the job directory and process environment, read into a typed record.

Every step is a public function that works on its own (``load_hyperparameters()``,
``load_resource_config()``, ``get_channel_dir("train")`` ...); :func:`create_environment` composes
them into the immutable :class:`TrainingEnv` that every hook receives as ``training_env``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smc_core.errors import ConfigError

DEFAULT_BASE_DIR = "/opt/ml"


def base_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The job directory: ``$SAGEMAKER_BASE_DIR`` when set, else ``/opt/ml``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR)


@dataclass(frozen=True)
class JobPaths:
    """The paths of the job directory, all derived from its base (``/opt/ml``)."""

    base_dir: Path

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def input_config_dir(self) -> Path:
        return self.base_dir / "input" / "config"

    @property
    def input_data_dir(self) -> Path:
        return self.base_dir / "input" / "data"

    @property
    def code_dir(self) -> Path:
        return self.base_dir / "code"

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.base_dir / "output" / "data"

    @property
    def output_intermediate_dir(self) -> Path:
        return self.base_dir / "output" / "intermediate"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base_dir / "checkpoints"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def success_file(self) -> Path:
        return self.output_dir / "success"


@dataclass(frozen=True)
class TrainingEnv:
    """Everything a training job knows about itself, read once before anything runs.

    Field names follow the keys of ``SM_TRAINING_ENV`` in the container contract; the original
    design's names (``channel_dirs``, ``available_cpus``, ``available_gpus``) are kept as aliases.
    """

    paths: JobPaths
    hyperparameters: Mapping[str, Any]
    """The user's hyperparameters, each JSON-decoded, reserved ``sagemaker_*`` keys removed."""
    additional_framework_parameters: Mapping[str, Any]
    """The non-reserved ``sagemaker_*`` keys (distribution switches and the like)."""
    resource_config: Mapping[str, Any]
    input_data_config: Mapping[str, Any]
    hosts: tuple[str, ...]
    current_host: str
    channel_input_dirs: Mapping[str, Path]
    num_cpus: int
    num_gpus: int
    user_entry_point: str | None = None
    module_dir: str | None = None
    """The code URI (``sagemaker_submit_directory``): ``s3://``, a local path, or None for the code dir."""
    module_name: str | None = None
    framework_module: str | None = None
    job_name: str | None = None
    region: str | None = None
    log_level: int = 20
    s3_output: str | None = None
    network_interface_name: str = "eth0"
    current_instance_type: str = "local"
    current_instance_group: str = "homogeneousCluster"
    current_instance_group_hosts: tuple[str, ...] = ()
    instance_groups: tuple[str, ...] = ()
    instance_groups_dict: Mapping[str, Any] = field(default_factory=dict)
    distribution_instance_groups: tuple[str, ...] = ()
    distribution_hosts: tuple[str, ...] = ()
    is_hetero: bool = False
    num_neurons: int = 0
    is_modelparallel_enabled: bool | None = None
    checkpoint_config: Mapping[str, Any] = field(default_factory=dict)
    raw_hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    """Every decoded hyperparameter as read, reserved keys included."""

    # --- derived facts -------------------------------------------------------------------------
    @property
    def master_hostname(self) -> str:
        """The first distribution host: the rendezvous master for every framework."""
        hosts = self.distribution_hosts or self.hosts
        return hosts[0]

    @property
    def is_master(self) -> bool:
        """True on the master host."""
        return self.current_host == self.master_hostname

    @property
    def current_host_rank(self) -> int:
        """This host's index in ``hosts`` (0 on the master of a homogeneous cluster)."""
        return self.hosts.index(self.current_host)

    @property
    def base_dir(self) -> Path:
        return self.paths.base_dir

    @property
    def input_dir(self) -> Path:
        return self.paths.input_dir

    @property
    def input_config_dir(self) -> Path:
        return self.paths.input_config_dir

    @property
    def code_dir(self) -> Path:
        return self.paths.code_dir

    @property
    def model_dir(self) -> Path:
        return self.paths.model_dir

    @property
    def output_dir(self) -> Path:
        return self.paths.output_dir

    @property
    def output_data_dir(self) -> Path:
        return self.paths.output_data_dir

    @property
    def output_intermediate_dir(self) -> Path:
        return self.paths.output_intermediate_dir

    @property
    def channel_dirs(self) -> Mapping[str, Path]:
        """Alias of ``channel_input_dirs`` (the original design's name)."""
        return self.channel_input_dirs

    @property
    def available_cpus(self) -> int:
        """Alias of ``num_cpus`` (the original design's name)."""
        return self.num_cpus

    @property
    def available_gpus(self) -> int:
        """Alias of ``num_gpus`` (the original design's name)."""
        return self.num_gpus


# ------------------------------------------------------------------------------------------------
# The simplest complete loader; the full contract (reserved keys, heterogeneous clusters, cgroup
# CPU limits, GPUs) is built on these same functions.


def load_config(path: Path) -> Any:
    """Read one JSON config file; a malformed file is a :class:`ConfigError` naming it."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}).") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Fix the file so that it holds one JSON object."
        ) from exc


def create_environment(
    base: Path | None = None, environ: Mapping[str, str] | None = None
) -> TrainingEnv:
    """Read the job directory at ``base`` (default: :func:`base_dir`) into a :class:`TrainingEnv`."""
    environ = os.environ if environ is None else environ
    paths = JobPaths(Path(base) if base is not None else base_dir(environ))

    def optional(name: str, default: Any) -> Any:
        try:
            return load_config(paths.input_config_dir / name)
        except FileNotFoundError:
            return default

    raw = optional("hyperparameters.json", {})
    hyperparameters = {}
    for key, value in raw.items():
        try:
            hyperparameters[key] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            hyperparameters[key] = value
    user = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    framework = {k: v for k, v in hyperparameters.items() if k.startswith("sagemaker_")}
    hostname = socket.gethostname()
    resource_config = optional("resourceconfig.json", {"current_host": hostname, "hosts": [hostname]})
    input_data_config = optional("inputdataconfig.json", {})
    hosts = tuple(resource_config["hosts"])
    return TrainingEnv(
        paths=paths,
        hyperparameters=user,
        additional_framework_parameters=framework,
        resource_config=resource_config,
        input_data_config=input_data_config,
        hosts=hosts,
        current_host=resource_config["current_host"],
        channel_input_dirs={c: paths.input_data_dir / c for c in sorted(input_data_config)},
        num_cpus=os.cpu_count() or 1,
        num_gpus=0,
        user_entry_point=environ.get("SAGEMAKER_PROGRAM") or framework.get("sagemaker_program"),
        module_dir=framework.get("sagemaker_submit_directory"),
        job_name=environ.get("TRAINING_JOB_NAME") or framework.get("sagemaker_job_name"),
        distribution_hosts=hosts,
        raw_hyperparameters=hyperparameters,
    )
