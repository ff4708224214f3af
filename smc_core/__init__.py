"""smc: the toolkit that runs inside machine-learning training containers.

This module is smc's public API: what adapters, plugins and their tests may import. Everything here
is importable as ``from smc_core import NAME`` (test helpers from :mod:`smc_core.testing`); every
other module of the package is internal and may change in any release.

Compatibility (0.x): the names below keep their meaning within a minor release (0.1.x); a minor
release (0.2) may change them, and says so in its notes. Keyword arguments may be added to
functions and fields (with defaults) to dataclasses at any release.

Names are imported on first use, so ``import smc_core`` stays cheap: the runner's own start, ``smc
plugins`` and ``smc env`` import only what a job uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("smc")
"""Marks a function as an smc hook implementation: ``@hookimpl`` above ``def prepare_training(...)``."""

# Public name -> the internal module that defines it.
_EXPORTS: dict[str, str] = {
    # the hook types
    "TrainingEnv": "smc_core.job.environment",
    "create_environment": "smc_core.job.environment",
    "PlatformFacts": "smc_core.job.platforms.facts",
    "JobPaths": "smc_core.job.paths",
    "UserCode": "smc_core.usercode.describe",
    "EntryKind": "smc_core.usercode.describe",
    "describe_user_code": "smc_core.usercode.describe",
    "TrainingResult": "smc_core.launch.result",
    # errors
    "SmcError": "smc_core.errors",
    "ConfigError": "smc_core.errors",
    "PluginError": "smc_core.errors",
    "FetchError": "smc_core.errors",
    "InstallError": "smc_core.errors",
    "ClusterError": "smc_core.errors",
    "UserCodeError": "smc_core.errors",
    "StallError": "smc_core.errors",
    # settings
    "Setting": "smc_core.base.settings",
    "Settings": "smc_core.base.settings",
    "GRACE_PERIOD": "smc_core.base.settings",
    "HOST_WAIT_TIMEOUT": "smc_core.base.settings",
    "LIVENESS_TIMEOUT": "smc_core.base.settings",
    "settings_table": "smc_core.base.settings",
    # the supervision policy every launch obeys
    "Supervision": "smc_core.base.supervision",
    "LongJobPolicy": "smc_core.job.longjobs",
    "deterministic_error": "smc_core.job.longjobs",
    "ProcessStacks": "smc_core.launch.stacks",
    "dump_stacks": "smc_core.launch.stacks",
    "adopted_processes": "smc_core.launch.stacks",
    # running processes
    "SupervisedProcess": "smc_core.launch.process",
    "start_process": "smc_core.launch.process",
    "run_process": "smc_core.launch.process",
    "python_executable": "smc_core.launch.process",
    "entry_command": "smc_core.usercode.entry",
    # the steps, each usable alone, and their composition (the original design's first principle)
    "fetch_source": "smc_core.usercode.fetch",
    "fetch_code": "smc_core.usercode.fetch",
    "extract_archive": "smc_core.usercode.archive",
    "install_requirements": "smc_core.usercode.install",
    "install_package": "smc_core.usercode.install",
    "import_user_module": "smc_core.launch.functions",
    "call_with_hyperparameters": "smc_core.launch.functions",
    "intersect_fn_parameters": "smc_core.launch.functions",
    "train_from_source": "smc_core.usercode.pipeline",
    "first_failure": "smc_core.cluster.group",
    "run_ranks": "smc_core.cluster.group",
    "rank_prefix": "smc_core.launch.output",
    # the cluster toolkit: hosts and networks, bounded waits, failing-rank reports, the job's channel
    "wait_for_hosts": "smc_core.cluster.network",
    "wait_for_port": "smc_core.cluster.network",
    "resolve_host": "smc_core.cluster.network",
    "interface_exists": "smc_core.cluster.network",
    "interface_address": "smc_core.cluster.network",
    "route_interface": "smc_core.cluster.network",
    "rendezvous_host": "smc_core.cluster.network",
    "wait_until": "smc_core.cluster.waits",
    "RankFailure": "smc_core.cluster.report",
    "root_failure": "smc_core.cluster.report",
    "traceback_tail": "smc_core.cluster.report",
    "TRACEBACK_CHARS": "smc_core.cluster.report",
    "Message": "smc_core.cluster.messages",
    "message_kind": "smc_core.cluster.messages",
    "Hello": "smc_core.cluster.messages",
    "Welcome": "smc_core.cluster.messages",
    "Bye": "smc_core.cluster.messages",
    "Ack": "smc_core.cluster.messages",
    "Outcome": "smc_core.cluster.messages",
    "RankFailed": "smc_core.cluster.messages",
    "OutputStream": "smc_core.cluster.messages",
    "Output": "smc_core.cluster.messages",
    "Heartbeat": "smc_core.cluster.messages",
    "JobStopping": "smc_core.cluster.messages",
    "HostLost": "smc_core.cluster.messages",
    "ChannelMaster": "smc_core.cluster.channel",
    "ChannelLink": "smc_core.cluster.channel",
    "Connection": "smc_core.cluster.channel",
    "Gathered": "smc_core.cluster.channel",
    "Peer": "smc_core.cluster.channel",
    "deliver": "smc_core.cluster.channel",
    "JobChannel": "smc_core.cluster.job",
    "job_channel": "smc_core.cluster.job",
    "open_job_channel": "smc_core.cluster.job",
    "LostHost": "smc_core.cluster.job",
    "StopSeen": "smc_core.cluster.job",
    # what the user's process gets
    "exported_vars": "smc_core.job.exports",
    "encode_value": "smc_core.job.exports",
    "user_args": "smc_core.job.exports",
    "is_true": "smc_core.job.hyperparameters",
    "count_parameter": "smc_core.job.hyperparameters",
    # accelerator and network hardware
    "Efa": "smc_core.job.hardware",
    "detect_efa": "smc_core.job.hardware",
    "network_variables": "smc_core.job.accelerators",
    # TF_CONFIG, shared by the TensorFlow and Keras adapters
    "multi_worker_tf_config": "smc_core.job.tf_config",
    "parameter_server_tf_config": "smc_core.job.tf_config",
    "tf_config_json": "smc_core.job.tf_config",
    # logging
    "logger": "smc_core.base.log",
}

__all__ = ["__version__", "hookimpl", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'smc_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # names for type checkers and IDEs; at run time __getattr__ imports them
    from smc_core.base.log import logger as logger
    from smc_core.base.settings import GRACE_PERIOD as GRACE_PERIOD
    from smc_core.base.settings import HOST_WAIT_TIMEOUT as HOST_WAIT_TIMEOUT
    from smc_core.base.settings import LIVENESS_TIMEOUT as LIVENESS_TIMEOUT
    from smc_core.base.settings import Setting as Setting
    from smc_core.base.settings import Settings as Settings
    from smc_core.base.settings import settings_table as settings_table
    from smc_core.base.supervision import Supervision as Supervision
    from smc_core.cluster.channel import ChannelLink as ChannelLink
    from smc_core.cluster.channel import ChannelMaster as ChannelMaster
    from smc_core.cluster.channel import Connection as Connection
    from smc_core.cluster.channel import Gathered as Gathered
    from smc_core.cluster.channel import Peer as Peer
    from smc_core.cluster.channel import deliver as deliver
    from smc_core.cluster.group import first_failure as first_failure
    from smc_core.cluster.group import run_ranks as run_ranks
    from smc_core.cluster.job import JobChannel as JobChannel
    from smc_core.cluster.job import LostHost as LostHost
    from smc_core.cluster.job import StopSeen as StopSeen
    from smc_core.cluster.job import job_channel as job_channel
    from smc_core.cluster.job import open_job_channel as open_job_channel
    from smc_core.cluster.messages import Ack as Ack
    from smc_core.cluster.messages import Bye as Bye
    from smc_core.cluster.messages import Heartbeat as Heartbeat
    from smc_core.cluster.messages import Hello as Hello
    from smc_core.cluster.messages import HostLost as HostLost
    from smc_core.cluster.messages import JobStopping as JobStopping
    from smc_core.cluster.messages import Message as Message
    from smc_core.cluster.messages import Outcome as Outcome
    from smc_core.cluster.messages import Output as Output
    from smc_core.cluster.messages import OutputStream as OutputStream
    from smc_core.cluster.messages import RankFailed as RankFailed
    from smc_core.cluster.messages import Welcome as Welcome
    from smc_core.cluster.messages import message_kind as message_kind
    from smc_core.cluster.network import interface_address as interface_address
    from smc_core.cluster.network import interface_exists as interface_exists
    from smc_core.cluster.network import rendezvous_host as rendezvous_host
    from smc_core.cluster.network import resolve_host as resolve_host
    from smc_core.cluster.network import route_interface as route_interface
    from smc_core.cluster.network import wait_for_hosts as wait_for_hosts
    from smc_core.cluster.network import wait_for_port as wait_for_port
    from smc_core.cluster.report import TRACEBACK_CHARS as TRACEBACK_CHARS
    from smc_core.cluster.report import RankFailure as RankFailure
    from smc_core.cluster.report import root_failure as root_failure
    from smc_core.cluster.report import traceback_tail as traceback_tail
    from smc_core.cluster.waits import wait_until as wait_until
    from smc_core.errors import ClusterError as ClusterError
    from smc_core.errors import ConfigError as ConfigError
    from smc_core.errors import FetchError as FetchError
    from smc_core.errors import InstallError as InstallError
    from smc_core.errors import PluginError as PluginError
    from smc_core.errors import SmcError as SmcError
    from smc_core.errors import UserCodeError as UserCodeError
    from smc_core.job.accelerators import network_variables as network_variables
    from smc_core.job.environment import TrainingEnv as TrainingEnv
    from smc_core.job.environment import create_environment as create_environment
    from smc_core.job.exports import encode_value as encode_value
    from smc_core.job.exports import exported_vars as exported_vars
    from smc_core.job.exports import user_args as user_args
    from smc_core.job.hardware import Efa as Efa
    from smc_core.job.hardware import detect_efa as detect_efa
    from smc_core.job.hyperparameters import count_parameter as count_parameter
    from smc_core.job.hyperparameters import is_true as is_true
    from smc_core.job.paths import JobPaths as JobPaths
    from smc_core.job.platforms.facts import PlatformFacts as PlatformFacts
    from smc_core.job.tf_config import multi_worker_tf_config as multi_worker_tf_config
    from smc_core.job.tf_config import parameter_server_tf_config as parameter_server_tf_config
    from smc_core.job.tf_config import tf_config_json as tf_config_json
    from smc_core.launch.functions import call_with_hyperparameters as call_with_hyperparameters
    from smc_core.launch.functions import import_user_module as import_user_module
    from smc_core.launch.functions import intersect_fn_parameters as intersect_fn_parameters
    from smc_core.launch.output import rank_prefix as rank_prefix
    from smc_core.launch.process import SupervisedProcess as SupervisedProcess
    from smc_core.launch.process import python_executable as python_executable
    from smc_core.launch.process import run_process as run_process
    from smc_core.launch.process import start_process as start_process
    from smc_core.launch.result import TrainingResult as TrainingResult
    from smc_core.usercode.archive import extract_archive as extract_archive
    from smc_core.usercode.describe import EntryKind as EntryKind
    from smc_core.usercode.describe import UserCode as UserCode
    from smc_core.usercode.describe import describe_user_code as describe_user_code
    from smc_core.usercode.entry import entry_command as entry_command
    from smc_core.usercode.fetch import fetch_code as fetch_code
    from smc_core.usercode.fetch import fetch_source as fetch_source
    from smc_core.usercode.install import install_package as install_package
    from smc_core.usercode.install import install_requirements as install_requirements
    from smc_core.usercode.pipeline import train_from_source as train_from_source
