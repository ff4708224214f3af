"""SIGTERM mid-training: smc_keras.callbacks() saves the running epoch, the job exits 143, a rerun resumes."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
from keras_helpers import INSTALLED_BACKENDS, finish, start_train

INTERRUPTIBLE = """
import os, time
import keras, numpy as np
import smc_keras

marks = os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "epochs.log")

class Mark(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        with open(marks, "a") as f:
            f.write(f"{epoch}\\n")
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.05)

def train(epochs):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((64, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0,
              callbacks=[Mark(), *smc_keras.callbacks()])
    print("training finished", flush=True)

if __name__ == "__main__":
    train(int(os.environ["SM_HP_EPOCHS"]))
"""


def epochs_begun(base) -> list[int]:
    path = base / "output" / "data" / "epochs.log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("function_mode", ["0", "1"], ids=["script", "function"])
def test_sigterm_saves_the_running_epoch_and_a_rerun_resumes_there(job_dir, tmp_path, function_mode):
    backend = "torch" if "torch" in INSTALLED_BACKENDS else INSTALLED_BACKENDS[0]
    base = job_dir(
        hyperparameters={"epochs": 15},
        resource_config={"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"},
        code={"train.py": INTERRUPTIBLE},
        entry_point="train.py",
    )
    checkpoints = tmp_path / "ckpt"
    (base / "input" / "config" / "checkpointconfig.json").write_text(
        json.dumps({"LocalPath": str(checkpoints)})
    )

    first = start_train(base, KERAS_BACKEND=backend, SMC_FUNCTION_MODE=function_mode)
    deadline = time.monotonic() + 240
    while max(epochs_begun(base), default=-1) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, finish(first, 10).stdout[-4000:]
    first.send_signal(signal.SIGTERM)  # what SageMaker does on a stop request or spot interruption
    done = finish(first, 120)
    assert done.returncode == 143, done.stdout[-4000:]
    saved = re.search(r"smc_keras: saved epoch (\d+) \(batch \d+\)", done.stdout)
    assert saved, done.stdout[-4000:]
    epoch = int(saved.group(1))  # 1-based, the epoch that was running
    assert epoch >= 3 and epoch - 1 == max(epochs_begun(base))
    metadata = json.loads((checkpoints / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == epoch - 1
    assert "training finished" not in done.stdout

    before = len(epochs_begun(base))
    rerun = finish(start_train(base, KERAS_BACKEND=backend, SMC_FUNCTION_MODE=function_mode), 240)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    resumed = epochs_begun(base)[before:]
    assert resumed[0] == epoch - 1, resumed  # not epoch 0: it resumes in the interrupted epoch
    assert resumed == list(range(epoch - 1, 15))
    assert "training finished" in rerun.stdout
    assert (checkpoints / "model.keras").exists()  # ModelCheckpoint's latest model
    assert not (checkpoints / "backup").exists()  # the backup is removed once training completes
