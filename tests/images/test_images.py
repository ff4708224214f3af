"""The images of ``containers/`` built and run as a platform runs them: ``IMAGE train`` as PID 1, the
job directory mounted at /opt/ml, stopped by the engine (``podman stop``: SIGTERM, then SIGKILL).

Five scenarios (issue 23): the README's example job; a stop during a long epoch; zombies and an
escaped daemon; two hosts on one podman network; an MPI job on an image without MPI or ssh. And what
each image holds (and does not).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smc_core.testing import make_job_dir

from .conftest import ALL_IMAGES, ROOT, Containers, Podman, build_image

SCRIPTS = ROOT / "tests" / "fixtures" / "scripts"


def job(tmp_path: Path, name: str, script: str, **kwargs: object) -> Path:
    """A job dir ``tmp_path/name`` running ``script`` from tests/fixtures/scripts."""
    code = tmp_path / f"{name}-code"
    code.mkdir()
    shutil.copy(SCRIPTS / script, code / script)
    return make_job_dir(tmp_path / name, code=code, entry_point=script, **kwargs)  # type: ignore[arg-type]


def facts(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().split())


def finished_at(podman: Podman, name: str) -> float:
    """When container ``name`` exited, in seconds since the epoch."""
    nanoseconds = podman("inspect", "--format", "{{.State.FinishedAt.UnixNano}}", name).stdout
    return int(nanoseconds.strip()) / 1e9


def test_the_images_hold_what_a_platform_needs(podman: Podman, core_image: str, pytorch_image: str) -> None:
    for image, adapter, mpi in ((core_image, None, False), (pytorch_image, "pytorch", True)):
        config = podman.inspect("image", image)["Config"]
        assert config.get("Cmd") == ["train"] and not config.get("Entrypoint"), config
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env.get("SMC_ADAPTER") == adapter
        probe = (
            "for p in train smc python mpirun ssh sshd gcc cc; do command -v $p || echo no-$p; done; "
            "ls /etc/ssh/ssh_host_* 2>/dev/null || echo no-host-keys; "
            "ls /root/.cache/pip 2>/dev/null || echo no-pip-cache; "
            "ls /var/lib/apt/lists | grep -v -e lock -e partial || echo no-apt-lists; smc plugins | head -n1"
        )
        out = podman("run", "--rm", image, "sh", "-c", probe).stdout
        assert "/opt/smc/bin/train" in out and "/opt/smc/bin/python" in out
        assert "no-gcc" in out and "no-cc" in out  # no compiler in the image
        assert "no-host-keys" in out and "no-pip-cache" in out and "no-apt-lists" in out
        if mpi:
            assert "/usr/bin/mpirun" in out and "/usr/sbin/sshd" in out and "/usr/bin/ssh" in out
            assert "adapter: pytorch (smc-pytorch 0.1.0)" in out
        else:
            assert "no-mpirun" in out and "no-sshd" in out and "no-ssh" in out
            assert "adapter: none" in out


def test_the_example_job_with_the_job_dir_mounted(tmp_path: Path, podman: Podman, pytorch_image: str) -> None:
    base = make_job_dir(
        tmp_path / "job",
        code=ROOT / "examples" / "pytorch",
        entry_point="train.py",
        hyperparameters={"epochs": 2},
    )
    done = podman(
        "run", "--rm", "--volume", f"{base}:/opt/ml", pytorch_image, "train", timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch 2/2 rank 0 loss" in done.stdout
    assert (base / "model" / "model.pt").stat().st_size > 0
    assert json.loads((base / "model" / "metrics.json").read_text())["epochs"] == 2
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()


def test_podman_stop_during_a_long_epoch(
    tmp_path: Path, podman: Podman, containers: Containers, pytorch_image: str
) -> None:
    # Two at once: one whose SIGTERM handler checkpoints (smc passes SIGTERM on, the code saves and
    # dies of it), one that ignores SIGTERM (smc's grace period, 3 s, ends in SIGKILL): both stopped, 143.
    # Both end well within podman's 10 s: podman never has to SIGKILL train.
    saver = job(tmp_path, "saver", "long_epoch.py", hyperparameters={"on-sigterm": "checkpoint"})
    stubborn = job(tmp_path, "stubborn", "long_epoch.py", hyperparameters={"on-sigterm": "ignore"})
    names = {
        "saver": containers.run(pytorch_image, saver),
        "stubborn": containers.run(pytorch_image, stubborn, "--env", "SMC_GRACE_PERIOD=3"),
    }
    deadline = time.monotonic() + 120
    while not all((base / "model" / "started").exists() for base in (saver, stubborn)):
        assert time.monotonic() < deadline, containers.logs(names["saver"]) + containers.logs(
            names["stubborn"]
        )
        time.sleep(0.2)
    started = time.monotonic()
    podman("stop", "--time", "10", *names.values(), timeout=60)
    took = time.monotonic() - started
    assert containers.wait(names["saver"]) == 143
    assert containers.wait(names["stubborn"]) == 143  # a stop is a stop, whatever the code's end
    assert took < 9, f"podman stop took {took:.1f} s: train did not end before podman's SIGKILL"

    logs = containers.logs(names["saver"])
    assert "Received SIGTERM: passing it on to pid" in logs and "(grace period 100 s)" in logs
    assert "SIGTERM at epoch 0 step" in logs and (saver / "checkpoints" / "checkpoint.pt").stat().st_size > 0
    failure = (saver / "output" / "failure").read_text()
    assert failure.startswith("JobStopped: the job was stopped by SIGTERM while the user's code ran"), failure
    assert "ExitCode 143" in failure and "terminated (SIGTERM)" in failure
    assert "Stopping pid" not in logs and "still running" not in logs  # nothing was left behind

    failure = (stubborn / "output" / "failure").read_text()
    # smc's SIGKILL after the job's grace period, named as smc's (liveness's JobStopped wording)
    assert "SMC_GRACE_PERIOD (3 s)" in failure, failure
    assert "killed by SIGKILL, sent by smc when the grace period" in failure, failure
    assert failure.startswith("JobStopped: ") and "ExitCode 143" in failure
    assert not (stubborn / "checkpoints" / "checkpoint.pt").exists()


def test_zombies_are_reaped_and_an_escaped_daemon_is_named(
    tmp_path: Path, podman: Podman, core_image: str
) -> None:
    base = job(tmp_path, "job", "leaves_zombies.py")
    done = podman("run", "--rm", "--volume", f"{base}:/opt/ml", core_image, "train", timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = facts(base / "model" / "zombies.txt")
    assert found["parent"] == "1"  # train was the container's PID 1
    assert found["zombies"] == "0", done.stdout  # 20 orphans exited under PID 1: each was reaped
    assert f"Stopping pid {found['daemon']} (" in done.stderr and "escaped-daemon" in done.stderr
    assert (
        "Stopped 1 process(es) left running" in done.stderr
        and "still running after SIGKILL" not in done.stderr
    )
    assert (base / "output" / "success").exists()


def test_two_hosts_on_one_network_then_a_failing_host_ends_both(
    tmp_path: Path, podman: Podman, containers: Containers, pytorch_image: str
) -> None:
    network = containers.network()
    hosts = ["algo-1", "algo-2"]
    bases = {
        host: job(
            tmp_path,
            host,
            "allreduce.py",
            hyperparameters={"sagemaker_torch_distributed_enabled": True, "fail-host": "algo-2"},
            hosts=hosts,
            current_host=host,
            interface="eth0",
        )
        for host in hosts
    }
    names = {
        host: containers.run(
            pytorch_image, bases[host], "--hostname", host, "--network", network, "--network-alias", host
        )
        for host in hosts
    }
    codes = {host: containers.wait(names[host], timeout=300) for host in hosts}
    logs = {host: containers.logs(names[host]) for host in hosts}
    for rank, host in enumerate(hosts):
        result = json.loads((bases[host] / "model" / f"allreduce-{rank}.json").read_text())
        assert result == {"rank": rank, "world": 2, "host": host, "sum": 3.0}, logs[host]
    assert codes == {"algo-1": 1, "algo-2": 1}, logs
    assert "ValueError: boom on algo-2" in (bases["algo-2"] / "output" / "failure").read_text()
    failure = (bases["algo-1"] / "output" / "failure").read_text()
    assert "rank 1 (local rank 0) on host algo-2 failed" in failure, failure
    # algo-1 sleeps in no collective: only smc's failure handling ends it, within the 10 s it promises.
    gap = finished_at(podman, names["algo-1"]) - finished_at(podman, names["algo-2"])
    assert abs(gap) < 10, f"algo-1 ended {gap:.1f} s after algo-2"


@pytest.mark.parametrize("host", ["algo-1", "algo-2"])
def test_an_mpi_job_on_an_image_without_ssh(
    tmp_path: Path, podman: Podman, core_image: str, host: str
) -> None:
    base = make_job_dir(
        tmp_path / "job",
        code={"train.py": "print('ran')\n"},
        entry_point="train.py",
        hyperparameters={"sagemaker_mpi_enabled": True},
        hosts=["algo-1", "algo-2"],
        current_host=host,
    )
    started = time.monotonic()
    done = podman("run", "--rm", "--volume", f"{base}:/opt/ml", core_image, "train", timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert time.monotonic() - started < 60  # at once, not after SMC_MPI_WAIT_TIMEOUT
    failure = (base / "output" / "failure").read_text()
    packages = "openmpi-bin openssh-client" if host == "algo-1" else "openssh-server openssh-client"
    assert f"apt-get install -y {packages} " in failure, failure
    assert "ran" not in done.stdout


def test_every_containerfile_lints() -> None:
    # hadolint parses each file as Docker does and lints it (ShellCheck on every RUN); the pinning
    # rules it cannot check through build arguments are off (containers/.hadolint.yaml says why).
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    files = sorted((ROOT / "containers").glob("*.Containerfile"))
    assert [f.stem for f in files] == ["core", "keras", "pytorch", "tensorflow"]
    config = ROOT / "containers" / ".hadolint.yaml"
    done = subprocess.run(
        [hadolint, "--no-color", "--config", str(config), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


TF_JOB = """
import os, tensorflow as tf
model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
model.compile("sgd", "mse")
x = tf.random.normal((64, 3))
model.fit(x, tf.reduce_sum(x, 1, keepdims=True), epochs=2, verbose=2)
model.save(os.path.join(os.environ["SM_MODEL_DIR"], "model.keras"))
"""

KERAS_JOB = """
import os, keras, numpy as np
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
x = np.random.rand(64, 3).astype("float32")
model.fit(x, x.sum(1, keepdims=True), epochs=2, verbose=2)
print("backend", keras.backend.backend())
model.save(os.path.join(os.environ["SM_MODEL_DIR"], "model.keras"))
"""


@pytest.mark.skipif(
    not ALL_IMAGES, reason="builds the TensorFlow and Keras images (2 GB each, minutes): make image-test-all"
)
@pytest.mark.parametrize("image", ["tensorflow", "keras"])
def test_the_tensorflow_and_keras_images_run_a_job(tmp_path: Path, podman: Podman, image: str) -> None:
    tag = build_image(podman, image)
    script = TF_JOB if image == "tensorflow" else KERAS_JOB
    base = make_job_dir(tmp_path / "job", code={"train.py": script}, entry_point="train.py")
    done = podman("run", "--rm", "--volume", f"{base}:/opt/ml", tag, "train", timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Adapter: {image} (smc-{image} 0.1.0)" in done.stderr, done.stderr[-3000:]
    assert (base / "model" / "model.keras").stat().st_size > 0
    assert (base / "output" / "success").exists()
