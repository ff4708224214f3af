"""``TF_CONFIG`` as SageMaker's TensorFlow containers build it, for tf.distribute jobs.

Shared by every adapter that runs TensorFlow across hosts (smc-tensorflow, smc-keras on the
TensorFlow backend). The layouts are the container contract's ("Distributed launch conventions"):

* MultiWorkerMirroredStrategy: every host is a worker on port 8890, task index = host rank.
* Parameter server: the first host is the ``master`` on 2222, the others ``worker`` on 2222, and
  every host also runs a ``ps`` task on 2223.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from smc_core.errors import ConfigError

__all__ = [
    "MULTI_WORKER_PORT",
    "PS_PORT",
    "PS_WORKER_PORT",
    "multi_worker_tf_config",
    "parameter_server_tf_config",
    "tf_config_json",
]

MULTI_WORKER_PORT = 8890
"""The port every MultiWorkerMirroredStrategy worker listens on."""
PS_WORKER_PORT = 2222
"""The port of the master and worker tasks in a parameter-server job."""
PS_PORT = 2223
"""The port of the parameter-server task on every host."""


def _rank(hosts: Sequence[str], current_host: str) -> int:
    if current_host not in hosts:
        raise ConfigError(
            f"The current host {current_host!r} is not one of the job's hosts {list(hosts)}: check "
            "current_host and hosts in resourceconfig.json."
        )
    return list(hosts).index(current_host)


def multi_worker_tf_config(
    hosts: Sequence[str], current_host: str, *, port: int = MULTI_WORKER_PORT
) -> dict[str, Any]:
    """``TF_CONFIG`` for MultiWorkerMirroredStrategy: every host a worker, task index = host rank.

    >>> multi_worker_tf_config(["algo-1", "algo-2"], "algo-2")["task"]
    {'index': 1, 'type': 'worker'}
    """
    return {
        "cluster": {"worker": [f"{host}:{port}" for host in hosts]},
        "environment": "cloud",
        "task": {"index": _rank(hosts, current_host), "type": "worker"},
    }


def parameter_server_tf_config(
    hosts: Sequence[str],
    current_host: str,
    *,
    task_type: str = "worker",
    worker_port: int = PS_WORKER_PORT,
    ps_port: int = PS_PORT,
) -> dict[str, Any]:
    """``TF_CONFIG`` for a parameter-server job, as the reference TensorFlow toolkit assigns tasks.

    :param task_type: ``"worker"`` for the training process (the first host's task is then
        ``{"type": "master", "index": 0}``, host k's ``{"type": "worker", "index": k-2}``), or
        ``"ps"`` for the parameter-server process (host k: ``{"type": "ps", "index": k-1}``).
    """
    rank = _rank(hosts, current_host)
    cluster = {
        "master": [f"{hosts[0]}:{worker_port}"],
        "ps": [f"{host}:{ps_port}" for host in hosts],
        "worker": [f"{host}:{worker_port}" for host in hosts[1:]],
    }
    if task_type == "ps":
        task = {"index": rank, "type": "ps"}
    elif task_type == "worker":
        task = {"index": 0, "type": "master"} if rank == 0 else {"index": rank - 1, "type": "worker"}
    else:
        raise ValueError(f"task_type is {task_type!r}: expected 'worker' or 'ps'")
    return {"cluster": cluster, "environment": "cloud", "task": task}


def tf_config_json(tf_config: dict[str, Any]) -> str:
    """The ``TF_CONFIG`` value as TensorFlow reads it (JSON, keys sorted)."""
    return json.dumps(tf_config, sort_keys=True)
