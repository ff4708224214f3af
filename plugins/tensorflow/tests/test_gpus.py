"""GPUs: what is logged with a fake ``nvidia-smi`` on PATH, and a real GPU job where a GPU exists."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import tensorflow as tf

FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$1" = "--list-gpus" ] || exit 1
echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000001)"
"""

SHOW = "import os\nprint('SM_NUM_GPUS=' + os.environ['SM_NUM_GPUS'], flush=True)\n"


def test_gpus_are_logged_and_one_process_runs(smc_job, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    done = smc_job(
        code={"show.py": SHOW}, entry_point="show.py", env={"PATH": path, "CUDA_VISIBLE_DEVICES": "0,1"}
    )
    done.assert_success()
    assert done.stdout.count("SM_NUM_GPUS=2") == 1  # one process uses both GPUs
    assert (
        "SM_NUM_GPUS=2, CUDA_VISIBLE_DEVICES '0,1': one worker process on this host uses every" in done.stderr
    )


GPU_SCRIPT = """
import os
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
assert len(gpus) == int(os.environ["SM_NUM_GPUS"]) > 0, (gpus, os.environ["SM_NUM_GPUS"])
with tf.device("/GPU:0"):
    product = tf.matmul(tf.ones((64, 64)), tf.ones((64, 64)))
assert "GPU" in product.device and float(product[0, 0]) == 64.0, product.device
print(f"gpu ok: {len(gpus)} GPU(s)", flush=True)
"""


def gpu_count() -> int:
    """GPUs as ``nvidia-smi --list-gpus`` lists them (0 when it fails), as SM_NUM_GPUS counts them."""
    done = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, check=False)
    return sum(line.startswith("GPU ") for line in done.stdout.splitlines()) if done.returncode == 0 else 0


def _no_gpu_reason() -> str | None:
    if shutil.which("nvidia-smi") is None or gpu_count() == 0:
        return "nvidia-smi finds no GPU here (the fake-nvidia-smi test covers what is logged)"
    if not tf.test.is_built_with_cuda():
        return (
            "this TensorFlow is built without CUDA (tensorflow-cpu): install tensorflow[and-cuda] to run it"
        )
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_no_gpu_reason() is not None, reason=str(_no_gpu_reason()))
def test_real_gpu_job(smc_job):
    done = smc_job(code={"gpu.py": GPU_SCRIPT}, entry_point="gpu.py")
    done.assert_success()
    assert "gpu ok" in done.stdout
