"""Script mode on one host through ``train``: a Keras script, the SavedModel check, TensorFlow's variables."""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf
from tensorflow_helpers import KERAS_SCRIPT, MWMS_SCRIPT

from smc_core import resolve_host

SERVING_WARNING = "Not servable by TensorFlow Serving"


def test_keras_script_saves_a_servable_version_dir(smc_job):
    done = smc_job(
        hyperparameters={"epochs": 2, "model_dir": "s3://bucket/prefix/model"},
        code={"train.py": KERAS_SCRIPT},
        entry_point="train.py",
    )
    done.assert_success()
    base = done.job_dir
    export = base / "model" / "000000001"
    assert (export / "saved_model.pb").exists()
    loaded = tf.saved_model.load(str(export))
    assert loaded.serve(np.ones((2, 4), dtype=np.float32)).shape == (2, 1)
    assert SERVING_WARNING not in done.stderr and "No model saved" not in done.stderr
    # not a tuning job: model_dir reaches the script unchanged; the reference's C++ log level
    seen = (base / "output" / "data" / "seen.txt").read_text().splitlines()
    assert seen == ["s3://bucket/prefix/model", "1", "s3://bucket/prefix/model"]


def test_warns_in_one_line_when_no_version_dir(smc_job):
    done = smc_job(
        hyperparameters={"save-as": "keras"},
        code={"train.py": KERAS_SCRIPT},
        entry_point="train.py",
        env={"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    done.assert_success()
    base = done.job_dir
    assert (base / "model" / "my_model.keras").exists()
    warnings = [line for line in done.stderr.splitlines() if SERVING_WARNING in line]
    assert len(warnings) == 1, done.stderr[-3000:]
    assert "holds no SavedModel (found my_model.keras)" in warnings[0]
    assert "model.export(os.path.join(model_dir, '1'))" in warnings[0]
    seen = (base / "output" / "data" / "seen.txt").read_text().splitlines()
    assert seen[1] == "3"  # the job's own TF_CPP_MIN_LOG_LEVEL is kept


def test_tuning_job_model_dir_gets_the_job_name(smc_job):
    done = smc_job(
        hyperparameters={"model_dir": "s3://bucket/tuning/model", "_tuning_objective_metric": "loss"},
        code={"train.py": KERAS_SCRIPT},
        entry_point="train.py",
        env={"TRAINING_JOB_NAME": "tune-007"},
    )
    done.assert_success()
    seen = (done.job_dir / "output" / "data" / "seen.txt").read_text().splitlines()
    assert seen[0] == seen[2] == "s3://bucket/tuning/model/tune-007/model"
    assert "Tuning job: appending the training job name to model_dir" in done.stderr


def test_one_host_multi_worker_job(smc_job):
    done = smc_job(
        hyperparameters={"sagemaker_multi_worker_mirrored_strategy_enabled": True, "steps": 2},
        code={"train.py": MWMS_SCRIPT},
        entry_point="train.py",
        timeout=120,
    )
    done.assert_success()
    base = done.job_dir
    # algo-1 resolves on SageMaker; where it does not (smc local), TensorFlow would wait forever for it
    address = "algo-1:8890" if resolve_host("algo-1") else "localhost:8890"
    assert json.loads((base / "model" / "tf_config-0.json").read_text()) == {
        "cluster": {"worker": [address]},
        "environment": "cloud",
        "task": {"index": 0, "type": "worker"},
    }
    assert (base / "model" / "allreduce-0.txt").read_text() == "1.0"
