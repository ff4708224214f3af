"""SIGTERM mid-training: smc_keras.callbacks() saves the running epoch, the job exits 143, a rerun resumes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from keras_helpers import INSTALLED_BACKENDS

from smc_core.testing import job_environ, train_command

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


def output_of(process: subprocess.Popen[str], timeout: float) -> str:
    """Wait for ``process`` (``train``, started from the kit's command and environment) and return
    its output; at the timeout kill its group and fail the test with that output."""
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"train still ran after {timeout} s:\n{out[-4000:]}")
    return out


def epochs_begun(base) -> list[int]:
    path = base / "output" / "data" / "epochs.log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("function_mode", ["0", "1"], ids=["script", "function"])
def test_sigterm_saves_the_running_epoch_and_a_rerun_resumes_there(
    smc_job, smc_adapter, tmp_path, function_mode
):
    backend = "torch" if "torch" in INSTALLED_BACKENDS else INSTALLED_BACKENDS[0]
    env = {"KERAS_BACKEND": backend, "SMC_FUNCTION_MODE": function_mode}
    base = smc_job.layout(
        hyperparameters={"epochs": 15}, code={"train.py": INTERRUPTIBLE}, entry_point="train.py"
    )
    checkpoints = tmp_path / "ckpt"
    (base / "input" / "config" / "checkpointconfig.json").write_text(
        json.dumps({"LocalPath": str(checkpoints)})
    )

    first = subprocess.Popen(
        train_command(),
        env=job_environ(base, adapter=smc_adapter, env=env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while max(epochs_begun(base), default=-1) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, output_of(first, 10)[-4000:]
    first.send_signal(signal.SIGTERM)  # what SageMaker does on a stop request or spot interruption
    out = output_of(first, 120)
    assert first.returncode == 143, out[-4000:]
    saved = re.search(r"smc_keras: saved epoch (\d+) \(batch \d+\)", out)
    assert saved, out[-4000:]
    epoch = int(saved.group(1))  # 1-based, the epoch that was running
    assert epoch >= 3 and epoch - 1 == max(epochs_begun(base))
    metadata = json.loads((checkpoints / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == epoch - 1
    assert "training finished" not in out

    before = len(epochs_begun(base))
    rerun = smc_job.run(base, env=env, timeout=240)
    assert rerun.exit_code == 0, rerun.logs[-4000:]
    resumed = epochs_begun(base)[before:]
    assert resumed[0] == epoch - 1, resumed  # not epoch 0: it resumes in the interrupted epoch
    assert resumed == list(range(epoch - 1, 15))
    assert "training finished" in rerun.logs
    assert (checkpoints / "model.keras").exists()  # ModelCheckpoint's latest model
    assert not (checkpoints / "backup").exists()  # the backup is removed once training completes
