"""Each example runs with its documented command, end to end, through `smc local`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import run_smc

ROOT = Path(__file__).resolve().parent.parent


def test_pytorch_example_trains_and_saves_a_model_that_loads(tmp_path):
    torch = pytest.importorskip("torch", reason="the PyTorch example needs torch (make setup installs it)")
    proc = run_smc(
        "smc",
        "local",
        str(ROOT / "examples" / "pytorch"),
        "--entry-point",
        "train.py",
        "-p",
        "epochs=3",
        "--job-name",
        "pt",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model_dir = tmp_path / ".smc" / "jobs" / "pt" / "model"
    assert f"model:   {model_dir} (metrics.json, model.pt)" in proc.stdout
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["test_mse"] < 0.5
    state = torch.load(model_dir / "model.pt")
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_pytorch_example_with_torchrun_two_processes(tmp_path):
    pytest.importorskip("torch", reason="the PyTorch example needs torch (make setup installs it)")
    proc = run_smc(
        "smc",
        "local",
        str(ROOT / "examples" / "pytorch"),
        "--entry-point",
        "train.py",
        "-p",
        "epochs=2",
        "-p",
        "sagemaker_torch_distributed_enabled=true",
        "-p",
        "sagemaker_mpi_num_of_processes_per_host=2",
        "--job-name",
        "ddp",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "rank 0 loss" in out and "rank 1 loss" in out
    assert (tmp_path / ".smc" / "jobs" / "ddp" / "model" / "model.pt").exists()
