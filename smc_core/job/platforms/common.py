"""What every reader of another platform shares.

* :func:`decode_script_args`: the container's arguments (``train --epochs 3 --lr 0.1``) as
  hyperparameters, each value JSON-decoded as the contract decodes ``hyperparameters.json``.
* :func:`gcs_path`: a ``gs://bucket/path`` URI as its Cloud Storage FUSE path ``/gcs/bucket/path``.
* :func:`lay_out_job_dir`: the job directory's folders, so that every ``SM_*`` path exists.
* :func:`off_sagemaker`: all of it, completing a reader's
  :class:`~smc_core.job.platforms.facts.PlatformFacts`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from smc_core.base.settings import CHANNELS, MODEL_DIR, SCRIPT_ARGS, Settings
from smc_core.errors import ConfigError
from smc_core.job.paths import JobPaths
from smc_core.job.platforms.facts import PlatformFacts

__all__ = [
    "decode_script_args",
    "gcs_path",
    "lay_out_job_dir",
    "off_sagemaker",
    "processes_from",
]

logger = logging.getLogger("smc")

GCS_MOUNT = Path("/gcs")
"""Where Vertex AI mounts Cloud Storage (Cloud Storage FUSE): ``gs://b/p`` is ``/gcs/b/p``."""


def _is_option(arg: str) -> bool:
    if not arg.startswith("-") or arg in ("-", "--"):
        return False
    try:
        float(arg)  # -1, -0.5: values, not options
    except ValueError:
        return True
    return False


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def decode_script_args(args: Sequence[str]) -> dict[str, Any]:
    """The hyperparameters in the script's arguments.

    ``--key value``, ``--key=value`` and ``-k value`` give ``key``; a value is JSON-decoded when it is
    valid JSON (``3``, ``0.1``, ``true``, ``[64, 32]``), else kept as the string; an option followed by
    another option or by nothing is ``True`` (``--use-amp``). Arguments that follow no option are the
    script's positional arguments, not hyperparameters. A later key replaces an earlier one.

    >>> decode_script_args(["--epochs", "3", "--lr=0.1", "--use-amp", "-b", "64"])
    {'epochs': 3, 'lr': 0.1, 'use-amp': True, 'b': 64}
    """
    hyperparameters: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not _is_option(arg):
            continue
        key, equals, value = arg.lstrip("-").partition("=")
        if not key:
            continue
        if equals:
            hyperparameters[key] = _decode(value)
        elif index < len(args) and not _is_option(args[index]) and args[index] != "--":
            hyperparameters[key] = _decode(args[index])
            index += 1
        else:
            hyperparameters[key] = True
    return hyperparameters


def gcs_path(uri: str, variable: str) -> Path:
    """``gs://bucket/path`` as ``/gcs/bucket/path`` (Cloud Storage FUSE); a local path as it is.

    :raises ConfigError: another scheme (``s3://``), naming ``variable``.
    """
    if uri.startswith("gs://"):
        rest = uri[len("gs://") :]
        if not rest.strip("/"):
            raise ConfigError(f"{variable} is {uri!r}, which names no bucket: expected gs://bucket/path.")
        return GCS_MOUNT / rest
    if uri.startswith("/"):
        return Path(uri)
    raise ConfigError(
        f"{variable} is {uri!r}: expected a gs://bucket/path URI (read through Cloud Storage FUSE at "
        f"{GCS_MOUNT}/bucket/path) or an absolute path."
    )


def processes_from(value: str, variable: str, num_gpus: int, num_cpus: int) -> int:
    """Processes per host from torchrun's ``--nproc-per-node`` forms: a number, ``auto`` or ``gpu``
    (the GPU count, else 1), ``cpu`` (the CPU count).

    :raises ConfigError: anything else, naming ``variable``.
    """
    text = value.strip()
    if text in ("auto", "gpu"):
        return num_gpus or 1
    if text == "cpu":
        return max(num_cpus, 1)
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ConfigError(
        f"{variable} is {value!r}: expected a number of processes per node (e.g. 2), auto, gpu or cpu."
    )


def lay_out_job_dir(paths: JobPaths) -> None:
    """Create the job directory's folders (``input/config``, ``input/data``, ``code``, ``model`` ...)
    so that every ``SM_*`` path exists, as on SageMaker.

    :raises ConfigError: a folder cannot be created (naming it and the fix).
    """
    folders = (
        paths.input_config_dir,
        paths.input_data_dir,
        paths.code_dir,
        paths.model_dir,
        paths.output_data_dir,
        paths.output_intermediate_dir,
        paths.checkpoint_dir,
    )
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"Cannot create {folder} ({error.strerror or error}): the job directory must be writable. "
                "Set SAGEMAKER_BASE_DIR to a writable directory (e.g. /tmp/ml), or mount a volume there."
            ) from error


def _channels(settings: Settings, platform_channels: Mapping[str, Path]) -> dict[str, Path]:
    channels = dict(platform_channels)
    for name, path in settings[CHANNELS]:
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(
                f"SMC_CHANNELS names {name}={path}, which is not a directory. Mount the data there, "
                "or fix the path."
            )
        channels[name] = folder
    return channels


def off_sagemaker(
    facts: PlatformFacts,
    base: Path,
    environ: Mapping[str, str],
    settings: Settings,
    *,
    job_name: str | None = None,
    distribution_groups: list[str] | None = None,
) -> PlatformFacts:
    """``facts`` from a platform without SageMaker's job directory, completed as the contract asks, and
    the job directory laid out (:func:`lay_out_job_dir`) so that every ``SM_*`` path exists.

    Hyperparameters come from the script's arguments (``SMC_SCRIPT_ARGS``, which ``train ARG...``
    sets), which reach the script as given; the code source from ``SAGEMAKER_SUBMIT_DIRECTORY`` and
    the entry point from ``SAGEMAKER_PROGRAM``. ``SMC_MODEL_DIR`` replaces the model dir;
    ``SMC_CHANNELS`` adds to (and replaces) the channels. ``job_name`` becomes ``sagemaker_job_name``
    (unless the arguments give one); ``distribution_groups`` become
    ``sagemaker_distribution_instance_groups`` (the instance groups a distributed launch spans).

    :raises ConfigError: bad input, naming the variable, the value and the fix.
    """
    args = settings[SCRIPT_ARGS] or ()
    hyperparameters = decode_script_args(args)
    submit_dir = environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "").strip()
    if submit_dir:
        hyperparameters["sagemaker_submit_directory"] = submit_dir
    if job_name and "sagemaker_job_name" not in hyperparameters:
        hyperparameters["sagemaker_job_name"] = job_name
    if distribution_groups is not None:
        hyperparameters["sagemaker_distribution_instance_groups"] = list(distribution_groups)
    model_dir = Path(settings[MODEL_DIR]) if settings[MODEL_DIR] else facts.model_dir
    lay_out_job_dir(JobPaths(base, custom_model_dir=model_dir, custom_checkpoint_dir=facts.checkpoint_dir))
    return replace(
        facts,
        hyperparameters=hyperparameters,
        channel_dirs=_channels(settings, facts.channel_dirs or {}),
        model_dir=model_dir,
        script_args=tuple(args),
    )
