"""The training environment: the job directory and process environment, read into a typed record.

Every step is a public function that works on its own::

    from smc_core.job.environment import load_hyperparameters, get_channel_dir, available_gpus
    hyperparameters = load_hyperparameters()          # $SAGEMAKER_BASE_DIR or /opt/ml
    train_dir = get_channel_dir("train")

:func:`create_environment` composes them into the immutable :class:`TrainingEnv` that every hook
receives as ``training_env``. What each fact means, and how it reaches the user's process, follows the
container contract (the ``SM_*`` variables are rendered by :mod:`smc_core.job.exports`).

The steps live in siblings named after their concern, and every name is importable from here too:
:mod:`smc_core.job.paths` (the job directory's layout), :mod:`smc_core.job.config` (reading and checking the
config files), :mod:`smc_core.job.hyperparameters` (decoding, splitting, reserved keys),
:mod:`smc_core.job.hardware` (CPUs, GPUs, Neuron cores), :mod:`smc_core.job.platforms` (each platform's
reader, producing the one record of what the platform says,
:class:`~smc_core.job.platforms.facts.PlatformFacts`, that :func:`create_environment` takes) and
:mod:`smc_core.base.messages` (how errors quote values).

Bad input (malformed JSON, a value of the wrong type, a host that is not in ``hosts``, a channel
whose directory is missing) raises :class:`~smc_core.errors.ConfigError` naming the file, the key,
the value and what was expected; the runner turns it into ``output/failure`` and exit code 2.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smc_core.base.messages import did_you_mean, quoted, type_name
from smc_core.base.settings import BOOL_FLAGS, SYS_ROOT, Settings, parse_settings
from smc_core.base.supervision import Supervision
from smc_core.errors import ConfigError
from smc_core.job.config import (
    check_resource_config,
    get_channel_dir,
    load_checkpoint_config,
    load_config,
    load_input_data_config,
    load_resource_config,
)
from smc_core.job.hardware import (
    Efa,
    available_cpus,
    available_gpus,
    available_neurons,
    cgroup_cpu_limit,
    detect_efa,
)
from smc_core.job.hyperparameters import (
    DISTRIBUTION_SWITCHES,
    RESERVED_HYPERPARAMETERS,
    SplitHyperparameters,
    count_parameter,
    decode_hyperparameters,
    load_hyperparameters,
    split_hyperparameters,
)
from smc_core.job.hyperparameters import SAGEMAKER_PREFIX as SAGEMAKER_PREFIX  # re-exported, as before
from smc_core.job.longjobs import LongJobPolicy, long_job_policy
from smc_core.job.paths import DEFAULT_BASE_DIR as DEFAULT_BASE_DIR  # re-exported, as before outside __all__
from smc_core.job.paths import JobPaths, base_dir, job_paths, persistent_cache_dir
from smc_core.job.platforms.facts import PlatformFacts
from smc_core.job.platforms.tf_config import resource_config_from_tf_config

if TYPE_CHECKING:
    from smc_core.job.platforms.modeltrainer import ModelTrainerJob

__all__ = [
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
    "module_name",
    "resource_config_from_tf_config",
    "split_hyperparameters",
]

logger = logging.getLogger("smc")

DEFAULT_GROUP = "homogeneousCluster"
DEFAULT_INTERFACE = "eth0"

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
# The environment


def _frozen(mapping: Mapping[str, Any]) -> FrozenDict:
    return FrozenDict(mapping)


def module_name(entry_point: str | None) -> str | None:
    """The job's module name (``SM_MODULE_NAME``): ``train`` for ``train.py``, ``pkg/train`` for
    ``pkg/train.py``; any other entry point (``run.sh``, ``train``) as it is; None for None.

    As the reference toolkit, only a ``.py`` suffix is stripped. This is the one rule for the module
    name: :class:`TrainingEnv`, ``SM_MODULE_NAME`` / ``SM_TRAINING_ENV`` and
    :attr:`~smc_core.usercode.describe.UserCode.module_name` (which adds
    :func:`~smc_core.usercode.describe.import_name`'s dots) all come from it.
    """
    if entry_point is not None and entry_point.endswith(".py"):
        return entry_point[:-3]
    return entry_point


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
    """SM_MODULE_NAME: the entry point without ``.py`` (``train`` for ``train.py``), as
    :func:`module_name` computes it."""
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
    plugin_hyperparameters: Mapping[str, Any] = field(default_factory=FrozenDict, hash=False)
    """The hyperparameters the job sets that plugins claimed (the ``claim_hyperparameters`` hook),
    decoded: a plugin reads its own here. They are not in :attr:`hyperparameters`, so they never reach
    the script (arguments, ``SM_HPS``, ``SM_HP_*``, function mode); a claimed ``sagemaker_*`` name stays
    in :attr:`additional_framework_parameters` too, as the contract says."""
    is_smddprun_installed: bool = False
    """``smddprun`` is on PATH (a key of sagemaker-training 5.x's ``SM_TRAINING_ENV``)."""
    is_smddpmprun_installed: bool = False
    """``smddpmprun`` is on PATH (a key of sagemaker-training 5.x's ``SM_TRAINING_ENV``)."""
    booleans_as_flags: bool = False
    """``$SMC_BOOL_FLAGS``: render ``True`` hyperparameters as bare ``--flag`` arguments, drop ``False``."""
    platform: str = "sagemaker"
    """The platform whose description of the job was read: ``sagemaker``, ``kubeflow``, ``vertex``, or a
    plugin's own (:attr:`PlatformFacts.name <smc_core.PlatformFacts.name>`)."""
    master_port: int | None = None
    """The rendezvous port the platform names (Kubeflow's ``PET_MASTER_PORT`` or ``MASTER_PORT``, the
    primary replica's port in Vertex's ``CLUSTER_SPEC``); None: each adapter uses the contract's port."""
    processes_per_host: int | None = None
    """Processes per host the job asks for: the platform's (``PET_NPROC_PER_NODE``), else the
    hyperparameter ``sagemaker_mpi_num_of_processes_per_host``; None when it does not say: each launcher
    then takes its own setting, else :attr:`default_processes_per_host`."""
    distributed_by: str | None = None
    """What, on a platform without ``sagemaker_*`` switches, asks for a distributed launch (e.g.
    ``Kubeflow Trainer's PET_* variables``); None when nothing does (on SageMaker, always None)."""
    efa: Efa = field(default_factory=Efa)
    """AWS's Elastic Fabric Adapter on this host, as read from ``$SMC_SYS_ROOT/class/infiniband`` (the
    reference's instance lists only when that cannot be read): :func:`smc_core.job.hardware.detect_efa`."""
    script_args: tuple[str, ...] | None = None
    """The script's arguments as the container was given them (``train --epochs 3``), passed on as they
    are; None: rendered from the hyperparameters, as the contract says."""
    model_trainer: ModelTrainerJob | None = field(default=None, hash=False)
    """The SageMaker Python SDK v3 ``ModelTrainer`` layout (its ``sm_drivers`` channel) this job came
    with, or None for the classic layout (see :mod:`smc_core.job.platforms.modeltrainer`)."""
    environ: Mapping[str, str] = field(default_factory=FrozenDict, hash=False, compare=False, repr=False)
    """The process environment the job was loaded from (PYTHONPATH, PYTHONUNBUFFERED ... are kept)."""
    settings: Settings = field(kw_only=True, hash=False, compare=False, repr=False)
    """Every declared setting (the core's and the plugins'), parsed from :attr:`environ`: index it
    with a :class:`~smc_core.base.settings.Setting` (``training_env.settings[GRACE_PERIOD]``). Always
    given (a keyword argument): a TrainingEnv never parses settings of its own."""

    # --- derived facts -------------------------------------------------------------------------
    @functools.cached_property
    def supervision(self) -> Supervision:
        """The job's supervision policy, built once from :attr:`settings`: the grace periods and
        host-wait bound every launch obeys, and the plugins' own policy fields
        (:class:`~smc_core.base.supervision.Supervision`). The runner applies it for the whole job."""
        return Supervision.from_settings(self.settings)

    @functools.cached_property
    def long_jobs(self) -> LongJobPolicy:
        """Stall detection and restarts as the job asks for them: the hyperparameters
        ``sagemaker_stall_timeout``, ``sagemaker_stall_progress``, ``sagemaker_max_restarts``, else the
        settings (:func:`~smc_core.job.longjobs.long_job_policy`). The runner reads it at start, so a
        bad value fails the job before any work (:class:`~smc_core.errors.ConfigError`)."""
        return long_job_policy(self.settings, self.additional_framework_parameters)

    @property
    def master_hostname(self) -> str:
        """The first distribution host (else the first host): the rendezvous master for every framework."""
        hosts = self.distribution_hosts or self.hosts
        return hosts[0]

    @property
    def default_processes_per_host(self) -> int:
        """One process per GPU, else per Neuron core, else 1: the reference toolkit's default for every
        launcher that counts processes (``sagemaker_training/runner.py``)."""
        return self.num_gpus or self.num_neurons or 1

    @property
    def persistent_cache_dir(self) -> Path | None:
        """A directory that survives between jobs where the platform offers one (a SageMaker warm pool's
        ``/opt/ml/sagemaker/warmpoolcache``), else None: :func:`smc_core.job.paths.persistent_cache_dir`."""
        return persistent_cache_dir(self.paths, self.environ)

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
        """``input/``."""
        return self.paths.input_dir

    @property
    def input_config_dir(self) -> Path:
        """``input/config/``: the job's JSON config files."""
        return self.paths.input_config_dir

    @property
    def code_dir(self) -> Path:
        """``code/``: where the user's code is placed."""
        return self.paths.code_dir

    @property
    def model_dir(self) -> Path:
        """``model/``: the model the job produces (``SM_MODEL_DIR``)."""
        return self.paths.model_dir

    @property
    def output_dir(self) -> Path:
        """``output/``: the success and failure files."""
        return self.paths.output_dir

    @property
    def output_data_dir(self) -> Path:
        """``output/data/``: other outputs (``SM_OUTPUT_DATA_DIR``)."""
        return self.paths.output_data_dir

    @property
    def output_intermediate_dir(self) -> Path:
        """``output/intermediate/``: synced to S3 while the job runs."""
        return self.paths.output_intermediate_dir

    @property
    def checkpoint_dir(self) -> Path:
        """Where the job keeps checkpoints: ``checkpointconfig.json``'s ``LocalPath``, else
        ``<base>/checkpoints`` (``/opt/ml/checkpoints``); the platform syncs it with S3."""
        local = self.checkpoint_config.get("LocalPath")
        return Path(local) if local else self.paths.checkpoint_dir

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
    if isinstance(value, str) and not value.strip():
        raise ConfigError(
            f'{path}: {key!r} is empty; it must name something, e.g. "{example}" '
            f"(JSON-encoded as the SDK does: {json.dumps(json.dumps(example))}), or be left out."
        )
    if not isinstance(value, str):
        raise ConfigError(
            f"{path}: {key!r} is {quoted(value)} ({type_name(value)}), expected a JSON string, "
            f'e.g. "{example}". '
            f"Pass it JSON-encoded as the SDK does: {json.dumps(json.dumps(example))}."
        )
    return value


def _log_level(path: Path, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and isinstance(logging.getLevelName(value.upper()), int):
        return int(logging.getLevelName(value.upper()))
    raise ConfigError(
        f"{path}: 'sagemaker_container_log_level' is {quoted(value)}, expected a Python logging level "
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
                f"{path}: {key!r} is {quoted(value)}, expected a JSON list of instance group names, "
                'e.g. ["train"].'
            )
        names = [g["instance_group_name"] for g in groups]
        for name in value:
            if names and name not in names:
                raise ConfigError(
                    f"{path}: {key!r} names the instance group {name!r}, which resourceconfig.json does not "
                    f"list (groups: {quoted(names)}).{did_you_mean(name, names)}"
                )
        return tuple(value)
    if any(framework.get(switch) for switch in DISTRIBUTION_SWITCHES):
        return (current_group,)
    return ()


def create_environment(
    base: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    settings: Settings | None = None,
    platform: PlatformFacts | None = None,
) -> TrainingEnv:
    """Read the job directory ``base`` (default :func:`base_dir`) and ``environ`` into a :class:`TrainingEnv`.

    :param base: the job directory (``/opt/ml``, or ``$SAGEMAKER_BASE_DIR``).
    :param environ: the process environment (default: this process's).
    :param settings: the job's parsed settings, which the ``TrainingEnv`` carries (the runner passes
        every plugin's; a ``load_environment`` hook passes on the ``settings`` it is given). Called
        alone, without them: the core's settings, parsed here from ``environ``.
    :param platform: what the platform says about the job (:class:`PlatformFacts`, which each
        platform's reader produces); each fact it holds replaces what the job directory would say.
        Default: SageMaker, everything read from the job directory.
    :raises ConfigError: any bad input, naming the file, the key, the value and what was expected.

    Example::

        training_env = create_environment("/opt/ml", os.environ)
        training_env.hosts, training_env.hyperparameters["epochs"]
    """
    environ = os.environ if environ is None else environ
    if settings is None:
        settings = parse_settings(environ)
    facts = PlatformFacts() if platform is None else platform
    paths = job_paths(base, environ)
    if facts.model_dir is not None or facts.checkpoint_dir is not None or facts.code_dir is not None:
        paths = JobPaths(
            paths.base_dir,
            custom_model_dir=facts.model_dir,
            custom_checkpoint_dir=facts.checkpoint_dir,
            custom_code_dir=facts.code_dir,
        )
    hps_file = paths.hyperparameters_file

    all_hps = dict(
        load_hyperparameters(paths.base_dir) if facts.hyperparameters is None else facts.hyperparameters
    )
    split = split_hyperparameters(all_hps)
    if facts.resource_config is None:
        resource_config = load_resource_config(paths.base_dir, environ)
    else:
        resource_config = check_resource_config(dict(facts.resource_config), "resource_config")
    channels: dict[str, Path] = {}
    input_data_config = facts.input_data_config
    if facts.channel_dirs is not None:
        channels = {name: Path(path) for name, path in facts.channel_dirs.items()}
        if input_data_config is None:
            input_data_config = {name: {"TrainingInputMode": "File"} for name in channels}
    if input_data_config is None:
        input_data_config = load_input_data_config(paths.base_dir)
    for name, channel in input_data_config.items():
        if name not in channels:
            mode = channel.get("TrainingInputMode", "File")
            channels[name] = get_channel_dir(name, paths.base_dir, must_exist=mode in _FILE_MODES)
    checkpoint_config = load_checkpoint_config(paths.base_dir)
    if facts.checkpoint_dir is not None:
        checkpoint_config = {**checkpoint_config, "LocalPath": str(facts.checkpoint_dir)}

    hosts = tuple(resource_config["hosts"])
    current_host = resource_config["current_host"]
    instance_type = resource_config.get("current_instance_type", "local")
    current_group = resource_config.get("current_group_name") or resource_config.get(
        "current_instance_group", DEFAULT_GROUP
    )
    groups = _instance_groups(resource_config)
    group_hosts = {g["instance_group_name"]: tuple(g.get("hosts", [])) for g in groups}
    distribution_groups = _distribution_groups(hps_file, split.framework, groups, current_group)
    if facts.model_trainer is not None:
        # The SDK's drivers span every host, sorted: algo-1 is the master and node rank 0.
        distribution_hosts = tuple(sorted(hosts))
        if distribution_groups:
            distribution_groups = tuple(group_hosts) or distribution_groups
    elif groups:
        distribution_hosts = tuple(h for name in distribution_groups for h in group_hosts.get(name, ()))
    else:
        distribution_hosts = hosts

    program = (
        environ.get("SAGEMAKER_PROGRAM")
        or facts.entry_point
        or _reserved_string(hps_file, split.reserved, "sagemaker_program", "train.py")
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
        channel_input_dirs=_frozen(channels),
        num_cpus=available_cpus() if facts.num_cpus is None else facts.num_cpus,
        num_gpus=available_gpus(environ) if facts.num_gpus is None else facts.num_gpus,
        user_entry_point=program,
        module_dir=submit_dir,
        module_name=module_name(program),
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
        num_neurons=(
            available_neurons(environ, instance_type) if facts.num_neurons is None else facts.num_neurons
        ),
        is_modelparallel_enabled=None if mp_parameters is None else mp_parameters not in ("", "{}"),
        checkpoint_config=_frozen(checkpoint_config),
        raw_hyperparameters=_frozen(all_hps),
        is_smddprun_installed=shutil.which("smddprun", path=search_path) is not None,
        is_smddpmprun_installed=shutil.which("smddpmprun", path=search_path) is not None,
        booleans_as_flags=settings[BOOL_FLAGS],
        platform=facts.name,
        master_port=facts.master_port,
        processes_per_host=(
            facts.processes_per_host
            if facts.processes_per_host is not None
            else count_parameter(split.framework, "sagemaker_mpi_num_of_processes_per_host", hps_file)
        ),
        distributed_by=facts.distributed_by,
        efa=detect_efa(settings[SYS_ROOT], instance_type),
        script_args=None if facts.script_args is None else tuple(facts.script_args),
        model_trainer=facts.model_trainer,
        environ=_frozen(environ),
        settings=settings,
    )
