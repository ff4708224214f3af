"""Differential check: the same job directory through the reference toolkit (PyPI ``sagemaker-training``)
and through smc gives the same SM_* variables and argv, smc's documented additions aside.

Needs an interpreter with ``sagemaker-training`` installed: ``$SMC_REFERENCE_PYTHON``, else the
benchmarks' reference environment (``benchmarks/.work/ref-venv``); skipped when neither exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PROBE, clean_environ
from .test_sdk_job import CHANNELS, HYPERPARAMETERS, RAW

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = os.environ.get("SMC_REFERENCE_PYTHON") or str(
    ROOT / "benchmarks" / ".work" / "ref-venv" / "bin" / "python"
)

DUMP = """\
import json, os
from sagemaker_training import environment
env = environment.Environment()
print(json.dumps({"env": env.to_env_vars(), "args": env.to_cmd_args(),
                  "extra": {k: os.environ.get(k) for k in ("CURRENT_HOST", "SAGEMAKER_REGION")}}))
"""

SMC_DUMP = """\
import json, os
from smc_core.job.environment import create_environment
from smc_core.job.exports import exported_vars, user_args
env = create_environment()
out = exported_vars(env)
print(json.dumps({"env": {k: v for k, v in out.items() if k.startswith("SM_")}, "args": user_args(env),
                  "extra": {k: out[k] for k in ("CURRENT_HOST", "SAGEMAKER_REGION")}}))
"""

SMC_ADDITIONS = {"SM_MASTER_ADDR", "SM_HOST_COUNT", "SM_CURRENT_HOST_RANK", "SM_CHECKPOINT_DIR"}
SMC_TRAINING_ENV_ADDITIONS = {"checkpoint_dir"}

# Named explicitly (as `make test` does), the reference must be there: the check never skips silently.
pytestmark = pytest.mark.skipif(
    not Path(REFERENCE).exists() and not os.environ.get("SMC_REFERENCE_PYTHON"),
    reason=f"no reference toolkit interpreter at {REFERENCE} (SMC_REFERENCE_PYTHON)",
)


def dump(python: str, script: str, base: Path, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    full = clean_environ({"SAGEMAKER_BASE_DIR": str(base), **env})
    done = subprocess.run(
        [python, "-c", script], env=full, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


RESOURCE_CONFIGS = {
    "sdk local mode": {
        "current_host": "algo-2",
        "hosts": ["algo-1", "algo-2"],
        "network_interface_name": "eth0",
    },
    "heterogeneous": {
        "current_host": "algo-1",
        "current_instance_type": "ml.p4d.24xlarge",
        "current_group_name": "train",
        "hosts": ["algo-1", "algo-2", "algo-3"],
        "network_interface_name": "eth1",
        "instance_groups": [
            {
                "instance_group_name": "train",
                "instance_type": "ml.p4d.24xlarge",
                "hosts": ["algo-2", "algo-1"],
            },
            {"instance_group_name": "data", "instance_type": "ml.c5.xlarge", "hosts": ["algo-3"]},
        ],
    },
}


@pytest.mark.parametrize("cluster", sorted(RESOURCE_CONFIGS))
def test_same_variables_and_argv_as_the_reference(cluster: str, job_dir) -> None:
    hyperparameters = {**HYPERPARAMETERS, "sagemaker_submit_directory": "s3://bucket/src.tar.gz"}
    if cluster == "heterogeneous":
        hyperparameters["sagemaker_distribution_instance_groups"] = ["train"]
    base = job_dir(
        hyperparameters=hyperparameters,
        raw_hyperparameters=RAW,
        channels=CHANNELS,
        resource_config=RESOURCE_CONFIGS[cluster],
        code={"train.py": PROBE},
        entry_point="train.py",
    )
    env = {
        "SM_HP_MP_PARAMETERS": '{"pipeline": 2}',
        "TRAINING_JOB_NAME": "parity-job",
    }  # the platform sets it
    reference = dump(REFERENCE, DUMP, base, env)
    ours = dump(sys.executable, SMC_DUMP, base, env)
    assert ours["args"] == reference["args"]
    assert ours["extra"] == reference["extra"]
    assert set(ours["env"]) - set(reference["env"]) == SMC_ADDITIONS
    for name, value in reference["env"].items():
        if name == "SM_TRAINING_ENV":
            ours_document = json.loads(ours["env"][name])
            assert set(ours_document) - set(json.loads(value)) == SMC_TRAINING_ENV_ADDITIONS
            for key in SMC_TRAINING_ENV_ADDITIONS:
                del ours_document[key]
            assert ours_document == json.loads(value)
        else:
            assert ours["env"][name] == value, name
