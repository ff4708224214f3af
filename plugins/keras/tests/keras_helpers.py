"""Helpers for the Keras adapter's tests: user scripts, backends (jobs run through ``smc_job``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

INSTALLED_BACKENDS = [name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name)]

QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

# The seed's function-mode example: train(channel_input_dirs, hyperparameters) fits on an npz channel.
SEED_FUNCTION = """
import os

import keras
import numpy as np

def train(channel_input_dirs, hyperparameters):
    data = np.load(os.path.join(channel_input_dirs['training'], hyperparameters['training_data_file']))
    x_train = data['features']
    y_train = keras.utils.to_categorical(data['labels'], 10)

    model = keras.models.Sequential()
    model.add(keras.layers.Dense(10, activation='softmax', input_dim=1))

    model.compile(loss='categorical_crossentropy', optimizer=keras.optimizers.SGD(), metrics=['accuracy'])

    model.fit(x_train, y_train, epochs=1, batch_size=1)

    return model
"""

# Script mode: records the backend it runs on and the weights it ends with.
PLAIN_SCRIPT = """
import argparse, json, os, sys
import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).random((64, 3)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
history = model.fit(x, y, epochs=args.epochs, batch_size=16, verbose=0)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "run.json"), "w") as f:
    json.dump({"env": os.environ.get("KERAS_BACKEND"), "keras": keras.backend.backend(),
               "epochs": len(history.history["loss"]), "argv": sys.argv[1:],
               "hps": json.loads(os.environ["SM_HPS"])}, f)
"""


def single_host() -> Mapping[str, object]:
    """A one-host resource config on loopback."""
    return {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"}


def needs(backend: str) -> pytest.MarkDecorator:
    """Skip unless ``backend`` is installed."""
    return pytest.mark.skipif(backend not in INSTALLED_BACKENDS, reason=f"{backend} is not installed")


def check_in_python(code: str, backend: str, timeout: float = 180) -> str:
    """Run ``code`` in a fresh interpreter on ``backend`` (keras picks its backend at import);
    return its stdout, failing the test with its output if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "KERAS_BACKEND": backend, **QUIET},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout
