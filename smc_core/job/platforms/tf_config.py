"""``TF_CONFIG`` (Kubeflow TFJob, Vertex AI, any tf.distribute cluster) as the contract's resource config."""

from __future__ import annotations

import json
from typing import Any

from smc_core.base.messages import quoted
from smc_core.errors import ConfigError

__all__ = ["resource_config_from_tf_config"]


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
            f"TF_CONFIG: {quoted(tf_config)} is not a tf.distribute cluster description ({exc!r}); expected "
            '{"cluster": {"worker": ["host-a:2222", "host-b:2222"]}, "task": {"type": "worker", "index": 0}}.'
        ) from exc
    return {"current_host": current, "hosts": hosts}
