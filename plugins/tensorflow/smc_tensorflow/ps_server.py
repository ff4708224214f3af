"""The parameter-server process: ``python -m smc_tensorflow.ps_server``.

Reads ``TF_CONFIG`` (task type ``ps``), starts a ``tf.distribute.Server`` for that task and serves until
it is stopped. smc runs it on every host of a parameter-server job, beside the worker, as a supervised
background process. It uses no GPU (as in the reference: several TensorFlow processes on one GPU are
unsafe); smc also hides the GPUs from it with ``CUDA_VISIBLE_DEVICES=""``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def server_args(tf_config: dict[str, Any]) -> tuple[dict[str, list[str]], str, int]:
    """``(cluster, job name, task index)`` from a ``TF_CONFIG`` whose task is a ``ps`` task."""
    task = tf_config.get("task") or {}
    if task.get("type") != "ps":
        raise SystemExit(f"smc_tensorflow.ps_server: TF_CONFIG's task is {task!r}, expected a ps task")
    return dict(tf_config["cluster"]), "ps", int(task.get("index", 0))


def main() -> int:
    """Serve the ``ps`` task that ``$TF_CONFIG`` names, until SIGTERM."""
    cluster, job, index = server_args(json.loads(os.environ["TF_CONFIG"]))
    # SIGTERM keeps its default action (end at once): server.join() never returns, nothing needs saving.
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(device_count={"GPU": 0})
    server = tf.distribute.Server(
        tf.train.ClusterSpec(cluster), job_name=job, task_index=index, protocol="grpc", config=config
    )
    print(f"parameter server {job}:{index} serving at {cluster[job][index]}", flush=True)
    server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
