"""The training environment: the job directory and process environment, read into a typed record.

Every step is a public function that works on its own::

    from smc_core.environment import load_hyperparameters, get_channel_dir, available_gpus
    hyperparameters = load_hyperparameters()          # $SAGEMAKER_BASE_DIR or /opt/ml
    train_dir = get_channel_dir("train")

:func:`create_environment` composes them into the immutable :class:`TrainingEnv` that every hook
receives as ``training_env``. What each fact means, and how it reaches the user's process, follows the
container contract (the ``SM_*`` variables are rendered by :mod:`smc_core.exports`).

Bad input (malformed JSON, a value of the wrong type, a host that is not in ``hosts``, a channel
whose directory is missing) raises :class:`~smc_core.errors.ConfigError` naming the file, the key,
the value and what was expected; the runner turns it into ``output/failure`` and exit code 2.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from smc_core.errors import ConfigError

__all__ = [
    "BOOL_FLAGS_ENV",
    "DISTRIBUTION_SWITCHES",
    "RESERVED_HYPERPARAMETERS",
    "JobPaths",
    "SplitHyperparameters",
    "TrainingEnv",
    "available_cpus",
    "available_gpus",
    "available_neurons",
    "base_dir",
    "cgroup_cpu_limit",
    "create_environment",
    "decode_hyperparameters",
    "get_channel_dir",
    "job_paths",
    "load_checkpoint_config",
    "load_config",
    "load_hyperparameters",
    "load_input_data_config",
    "load_resource_config",
    "resource_config_from_tf_config",
    "split_hyperparameters",
]

logger = logging.getLogger("smc")

DEFAULT_BASE_DIR = "/opt/ml"
DEFAULT_GROUP = "homogeneousCluster"
DEFAULT_INTERFACE = "eth0"
SAGEMAKER_PREFIX = "sagemaker_"

RESERVED_HYPERPARAMETERS = frozenset(
    {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_region",
        "sagemaker_container_log_level",
        "sagemaker_job_name",
        "sagemaker_enable_cloudwatch_metrics",
        "sagemaker_s3_output",
        "default_user_module_name",
        "_tuning_objective_metric",
    }
)
"""Hyperparameters the toolkit consumes: never passed to the user's script, never framework parameters."""

DISTRIBUTION_SWITCHES = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)
"""Framework parameters that make the current instance group a distribution group by default."""

BOOL_FLAGS_ENV = "SMC_BOOL_FLAGS"
"""Set to ``1``/``true``/``yes`` to render boolean hyperparameters as bare flags (see exports.cmd_args)."""

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})
_FILE_MODES = frozenset({"File", "FastFile"})


class FrozenDict(dict[str, Any]):
    """A read-only ``dict``: JSON-serialisable and picklable like a dict, but unchangeable.

    TrainingEnv's mappings are FrozenDicts (the top level; values inside are the decoded JSON).
    """

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("TrainingEnv mappings are read-only: copy with dict(...) to change one")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True, default=str))


# ---------------------------------------------------------------------------------------------
# Paths


def base_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The job directory: ``$SAGEMAKER_BASE_DIR`` when set, else ``/opt/ml`` (made absolute)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR).absolute()


@dataclass(frozen=True)
class JobPaths:
    """The paths of the job directory, all derived from its base (``/opt/ml``)."""

    base_dir: Path

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
        return self.input_config_dir / "hyperparameters.json"

    @property
    def resource_config_file(self) -> Path:
        return self.input_config_dir / "resourceconfig.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.input_config_dir / "inputdataconfig.json"

    @property
    def checkpoint_config_file(self) -> Path:
        return self.input_config_dir / "checkpointconfig.json"

    @property
    def code_dir(self) -> Path:
        """``code/``: where the user's code is placed; the working directory of the user's process."""
        return self.base_dir / "code"

    @property
    def model_dir(self) -> Path:
        """``model/``: the model the job produces (the platform tars and uploads it)."""
        return self.base_dir / "model"

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
        """``checkpoints/``: the default local checkpoint path."""
        return self.base_dir / "checkpoints"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def success_file(self) -> Path:
        return self.output_dir / "success"

    def channel_dir(self, name: str) -> Path:
        """``input/data/<name>``."""
        return self.input_data_dir / name


def job_paths(base: Path | str | None = None, environ: Mapping[str, str] | None = None) -> JobPaths:
    """The :class:`JobPaths` of ``base``, default :func:`base_dir` (``$SAGEMAKER_BASE_DIR``, ``/opt/ml``)."""
    return JobPaths(Path(base).absolute() if base is not None else base_dir(environ))


# ---------------------------------------------------------------------------------------------
# Reading and checking the config files

_MISSING: Any = object()


def _show(value: Any) -> str:
    """A value as the error messages quote it: its JSON text, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _closest(name: str, choices: Iterable[str]) -> str:
    import difflib  # only on the error path

    match = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


def load_config(path: Path | str, default: Any = _MISSING) -> Any:
    """Read one JSON config file.

    :param path: the file.
    :param default: returned when the file does not exist; without it, a missing file is an error.
    :raises ConfigError: the file is missing (and no default), unreadable, or not valid JSON.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if default is not _MISSING:
            return default
        raise ConfigError(f"{path}: the file does not exist. The platform writes it before the job starts.")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}).") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Fix the file so that it holds one JSON object."
        ) from exc


def _load_object(path: Path, default: Any, example: str) -> dict[str, Any]:
    value = load_config(path, default)
    if not isinstance(value, dict):
        raise ConfigError(
            f"{path}: holds {_type_name(value)} ({_show(value)}), expected a JSON object, e.g. {example}."
        )
    return value


def decode_hyperparameters(raw: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-decode each value, as the SDK encoded it; a value that is not JSON is kept as it is.

    ``{"epochs": "10", "name": "\\"resnet\\"", "note": "plain"}`` gives
    ``{"epochs": 10, "name": "resnet", "note": "plain"}``.
    """
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # other clients send bare strings: keep the raw string
        decoded[key] = value
    return decoded


def load_hyperparameters(base: Path | str | None = None) -> dict[str, Any]:
    """Every hyperparameter of the job, each JSON-decoded, reserved ``sagemaker_*`` keys included.

    A missing ``hyperparameters.json`` means no hyperparameters. Use :func:`split_hyperparameters`
    to separate the user's hyperparameters from the reserved and framework keys.

    :param base: the job directory (default: ``$SAGEMAKER_BASE_DIR`` or ``/opt/ml``).
    :raises ConfigError: malformed JSON, a file that is not an object, a key that cannot be an
        environment variable name.
    """
    path = job_paths(base).hyperparameters_file
    raw = _load_object(path, {}, '{"epochs": "10"}')
    for key in raw:
        if "=" in key or "\0" in key:
            raise ConfigError(
                f"{path}: the hyperparameter name {key!r} contains {'=' if '=' in key else 'a NUL byte'}, "
                "which no environment variable name may hold (SM_HP_<NAME>). Rename it."
            )
    return decode_hyperparameters(raw)


class SplitHyperparameters(NamedTuple):
    """Hyperparameters sorted into the user's, the reserved ones, and the framework parameters."""

    user: dict[str, Any]
    """Passed to the entry point as arguments and ``SM_HP_*``."""
    reserved: dict[str, Any]
    """:data:`RESERVED_HYPERPARAMETERS` present in the job (program, submit directory, region ...)."""
    framework: dict[str, Any]
    """Every other ``sagemaker_*`` key (``SM_FRAMEWORK_PARAMS``): distribution switches and the like."""


def split_hyperparameters(hyperparameters: Mapping[str, Any]) -> SplitHyperparameters:
    """Split decoded hyperparameters into user, reserved and framework keys (see the contract)."""
    user: dict[str, Any] = {}
    reserved: dict[str, Any] = {}
    framework: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        if key in RESERVED_HYPERPARAMETERS:
            reserved[key] = value
        elif key.startswith(SAGEMAKER_PREFIX):
            framework[key] = value
        else:
            user[key] = value
    return SplitHyperparameters(user, reserved, framework)


def _string_list(path: Path, key: str, value: Any, example: str, *, allow_empty: bool = False) -> list[str]:
    if (
        not isinstance(value, list)
        or not all(isinstance(item, str) and item for item in value)
        or (not value and not allow_empty)
    ):
        raise ConfigError(
            f"{path}: {key!r} is {_show(value)} ({_type_name(value)}), expected a "
            f"{'' if allow_empty else 'non-empty '}list of host names, e.g. {example}."
        )
    if len(set(value)) != len(value):
        twice = sorted({item for item in value if value.count(item) > 1})
        raise ConfigError(f"{path}: {key!r} is {_show(value)}, which names {_show(twice)} more than once.")
    return value


def _optional_string(path: Path, config: Mapping[str, Any], key: str, default: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{path}: {key!r} is {_show(value)} ({_type_name(value)}), expected a non-empty string."
        )
    return value


def check_resource_config(config: Any, path: Path | str = "resourceconfig.json") -> dict[str, Any]:
    """Check the types in a resource config (``hosts``, ``current_host``, ``instance_groups`` ...).

    :param path: named in error messages.
    :return: ``config`` unchanged.
    :raises ConfigError: naming the key, the value and what was expected.
    """
    path = Path(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: holds {_type_name(config)} ({_show(config)}), expected a JSON object.")
    if "hosts" not in config:
        raise ConfigError(f'{path}: has no "hosts" key; expected e.g. "hosts": ["algo-1", "algo-2"].')
    hosts = _string_list(path, "hosts", config["hosts"], '["algo-1", "algo-2"]')
    if "current_host" not in config:
        raise ConfigError(f'{path}: has no "current_host" key; expected one of {_show(hosts)}.')
    current = config["current_host"]
    if not isinstance(current, str) or current not in hosts:
        raise ConfigError(
            f"{path}: 'current_host' is {_show(current)}, which is not among 'hosts' {_show(hosts)}; "
            f"expected one of them.{_closest(str(current), hosts)}"
        )
    for key in ("network_interface_name", "current_instance_type", "current_group_name"):
        if key in config:
            _optional_string(path, config, key, "")
    groups = config.get("instance_groups", [])
    if not isinstance(groups, list):
        raise ConfigError(
            f"{path}: 'instance_groups' is {_show(groups)} ({_type_name(groups)}), expected a list of "
            'objects like {"instance_group_name": "train", "instance_type": "ml.p4d.24xlarge", '
            '"hosts": ["algo-1"]}.'
        )
    for index, group in enumerate(groups):
        where = f"instance_groups[{index}]"
        if not isinstance(group, dict) or not isinstance(group.get("instance_group_name"), str):
            raise ConfigError(
                f"{path}: {where} is {_show(group)}, expected an object with a string 'instance_group_name' "
                "and a list of 'hosts'."
            )
        for host in _string_list(path, f"{where}.hosts", group.get("hosts"), '["algo-1"]', allow_empty=True):
            if host not in hosts:
                raise ConfigError(
                    f"{path}: {where}.hosts names {_show(host)}, which is not among 'hosts' {_show(hosts)}."
                )
    return config


def resource_config_from_tf_config(tf_config: str) -> dict[str, Any]:
    """A resource config built from a ``TF_CONFIG`` value, for platforms that describe hosts that way.

    Hosts are the cluster's addresses without ports, chief/master first, then workers, then the
    rest, each once; the current host is the task's own entry.

    :raises ConfigError: ``tf_config`` is not the JSON ``TF_CONFIG`` tf.distribute expects.
    """
    try:
        parsed = json.loads(tf_config)
        cluster, task = parsed["cluster"], parsed["task"]
        order = ["chief", "master", "worker", *sorted(set(cluster) - {"chief", "master", "worker"})]
        hosts: list[str] = []
        for role in order:
            for address in cluster.get(role, []):
                host = address.rsplit(":", 1)[0]
                if host not in hosts:
                    hosts.append(host)
        current = cluster[task["type"]][int(task["index"])].rsplit(":", 1)[0]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ConfigError(
            f"TF_CONFIG: {_show(tf_config)} is not a tf.distribute cluster description ({exc!r}); expected "
            '{"cluster": {"worker": ["host-a:2222", "host-b:2222"]}, "task": {"type": "worker", "index": 0}}.'
        ) from exc
    return {"current_host": current, "hosts": hosts}


def load_resource_config(
    base: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The cluster description from ``resourceconfig.json``, checked.

    When the file is missing: the hosts of ``TF_CONFIG`` when the environment has one, else one host
    named after this machine (as the reference toolkit does).

    :raises ConfigError: malformed JSON, or a value of the wrong type (see :func:`check_resource_config`).
    """
    environ = os.environ if environ is None else environ
    path = job_paths(base, environ).resource_config_file
    config = load_config(path, None)
    if config is None:
        if environ.get("TF_CONFIG"):
            return check_resource_config(resource_config_from_tf_config(environ["TF_CONFIG"]), "TF_CONFIG")
        import socket  # only without resourceconfig.json

        hostname = socket.gethostname()
        return {"current_host": hostname, "hosts": [hostname]}
    return check_resource_config(config, path)


def load_input_data_config(base: Path | str | None = None) -> dict[str, Any]:
    """The channels from ``inputdataconfig.json`` (``{}`` when the file is missing), checked.

    :raises ConfigError: malformed JSON, a channel that is not an object, or a name that is not a
        plain directory name.
    """
    path = job_paths(base).input_data_config_file
    config = _load_object(path, {}, '{"train": {"TrainingInputMode": "File"}}')
    for name, channel in config.items():
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise ConfigError(
                f"{path}: the channel name {_show(name)} is not a plain directory name; "
                "expected a name like train or validation."
            )
        if not isinstance(channel, dict):
            raise ConfigError(
                f"{path}: channel {name!r} is {_show(channel)} ({_type_name(channel)}), expected an object "
                'like {"TrainingInputMode": "File"}.'
            )
    return config


def load_checkpoint_config(base: Path | str | None = None) -> dict[str, Any]:
    """The optional ``checkpointconfig.json`` (``{"LocalPath": ..., "S3Uri": ...}``), ``{}`` when missing."""
    path = job_paths(base).checkpoint_config_file
    return _load_object(path, {}, '{"LocalPath": "/opt/ml/checkpoints", "S3Uri": "s3://bucket/ckpt"}')


def get_channel_dir(name: str, base: Path | str | None = None, *, must_exist: bool = True) -> Path:
    """The data directory of channel ``name``: ``<base>/input/data/<name>``.

    :param must_exist: raise when the directory is missing (File and FastFile mode have one;
        Pipe mode has FIFOs ``<name>_<epoch>`` instead).
    :raises ConfigError: the directory does not exist, naming the channels that do.
    """
    paths = job_paths(base)
    path = paths.channel_dir(name)
    if must_exist and not path.is_dir():
        try:
            present = sorted(p.name for p in paths.input_data_dir.iterdir() if p.is_dir())
        except OSError:
            present = []
        raise ConfigError(
            f"{paths.input_data_config_file}: channel {name!r} has no data directory {path}; expected "
            "one for a File or FastFile channel: create it (e.g. put the data there), or remove the "
            f"channel from the file (channels with data: {_show(present)}).{_closest(name, present)}"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Hardware


def cgroup_cpu_limit(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPU limit of this process's cgroup (``quota / period``), or None when unlimited.

    Reads cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in this process's
    cgroup and its ancestors, and returns the smallest limit found.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    files: tuple[str, ...]
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            mount, files = root, ("cpu.max",)
        elif "cpu" in controllers.split(","):
            candidates = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
            mount = next((c for c in candidates if c.is_dir()), candidates[0])
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        directory = mount / rel.lstrip("/")
        if not directory.is_dir():
            directory = mount  # inside a container the mount is the container's own cgroup
        while True:
            limit = _read_cpu_limit(directory, files)
            if limit is not None:
                limits.append(limit)
            if directory == mount or mount not in directory.parents:
                break
            directory = directory.parent
    return min(limits) if limits else None


def _read_cpu_limit(directory: Path, files: tuple[str, ...]) -> float | None:
    try:
        if len(files) == 1:
            quota, _, period = (directory / files[0]).read_text().strip().partition(" ")
        else:
            quota = (directory / files[0]).read_text().strip()
            period = (directory / files[1]).read_text().strip()
        if quota in ("max", "-1") or not period:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """The CPUs this process may use: its CPU affinity, capped by the cgroup quota (rounded up), at least 1.

    The affinity comes from ``os.sched_getaffinity`` where the OS has it (the same system call psutil
    makes on Linux, without psutil's import time), else from ``psutil.Process().cpu_affinity()``, else
    the machine's CPU count.
    """
    count: int | None = None
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:
        try:
            import psutil

            count = len(psutil.Process().cpu_affinity() or [])
        except (ImportError, AttributeError, OSError):
            count = None
    count = count or os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)


def _command_lines(name: str, args: list[str], environ: Mapping[str, str] | None) -> str | None:
    """The output of ``name args`` when ``name`` is on PATH; None when absent or failing."""
    environ = os.environ if environ is None else environ
    executable = shutil.which(name, path=environ.get("PATH", os.defpath))
    if executable is None:
        return None
    import subprocess

    try:
        completed = subprocess.run(
            [executable, *args], capture_output=True, text=True, timeout=30, env=dict(environ), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("%s %s failed (%s): counting none.", name, " ".join(args), exc)
        return None
    if completed.returncode != 0:
        logger.info("%s %s exited %d: counting none.", name, " ".join(args), completed.returncode)
        return None
    return completed.stdout


def available_gpus(environ: Mapping[str, str] | None = None) -> int:
    """The NVIDIA GPUs: lines of ``nvidia-smi --list-gpus`` that begin ``GPU ``; 0 when it is absent.

    ``nvidia-smi`` is looked up on ``environ["PATH"]`` and only run when found.
    """
    output = _command_lines("nvidia-smi", ["--list-gpus"], environ)
    return sum(1 for line in (output or "").splitlines() if line.startswith("GPU "))


def available_neurons(environ: Mapping[str, str] | None = None, instance_type: str = "") -> int:
    """The AWS Neuron cores: the sum of ``nc_count`` in ``neuron-ls -j``; 0 when it is absent."""
    if "trn2.48xlarge" in instance_type:
        return 64  # as the reference toolkit: neuron-ls is not needed to know this instance
    output = _command_lines("neuron-ls", ["-j"], environ)
    if not output:
        return 0
    try:
        return sum(int(item.get("nc_count", 0)) for item in json.loads(output))
    except (ValueError, TypeError, AttributeError):
        logger.warning("neuron-ls -j printed something other than a JSON list: counting no Neuron cores.")
        return 0


# ---------------------------------------------------------------------------------------------
# The environment


def _frozen(mapping: Mapping[str, Any]) -> FrozenDict:
    return FrozenDict(mapping)


@dataclass(frozen=True)
class TrainingEnv:
    """Everything a training job knows about itself, read once before anything runs.

    Immutable: fields cannot be reassigned and every mapping is read-only (copy it with ``dict()``
    to change it). Field names follow the keys of ``SM_TRAINING_ENV`` in the container contract;
    the original design's names (``channel_dirs``, ``available_cpus``, ``available_gpus``,
    ``input_dir`` ...) are properties.
    """

    paths: JobPaths
    """The job directory's paths (base, code, model, output ...)."""
    hyperparameters: Mapping[str, Any] = field(hash=False)
    """The user's hyperparameters, each JSON-decoded, reserved and ``sagemaker_*`` keys removed."""
    additional_framework_parameters: Mapping[str, Any] = field(hash=False)
    """The non-reserved ``sagemaker_*`` keys (distribution switches and the like)."""
    resource_config: Mapping[str, Any] = field(hash=False)
    """``resourceconfig.json`` as read (or as built when it is missing)."""
    input_data_config: Mapping[str, Any] = field(hash=False)
    """``inputdataconfig.json`` as read: channel name to its configuration."""
    hosts: tuple[str, ...]
    """Every host of the job, in the order of ``resourceconfig.json``."""
    current_host: str
    """This host's name (``algo-1``)."""
    channel_input_dirs: Mapping[str, Path] = field(hash=False)
    """Channel name to its data directory, in the order of ``inputdataconfig.json``."""
    num_cpus: int
    """CPUs this process may use (affinity and cgroup quota)."""
    num_gpus: int
    """NVIDIA GPUs (``nvidia-smi --list-gpus``)."""
    user_entry_point: str | None = None
    """The entry point: ``$SAGEMAKER_PROGRAM``, else the ``sagemaker_program`` hyperparameter."""
    module_dir: str | None = None
    """The code URI (``sagemaker_submit_directory``): ``s3://``, a local path, or None for the code dir."""
    module_name: str | None = None
    """The entry point without ``.py`` (``train`` for ``train.py``)."""
    framework_module: str | None = None
    """``$SAGEMAKER_TRAINING_MODULE``: the framework's training module, if the image names one."""
    job_name: str | None = None
    """``$TRAINING_JOB_NAME``, else the ``sagemaker_job_name`` hyperparameter."""
    region: str | None = None
    """``sagemaker_region``, else ``$AWS_REGION`` / ``$AWS_DEFAULT_REGION``."""
    log_level: int = 20
    """``sagemaker_container_log_level`` (Python logging level)."""
    s3_output: str | None = None
    """``sagemaker_s3_output``: where ``output/intermediate`` is synced, if anywhere."""
    network_interface_name: str = DEFAULT_INTERFACE
    current_instance_type: str = "local"
    current_instance_group: str = DEFAULT_GROUP
    current_instance_group_hosts: tuple[str, ...] = ()
    """Hosts of the current instance group (empty when the config lists no groups)."""
    instance_groups: tuple[str, ...] = ()
    """Names of every instance group."""
    instance_groups_dict: Mapping[str, Any] = field(default_factory=FrozenDict, hash=False)
    """Group name to its ``instance_groups`` entry."""
    distribution_instance_groups: tuple[str, ...] = ()
    """Groups that take part in distributed training (``sagemaker_distribution_instance_groups``,
    else the current group when a distribution switch is on)."""
    distribution_hosts: tuple[str, ...] = ()
    """Hosts of the distribution groups; all hosts when the config lists no groups."""
    is_hetero: bool = False
    """More than one instance group."""
    num_neurons: int = 0
    """AWS Neuron cores (``neuron-ls -j``)."""
    is_modelparallel_enabled: bool | None = None
    """From ``$SM_HP_MP_PARAMETERS``: None when unset, else whether it holds any parameter."""
    checkpoint_config: Mapping[str, Any] = field(default_factory=FrozenDict, hash=False)
    """``checkpointconfig.json``, ``{}`` when absent."""
    raw_hyperparameters: Mapping[str, Any] = field(default_factory=FrozenDict, hash=False)
    """Every decoded hyperparameter as read, reserved keys included."""
    is_smddprun_installed: bool = False
    """``smddprun`` is on PATH (a key of sagemaker-training 5.x's ``SM_TRAINING_ENV``)."""
    is_smddpmprun_installed: bool = False
    """``smddpmprun`` is on PATH (a key of sagemaker-training 5.x's ``SM_TRAINING_ENV``)."""
    booleans_as_flags: bool = False
    """``$SMC_BOOL_FLAGS``: render ``True`` hyperparameters as bare ``--flag`` arguments, drop ``False``."""
    environ: Mapping[str, str] = field(default_factory=FrozenDict, hash=False, compare=False, repr=False)
    """The process environment the job was loaded from (PYTHONPATH, PYTHONUNBUFFERED ... are kept)."""

    # --- derived facts -------------------------------------------------------------------------
    @property
    def master_hostname(self) -> str:
        """The first distribution host (else the first host): the rendezvous master for every framework."""
        hosts = self.distribution_hosts or self.hosts
        return hosts[0]

    @property
    def is_master(self) -> bool:
        """True on the master host."""
        return self.current_host == self.master_hostname

    @property
    def current_host_rank(self) -> int:
        """This host's index in ``hosts`` (0 on the first host)."""
        return self.hosts.index(self.current_host)

    @property
    def topology(self) -> list[Any]:
        """``resourceconfig.json``'s ``topology`` (GB200 UltraServer capacity units), else ``[]``."""
        return list(self.resource_config.get("topology") or [])

    @property
    def host_count(self) -> int:
        """The number of hosts."""
        return len(self.hosts)

    @property
    def base_dir(self) -> Path:
        """The job directory (``/opt/ml``)."""
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


def _reserved_string(path: Path, reserved: Mapping[str, Any], key: str, example: str) -> str | None:
    value = reserved.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{path}: {key!r} is {_show(value)} ({_type_name(value)}), expected a JSON string, "
            f'e.g. "{example}". '
            f"Pass it JSON-encoded as the SDK does: {json.dumps(json.dumps(example))}."
        )
    return value


def _switch(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "")
    word = raw.strip().lower()
    if word not in _TRUE_WORDS | _FALSE_WORDS:
        raise ConfigError(f"The environment variable {name} is {raw!r}: expected 1 (on) or 0 (off).")
    return word in _TRUE_WORDS


def _log_level(path: Path, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and isinstance(logging.getLevelName(value.upper()), int):
        return int(logging.getLevelName(value.upper()))
    raise ConfigError(
        f"{path}: 'sagemaker_container_log_level' is {_show(value)}, expected a Python logging level "
        "such as 20 (INFO) or 10 (DEBUG)."
    )


def _instance_groups(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(config.get("instance_groups") or [])


def _distribution_groups(
    path: Path, framework: Mapping[str, Any], groups: list[dict[str, Any]], current_group: str
) -> tuple[str, ...]:
    key = "sagemaker_distribution_instance_groups"
    if key in framework:
        value = framework[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"{path}: {key!r} is {_show(value)}, expected a JSON list of instance group names, "
                'e.g. ["train"].'
            )
        names = [g["instance_group_name"] for g in groups]
        for name in value:
            if names and name not in names:
                raise ConfigError(
                    f"{path}: {key!r} names the instance group {name!r}, which resourceconfig.json does not "
                    f"list (groups: {_show(names)}).{_closest(name, names)}"
                )
        return tuple(value)
    if any(framework.get(switch) for switch in DISTRIBUTION_SWITCHES):
        return (current_group,)
    return ()


def create_environment(
    base: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    hyperparameters: Mapping[str, Any] | None = None,
    resource_config: Mapping[str, Any] | None = None,
    input_data_config: Mapping[str, Any] | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    num_neurons: int | None = None,
) -> TrainingEnv:
    """Read the job directory ``base`` (default :func:`base_dir`) and ``environ`` into a :class:`TrainingEnv`.

    The keyword arguments replace what would be read (for platforms that describe the job another
    way, and for tests): ``hyperparameters`` are decoded values, as :func:`load_hyperparameters`
    returns them; ``resource_config`` is checked like the file.

    :raises ConfigError: any bad input, naming the file, the key, the value and what was expected.
    """
    environ = os.environ if environ is None else environ
    paths = job_paths(base, environ)
    hps_file = paths.hyperparameters_file

    all_hps = dict(load_hyperparameters(paths.base_dir) if hyperparameters is None else hyperparameters)
    split = split_hyperparameters(all_hps)
    if resource_config is None:
        resource_config = load_resource_config(paths.base_dir, environ)
    else:
        resource_config = check_resource_config(dict(resource_config), "resource_config")
    if input_data_config is None:
        input_data_config = load_input_data_config(paths.base_dir)

    channel_dirs: dict[str, Path] = {}
    for name, channel in input_data_config.items():
        mode = channel.get("TrainingInputMode", "File")
        channel_dirs[name] = get_channel_dir(name, paths.base_dir, must_exist=mode in _FILE_MODES)

    hosts = tuple(resource_config["hosts"])
    current_host = resource_config["current_host"]
    instance_type = resource_config.get("current_instance_type", "local")
    current_group = resource_config.get("current_group_name") or resource_config.get(
        "current_instance_group", DEFAULT_GROUP
    )
    groups = _instance_groups(resource_config)
    group_hosts = {g["instance_group_name"]: tuple(g.get("hosts", [])) for g in groups}
    distribution_groups = _distribution_groups(hps_file, split.framework, groups, current_group)
    if groups:
        distribution_hosts = tuple(h for name in distribution_groups for h in group_hosts.get(name, ()))
    else:
        distribution_hosts = hosts

    program = environ.get("SAGEMAKER_PROGRAM") or _reserved_string(
        hps_file, split.reserved, "sagemaker_program", "train.py"
    )
    submit_dir = _reserved_string(
        hps_file, split.reserved, "sagemaker_submit_directory", "s3://bucket/job/source/sourcedir.tar.gz"
    )
    region = (
        _reserved_string(hps_file, split.reserved, "sagemaker_region", "us-west-2")
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
        or None
    )
    job_name = environ.get("TRAINING_JOB_NAME") or _reserved_string(
        hps_file, split.reserved, "sagemaker_job_name", "my-job"
    )
    s3_output = _reserved_string(hps_file, split.reserved, "sagemaker_s3_output", "s3://bucket/output")
    log_level = _log_level(hps_file, split.reserved.get("sagemaker_container_log_level", logging.INFO))
    mp_parameters = environ.get("SM_HP_MP_PARAMETERS")
    search_path = environ.get("PATH", os.defpath)

    return TrainingEnv(
        paths=paths,
        hyperparameters=_frozen(split.user),
        additional_framework_parameters=_frozen(split.framework),
        resource_config=_frozen(resource_config),
        input_data_config=_frozen(input_data_config),
        hosts=hosts,
        current_host=current_host,
        channel_input_dirs=_frozen(channel_dirs),
        num_cpus=available_cpus() if num_cpus is None else num_cpus,
        num_gpus=available_gpus(environ) if num_gpus is None else num_gpus,
        user_entry_point=program,
        module_dir=submit_dir,
        module_name=program[:-3] if program and program.endswith(".py") else program,
        framework_module=environ.get("SAGEMAKER_TRAINING_MODULE") or None,
        job_name=job_name,
        region=region,
        log_level=log_level,
        s3_output=s3_output,
        network_interface_name=resource_config.get("network_interface_name", DEFAULT_INTERFACE),
        current_instance_type=instance_type,
        current_instance_group=current_group,
        current_instance_group_hosts=group_hosts.get(current_group, ()),
        instance_groups=tuple(group_hosts),
        instance_groups_dict=_frozen({g["instance_group_name"]: g for g in groups}),
        distribution_instance_groups=distribution_groups,
        distribution_hosts=distribution_hosts,
        is_hetero=len(groups) > 1,
        num_neurons=available_neurons(environ, instance_type) if num_neurons is None else num_neurons,
        is_modelparallel_enabled=None if mp_parameters is None else mp_parameters not in ("", "{}"),
        checkpoint_config=_frozen(load_checkpoint_config(paths.base_dir)),
        raw_hyperparameters=_frozen(all_hps),
        is_smddprun_installed=shutil.which("smddprun", path=search_path) is not None,
        is_smddpmprun_installed=shutil.which("smddpmprun", path=search_path) is not None,
        booleans_as_flags=_switch(environ, BOOL_FLAGS_ENV),
        environ=_frozen(environ),
    )
