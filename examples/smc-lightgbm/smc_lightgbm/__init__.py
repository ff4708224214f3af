"""smc-lightgbm: the smc adapter for LightGBM (data-parallel training over LightGBM's own sockets).

A training script reads its part of the job from the variables the adapter exports, or with
:func:`network_params`, which returns the parameters ``lightgbm.train`` takes for it::

    params = {"objective": "regression", **network_params()}
    booster = lightgbm.train(params, dataset)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["network_params", "rank"]


def rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank in the job (``LIGHTGBM_RANK``), 0 when the job is not distributed."""
    environ = os.environ if environ is None else environ
    return int(environ.get("LIGHTGBM_RANK", "0"))


def network_params(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """LightGBM's parameters for this process's place in the job: ``{}`` when the job is not
    distributed, else ``tree_learner``, ``num_machines``, ``machines``, ``local_listen_port`` and
    ``time_out`` (minutes), as ``lightgbm.train`` takes them."""
    environ = os.environ if environ is None else environ
    if "LIGHTGBM_MACHINES" not in environ:
        return {}
    return {
        "tree_learner": environ.get("LIGHTGBM_TREE_LEARNER", "data"),
        "num_machines": int(environ["LIGHTGBM_NUM_MACHINES"]),
        "machines": environ["LIGHTGBM_MACHINES"],
        "local_listen_port": int(environ["LIGHTGBM_LOCAL_LISTEN_PORT"]),
        "time_out": int(environ["LIGHTGBM_TIME_OUT"]),
        "pre_partition": True,
    }
