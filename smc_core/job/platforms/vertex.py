"""Vertex AI custom training jobs, read into a TrainingEnv (docs/platforms/vertex.md has the table).

* ``CLUSTER_SPEC``: ``{"cluster": {"workerpool0": ["host:port"], "workerpool1": [...], ...},
  "task": {"type": "workerpool0", "index": 0}}``. ``workerpool0`` is the primary replica (the master),
  ``workerpool1`` the workers, ``workerpool2`` parameter servers or the reduction server,
  ``workerpool3`` evaluators. Hosts are the replicas' names as given, pool by pool; each pool is an
  instance group; a distributed launch spans ``workerpool0`` and ``workerpool1``, whose replicas
  together are the request for it when there are several; the rendezvous port is the primary's.
* ``AIP_MODEL_DIR``, ``AIP_CHECKPOINT_DIR``: ``gs://`` URIs, used at their ``/gcs/`` paths
  (Cloud Storage FUSE) as the model and checkpoint dirs.
* ``AIP_TRAINING_DATA_URI``, ``AIP_VALIDATION_DATA_URI``, ``AIP_TEST_DATA_URI`` (managed datasets):
  the channels ``training``, ``validation``, ``test`` at their ``/gcs/`` folders.
* Hyperparameters arrive as the container's arguments (``train --epochs 3``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core.base.messages import quoted
from smc_core.base.settings import Settings
from smc_core.errors import ConfigError
from smc_core.job.platforms.common import gcs_path, off_sagemaker
from smc_core.job.platforms.facts import PlatformFacts

__all__ = ["DATA_CHANNELS", "resource_config_from_cluster_spec", "vertex_facts"]

POOLS = ("workerpool0", "workerpool1", "workerpool2", "workerpool3")
TRAINING_POOLS = ("workerpool0", "workerpool1")
DATA_CHANNELS = {
    "AIP_TRAINING_DATA_URI": "training",
    "AIP_VALIDATION_DATA_URI": "validation",
    "AIP_TEST_DATA_URI": "test",
}
"""Managed-dataset variables and the channel each becomes."""

_EXAMPLE = (
    '{"cluster": {"workerpool0": ["primary:2222"], "workerpool1": ["worker-0:2222"]}, '
    '"task": {"type": "workerpool1", "index": 0}}'
)


def _split(address: str) -> tuple[str, int | None]:
    host, _, port = address.rpartition(":")
    if host and port.isdigit():
        return host, int(port)
    return address, None


def resource_config_from_cluster_spec(cluster_spec: str) -> tuple[dict[str, Any], int | None]:
    """The resource config of a ``CLUSTER_SPEC`` value, and the primary replica's port (or None).

    :raises ConfigError: ``cluster_spec`` is not the JSON Vertex AI sets.
    """
    try:
        parsed = json.loads(cluster_spec)
        cluster, task = parsed["cluster"], parsed["task"]
        pools = [name for name in POOLS if cluster.get(name)]
        pools += sorted(name for name in cluster if name not in POOLS and cluster[name])
        groups = [
            {"instance_group_name": name, "hosts": [_split(address)[0] for address in cluster[name]]}
            for name in pools
        ]
        current = _split(cluster[task["type"]][int(task["index"])])[0]
        primary_port = _split(cluster["workerpool0"][0])[1] if cluster.get("workerpool0") else None
        current_pool = str(task["type"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ConfigError(
            f"CLUSTER_SPEC: {quoted(cluster_spec)} is not a Vertex AI cluster description ({exc!r}); "
            f"expected e.g. {_EXAMPLE}."
        ) from exc
    hosts = [host for group in groups for host in group["hosts"]]
    config = {
        "current_host": current,
        "hosts": hosts,
        "current_instance_type": "vertex-ai",
        "current_group_name": current_pool,
        "instance_groups": groups,
    }
    return config, primary_port


def _data_channel(uri: str, variable: str) -> Path:
    path = gcs_path(uri, variable)
    # Managed datasets name files by a pattern (gs://b/dir/training-*): the channel is their folder.
    return path.parent if any(char in path.name for char in "*?[") else path


def vertex_facts(base: Path, environ: Mapping[str, str], settings: Settings) -> PlatformFacts:
    """What a Vertex AI replica's variables say about the job (see the module docstring for the
    mapping), completed by :func:`~smc_core.job.platforms.common.off_sagemaker`.

    :raises ConfigError: ``CLUSTER_SPEC`` is missing or malformed, or a ``AIP_*`` URI is not ``gs://``.
    """
    spec = environ.get("CLUSTER_SPEC", "").strip()
    if not spec:
        raise ConfigError(
            "CLUSTER_SPEC is not set: Vertex AI sets it on every replica of a custom job, e.g. "
            f"{_EXAMPLE}. Set it as Vertex would, or unset SMC_PLATFORM."
        )
    resource_config, port = resource_config_from_cluster_spec(spec)
    groups = {g["instance_group_name"]: g["hosts"] for g in resource_config["instance_groups"]}
    training_hosts = [host for pool in TRAINING_POOLS for host in groups.get(pool, [])]
    # Parameter servers and evaluators take no part in a torchrun launch: name the training pools.
    extra_pools = set(groups) - set(TRAINING_POOLS)
    distribution_groups = [pool for pool in TRAINING_POOLS if pool in groups] if extra_pools else None
    model = environ.get("AIP_MODEL_DIR", "").strip()
    checkpoints = environ.get("AIP_CHECKPOINT_DIR", "").strip()
    channels = {
        name: _data_channel(environ[variable].strip(), variable)
        for variable, name in DATA_CHANNELS.items()
        if environ.get(variable, "").strip()
    }
    in_training = resource_config["current_host"] in training_hosts
    facts = PlatformFacts(
        name="vertex",
        resource_config=resource_config,
        model_dir=gcs_path(model, "AIP_MODEL_DIR") if model else None,
        checkpoint_dir=gcs_path(checkpoints, "AIP_CHECKPOINT_DIR") if checkpoints else None,
        channel_dirs=channels,
        master_port=port,
        distributed_by=(
            f"Vertex AI's CLUSTER_SPEC ({len(training_hosts)} replicas in workerpool0 and workerpool1)"
            if len(training_hosts) > 1 and in_training
            else None
        ),
    )
    return off_sagemaker(facts, base, environ, settings, distribution_groups=distribution_groups)
