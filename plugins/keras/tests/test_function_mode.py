"""Function mode (the original design's example): train() returns a Keras model, smc-keras saves it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from keras_helpers import INSTALLED_BACKENDS, SEED_FUNCTION, check_in_python, single_host

SEED_HYPERPARAMETERS = {"training_data_file": "training_data.npz", "sagemaker_program": "user_script.py"}
SEED_CHANNELS = {"training": {"ContentType": "application/x-npz", "TrainingInputMode": "File"}}
FUNCTION_MODE_ON_TORCH = {"SMC_FUNCTION_MODE": "1", "KERAS_BACKEND": "torch"}

# The seed's script, recording what the returned model predicts before it is saved.
PREDICTING = SEED_FUNCTION.replace(
    "    return model",
    "    np.save(os.path.join(os.environ['SM_MODEL_DIR'], 'expected.npy'),"
    " model.predict(np.arange(5.0).reshape(5, 1), verbose=0))\n    return model",
)

# Loads model.keras on the job's backend and, where there is one, serves the export as TF Serving would.
LOAD_AND_SERVE = """
import json, os, sys
import keras, numpy as np
x = np.arange(5.0).reshape(5, 1)
found = {"loaded": keras.models.load_model(sys.argv[1] + "/model.keras").predict(x, verbose=0).tolist()}
if os.path.isdir(sys.argv[1] + "/1"):
    import tensorflow as tf
    export = tf.saved_model.load(sys.argv[1] + "/1")  # kept: serve() needs its variables alive
    found["served"] = np.asarray(export.serve(tf.constant(x, tf.float32))).tolist()
print(json.dumps(found))
"""


def seed_job(job_dir, code: str, **hyperparameters):
    base = job_dir(
        hyperparameters={**SEED_HYPERPARAMETERS, **hyperparameters},
        channels=SEED_CHANNELS,
        resource_config=single_host(),
        code={"user_script.py": code},
    )
    rng = np.random.default_rng(0)
    np.savez(
        base / "input" / "data" / "training" / "training_data.npz",
        features=rng.random((10, 1)),
        labels=rng.integers(0, 10, (10, 1)),
    )
    return base


@pytest.mark.parametrize("backend", INSTALLED_BACKENDS)
def test_seed_function_leaves_a_model_keras_that_predicts_the_same(smc_job, job_dir, backend):
    base = seed_job(job_dir, PREDICTING, sagemaker_keras_backend=backend)
    done = smc_job.run(base, env={"SMC_FUNCTION_MODE": "1"})
    done.assert_success()
    assert f"Keras backend: {backend} (from sagemaker_keras_backend)" in done.logs
    model_dir = done.model_dir
    expected = np.load(model_dir / "expected.npy")
    code = f"import sys; sys.argv[1:] = [{str(model_dir)!r}]\n{LOAD_AND_SERVE}"
    found = json.loads(check_in_python(code, backend).splitlines()[-1])
    np.testing.assert_allclose(np.array(found["loaded"]), expected, rtol=1e-5, atol=1e-6)
    if backend == "torch":  # no model.export on torch
        assert "served" not in found
    else:
        np.testing.assert_allclose(np.array(found["served"]), expected, rtol=1e-5, atol=1e-6)


def test_a_module_save_function_saves_instead(smc_job):
    code = (
        "def train(hyperparameters):\n    return {'weights': [1, 2]}\n\n"
        "def save(model, model_dir):\n"
        "    import json, os\n"
        "    with open(os.path.join(model_dir, 'mine.json'), 'w') as f:\n        json.dump(model, f)\n"
    )
    done = smc_job(code={"net.py": code}, entry_point="net.py", env=FUNCTION_MODE_ON_TORCH)
    done.assert_success()
    assert json.loads((done.model_dir / "mine.json").read_text()) == {"weights": [1, 2]}
    assert not (done.model_dir / "model.keras").exists()


def test_returning_something_else_fails_with_what_is_accepted(smc_job):
    code = "from numpy import save  # not the module's own save()\n\ndef train():\n    return 'a string'\n"
    done = smc_job(code={"net.py": code}, entry_point="net.py", env=FUNCTION_MODE_ON_TORCH)
    failure = done.assert_failure(2)
    assert "train() returned a builtins.str" in failure
    assert "return a keras.Model (saved as model_dir/model.keras)" in failure


def test_returning_none_saves_nothing(smc_job):
    done = smc_job(
        code={"net.py": "def train():\n    pass\n"}, entry_point="net.py", env=FUNCTION_MODE_ON_TORCH
    )
    done.assert_success()
    assert list(done.model_dir.iterdir()) == []
