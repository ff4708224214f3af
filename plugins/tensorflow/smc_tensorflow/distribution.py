"""How a TensorFlow job spans hosts: the switches, the launch style, ``TF_CONFIG`` and the settings.

Plain functions, no TensorFlow import: each works on a :class:`smc_core.TrainingEnv`. ``TF_CONFIG``
itself comes from the core's shared builders (:func:`smc_core.multi_worker_tf_config`,
:func:`smc_core.parameter_server_tf_config`), as the container contract lays it out.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any

from smc_core import (
    Setting,
    TrainingEnv,
    is_true,
    logger,
    multi_worker_tf_config,
    parameter_server_tf_config,
    resolve_host,
    tf_config_json,
)

OWNER = "smc-tensorflow"
MULTI_WORKER_SWITCH = "sagemaker_multi_worker_mirrored_strategy_enabled"
PARAMETER_SERVER_SWITCH = "sagemaker_parameter_server_enabled"
SWITCHES = (MULTI_WORKER_SWITCH, PARAMETER_SERVER_SWITCH)
"""The distribution switches this adapter launches (the SageMaker SDK's ``distribution=``)."""

WORKER_PORT = 8890
"""Every MultiWorkerMirrored worker's port (the contract's)."""
PS_PORT = 2223
"""The parameter-server task's port on every host (the contract's)."""
MASTER_PORT = 2222
"""The master and worker tasks' port in a parameter-server job (the contract's)."""

PS_WAIT_TIMEOUT = Setting.seconds(
    "SMC_TF_PS_WAIT_TIMEOUT",
    3600.0,
    "parameter-server jobs: seconds a non-master host whose worker has ended keeps its parameter server "
    "up, waiting for the master host to finish, before it gives up and fails",
    positive=True,
    owner=OWNER,
    policy=True,
)
PEER_WAIT_TIMEOUT = Setting.seconds(
    "SMC_TF_PEER_WAIT_TIMEOUT",
    600.0,
    "multi-host jobs: seconds the master host, once its own worker has succeeded, keeps passing failures "
    "on until every other host's worker has ended",
    positive=True,
    owner=OWNER,
    policy=True,
)
SETTINGS = (PS_WAIT_TIMEOUT, PEER_WAIT_TIMEOUT)
"""Every setting this adapter reads (declared through ``register_settings``)."""

TF_CPP_MIN_LOG_LEVEL = "1"
"""TensorFlow's C++ log level in the user's processes unless the job sets its own (the reference's)."""


class LaunchStyle(enum.Enum):
    """How this adapter runs the job on a host."""

    ONE_PROCESS = "one process"
    """No switch (or a one-host parameter-server job): the core runs the entry point once."""
    MULTI_WORKER = "MultiWorkerMirroredStrategy"
    """Every host is a worker (port 8890); ``TF_CONFIG`` tells TensorFlow the cluster."""
    PARAMETER_SERVER = "parameter server"
    """A parameter server (port 2223) beside the worker on every host; the first host is the master."""


def launch_style(training_env: TrainingEnv, *, quiet: bool = False) -> LaunchStyle:
    """The launch style the job's switches ask for on this host.

    A parameter-server job needs more than one host (as in the reference): on one host the switch is
    logged (unless ``quiet``) and the entry point runs once. A host outside the distribution instance
    groups (a heterogeneous job) runs its entry point once, without ``TF_CONFIG``.
    """
    params = training_env.additional_framework_parameters
    ps_on, mwms_on = is_true(params.get(PARAMETER_SERVER_SWITCH)), is_true(params.get(MULTI_WORKER_SWITCH))
    if not (ps_on or mwms_on):
        return LaunchStyle.ONE_PROCESS
    if training_env.current_host not in cluster_hosts(training_env):
        if not quiet:
            logger.info(
                "%s is not in the distribution instance groups %s: it runs its entry point once, without "
                "TF_CONFIG.",
                training_env.current_host,
                list(training_env.distribution_instance_groups),
            )
        return LaunchStyle.ONE_PROCESS
    if ps_on:
        if len(cluster_hosts(training_env)) > 1:
            return LaunchStyle.PARAMETER_SERVER
        if not quiet:
            logger.info(
                "%s is on, but this job has one host: no parameter server runs.", PARAMETER_SERVER_SWITCH
            )
    return LaunchStyle.MULTI_WORKER if mwms_on else LaunchStyle.ONE_PROCESS


def cluster_hosts(training_env: TrainingEnv) -> list[str]:
    """The hosts that take part in the TensorFlow cluster: the distribution hosts, else every host."""
    return list(training_env.distribution_hosts or training_env.hosts)


def worker_tf_config(training_env: TrainingEnv, style: LaunchStyle) -> dict[str, Any] | None:
    """``TF_CONFIG`` for the user's process on this host, or None when the style needs none.

    A one-host MultiWorkerMirrored job whose host name does not resolve (``smc local`` calls the
    machine ``algo-1``) names its worker ``localhost:8890``: TensorFlow would otherwise wait forever
    for an address it cannot look up (and ignore SIGTERM meanwhile).
    """
    hosts = cluster_hosts(training_env)
    if style is LaunchStyle.MULTI_WORKER:
        tf_config = multi_worker_tf_config(hosts, training_env.current_host)
        if len(hosts) == 1 and resolve_host(hosts[0]) is None:
            logger.info(
                "%s does not resolve: this one-host job's worker is localhost:%d.", hosts[0], WORKER_PORT
            )
            tf_config["cluster"]["worker"] = [f"localhost:{WORKER_PORT}"]
        return tf_config
    if style is LaunchStyle.PARAMETER_SERVER:
        return parameter_server_tf_config(hosts, training_env.current_host)
    return None


def ps_tf_config(training_env: TrainingEnv) -> dict[str, Any]:
    """``TF_CONFIG`` for this host's parameter-server process: the same cluster, task ``ps``."""
    return parameter_server_tf_config(cluster_hosts(training_env), training_env.current_host, task_type="ps")


def process_variables(training_env: TrainingEnv, style: LaunchStyle) -> dict[str, str]:
    """The variables this adapter adds for the user's processes.

    ``TF_CONFIG`` (when the style has one), ``TF_CPP_MIN_LOG_LEVEL=1`` unless the job's environment
    sets it (the job's value is kept), and ``S3_REGION``/``S3_USE_HTTPS`` for TensorFlow's S3 file
    system, as the reference sets them, unless set.
    """
    variables: dict[str, str] = {}
    tf_config = worker_tf_config(training_env, style)
    if tf_config is not None:
        variables["TF_CONFIG"] = tf_config_json(tf_config)
    environ = training_env.environ
    defaults = {"TF_CPP_MIN_LOG_LEVEL": TF_CPP_MIN_LOG_LEVEL, "S3_USE_HTTPS": "1"}
    if training_env.region:
        defaults["S3_REGION"] = training_env.region
    for name, value in defaults.items():
        if not environ.get(name, "").strip():
            variables[name] = value
    return variables


TUNING_KEY = "_tuning_objective_metric"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def tuned_model_dir(model_dir: Any, job_name: str | None) -> str | None:
    """The ``model_dir`` hyperparameter of a tuning job's training job, as the reference rewrites it.

    The training jobs of one tuning job share their hyperparameters, so an ``s3://`` (any URI)
    ``model_dir`` gets ``/<job name>/model`` appended and each job writes its own. A local path is left
    alone. Returns the new value, or None when nothing changes.

    >>> tuned_model_dir("s3://bucket/out", "tune-001")
    's3://bucket/out/tune-001/model'
    >>> tuned_model_dir("/opt/ml/model", "tune-001") is None
    True
    """
    if not isinstance(model_dir, str) or not _URI.match(model_dir) or model_dir.startswith("file://"):
        return None
    return f"{model_dir.rstrip('/')}/{job_name or 'training-job'}/model"


def with_tuning_model_dir(training_env: TrainingEnv) -> TrainingEnv:
    """``training_env`` with ``model_dir`` rewritten by :func:`tuned_model_dir` when the job is part of a
    hyperparameter tuning job (``_tuning_objective_metric`` is among its hyperparameters); else as it is.

    The rewritten value reaches the script everywhere the hyperparameter does: ``--model_dir``,
    ``SM_HP_MODEL_DIR`` and ``SM_HPS``.
    """
    if TUNING_KEY not in training_env.raw_hyperparameters:
        return training_env
    hyperparameters = training_env.hyperparameters
    new = tuned_model_dir(hyperparameters.get("model_dir"), training_env.job_name)
    if new is None:
        return training_env
    logger.info("Tuning job: appending the training job name to model_dir: %s", new)
    # The same read-only mapping type the environment uses, with one value changed.
    mapping_type: Any = type(hyperparameters)
    changed = mapping_type({**hyperparameters, "model_dir": new})
    return dataclasses.replace(training_env, hyperparameters=changed)


def gpu_summary(training_env: TrainingEnv, environ: Mapping[str, str]) -> str:
    """One log line on GPUs: the count, the visible devices, and that one process uses them all."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    shown = "unset (all)" if visible is None else repr(visible)
    if training_env.num_gpus == 0:
        return f"SM_NUM_GPUS=0: TensorFlow runs on CPU (CUDA_VISIBLE_DEVICES {shown})."
    return (
        f"SM_NUM_GPUS={training_env.num_gpus}, CUDA_VISIBLE_DEVICES {shown}: one worker process on this "
        "host uses every visible GPU (TensorFlow places work on all local GPUs from one process)."
    )
