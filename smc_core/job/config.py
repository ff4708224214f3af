"""Reading and checking the job's config files under ``input/config`` and the channel directories.

Each reader returns plain JSON values and raises :class:`~smc_core.errors.ConfigError` naming the
file, the key, the value and what was expected.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core.base.messages import did_you_mean, quoted, type_name
from smc_core.errors import ConfigError
from smc_core.job.paths import job_paths
from smc_core.job.platforms.tf_config import resource_config_from_tf_config

__all__ = [
    "check_resource_config",
    "get_channel_dir",
    "load_checkpoint_config",
    "load_config",
    "load_input_data_config",
    "load_object",
    "load_resource_config",
]

_MISSING: Any = object()


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


def load_object(path: Path, default: Any, example: str) -> dict[str, Any]:
    """:func:`load_config`, and the value must be a JSON object (``example`` shows one in the error)."""
    value = load_config(path, default)
    if not isinstance(value, dict):
        raise ConfigError(
            f"{path}: holds {type_name(value)} ({quoted(value)}), expected a JSON object, e.g. {example}."
        )
    return value


def _string_list(path: Path, key: str, value: Any, example: str, *, allow_empty: bool = False) -> list[str]:
    if (
        not isinstance(value, list)
        or not all(isinstance(item, str) and item for item in value)
        or (not value and not allow_empty)
    ):
        raise ConfigError(
            f"{path}: {key!r} is {quoted(value)} ({type_name(value)}), expected a "
            f"{'' if allow_empty else 'non-empty '}list of host names, e.g. {example}."
        )
    if len(set(value)) != len(value):
        twice = sorted({item for item in value if value.count(item) > 1})
        raise ConfigError(f"{path}: {key!r} is {quoted(value)}, which names {quoted(twice)} more than once.")
    return value


def _optional_string(path: Path, config: Mapping[str, Any], key: str, default: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{path}: {key!r} is {quoted(value)} ({type_name(value)}), expected a non-empty string."
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
        raise ConfigError(f"{path}: holds {type_name(config)} ({quoted(config)}), expected a JSON object.")
    if "hosts" not in config:
        raise ConfigError(f'{path}: has no "hosts" key; expected e.g. "hosts": ["algo-1", "algo-2"].')
    hosts = _string_list(path, "hosts", config["hosts"], '["algo-1", "algo-2"]')
    if "current_host" not in config:
        raise ConfigError(f'{path}: has no "current_host" key; expected one of {quoted(hosts)}.')
    current = config["current_host"]
    if not isinstance(current, str) or current not in hosts:
        raise ConfigError(
            f"{path}: 'current_host' is {quoted(current)}, which is not among 'hosts' {quoted(hosts)}; "
            f"expected one of them.{did_you_mean(str(current), hosts)}"
        )
    for key in ("network_interface_name", "current_instance_type", "current_group_name"):
        if key in config:
            _optional_string(path, config, key, "")
    groups = config.get("instance_groups", [])
    if not isinstance(groups, list):
        raise ConfigError(
            f"{path}: 'instance_groups' is {quoted(groups)} ({type_name(groups)}), expected a list of "
            'objects like {"instance_group_name": "train", "instance_type": "ml.p4d.24xlarge", '
            '"hosts": ["algo-1"]}.'
        )
    for index, group in enumerate(groups):
        where = f"instance_groups[{index}]"
        if not isinstance(group, dict) or not isinstance(group.get("instance_group_name"), str):
            raise ConfigError(
                f"{path}: {where} is {quoted(group)}, expected an object with a string 'instance_group_name' "
                "and a list of 'hosts'."
            )
        for host in _string_list(path, f"{where}.hosts", group.get("hosts"), '["algo-1"]', allow_empty=True):
            if host not in hosts:
                raise ConfigError(
                    f"{path}: {where}.hosts names {quoted(host)}, which is not among 'hosts' {quoted(hosts)}."
                )
    return config


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

        hostname = socket.gethostname()
        return {"current_host": hostname, "hosts": [hostname]}
    return check_resource_config(config, path)


def load_input_data_config(base: Path | str | None = None) -> dict[str, Any]:
    """The channels from ``inputdataconfig.json`` (``{}`` when the file is missing), checked.

    :raises ConfigError: malformed JSON, a channel that is not an object, or a name that is not a
        plain directory name.
    """
    path = job_paths(base).input_data_config_file
    config = load_object(path, {}, '{"train": {"TrainingInputMode": "File"}}')
    for name, channel in config.items():
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise ConfigError(
                f"{path}: the channel name {quoted(name)} is not a plain directory name; "
                "expected a name like train or validation."
            )
        if "=" in name:  # it names the variable SM_CHANNEL_<NAME>, which cannot hold '='
            raise ConfigError(
                f"{path}: the channel name {quoted(name)} contains '=', which cannot be in the environment "
                f"variable SM_CHANNEL_{name.upper()} that names its directory; rename the channel "
                "(e.g. with '-' or '_')."
            )
        if not isinstance(channel, dict):
            raise ConfigError(
                f"{path}: channel {name!r} is {quoted(channel)} ({type_name(channel)}), expected an object "
                'like {"TrainingInputMode": "File"}.'
            )
    return config


def load_checkpoint_config(base: Path | str | None = None) -> dict[str, Any]:
    """The optional ``checkpointconfig.json`` (``{"LocalPath": ..., "S3Uri": ...}``), ``{}`` when missing."""
    path = job_paths(base).checkpoint_config_file
    return load_object(path, {}, '{"LocalPath": "/opt/ml/checkpoints", "S3Uri": "s3://bucket/ckpt"}')


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
            f"channel from the file (channels with data: {quoted(present)}).{did_you_mean(name, present)}"
        )
    return path
