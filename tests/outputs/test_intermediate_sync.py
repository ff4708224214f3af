"""Intermediate output sync through the real `train`, against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TRAIN = str(Path(sys.executable).parent / "train")

# Writes a.txt (closed at once), b.txt (held open until the test says go), tmp.txt (deleted right
# after closing), nested/c.bin; then waits for the test before closing b.txt and ending.
SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    out = os.environ["SM_OUTPUT_INTERMEDIATE_DIR"]
    go = os.environ["GO_FILE"]
    with open(os.path.join(out, "a.txt"), "w") as f:
        f.write("alpha\\n")
    held = open(os.path.join(out, "b.txt"), "w")
    held.write("beta, first half\\n"); held.flush()
    with open(os.path.join(out, "tmp.txt"), "w") as f:
        f.write("scratch")
    os.remove(os.path.join(out, "tmp.txt"))
    os.makedirs(os.path.join(out, "nested"))
    with open(os.path.join(out, "nested", "c.bin"), "wb") as f:
        f.write(os.urandom(300_000))
    print("written", flush=True)
    while not os.path.exists(go):
        time.sleep(0.05)
    held.write("beta, second half\\n"); held.close()
    time.sleep(float(os.environ.get("LINGER", "3")))
    sys.exit(int(os.environ.get("EXIT_CODE", "0")))
    """
)


def keys(client, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        item["Key"][len(prefix) :]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listed
    }


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_train(base: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    full = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SMC_GRACE_PERIOD": "10", **env}
    return subprocess.Popen([TRAIN], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def sync_job(job_dir, s3_server, tmp_path):
    bucket = s3_server.bucket()

    def make(script: str = SCRIPT, **hyperparameters):
        base = job_dir(
            hyperparameters={"sagemaker_s3_output": f"s3://{bucket}/runs", **hyperparameters},
            code={"train.py": script},
            entry_point="train.py",
        )
        return base, bucket, "runs/sync-job/output/intermediate/"

    return make


def test_files_reach_s3_while_the_job_runs(sync_job, s3_server, tmp_path):
    base, bucket, prefix = sync_job()
    client = s3_server.client()
    go = tmp_path / "go"
    proc = start_train(base, {"TRAINING_JOB_NAME": "sync-job", "GO_FILE": str(go)})
    try:
        # a.txt and nested/c.bin are closed: they arrive while the job still runs
        seen = wait_for(
            lambda: (lambda k: k if {"a.txt", "nested/c.bin"} <= set(k) else None)(
                keys(client, bucket, prefix)
            ),
            30,
            "a.txt and nested/c.bin in S3",
        )
        assert proc.poll() is None, "the job must still be running"
        assert "b.txt" not in seen, "a file still open is not uploaded"
        assert "tmp.txt" not in seen
        go.touch()
        # b.txt is uploaded once closed, still while the job runs (it lingers 3 s)
        seen = wait_for(
            lambda: (lambda k: k if "b.txt" in k else None)(keys(client, bucket, prefix)), 30, "b.txt in S3"
        )
        assert proc.poll() is None
    finally:
        go.touch()
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    final = keys(client, bucket, prefix)
    local = base / "output" / "intermediate"
    assert set(final) == {"a.txt", "b.txt", "nested/c.bin"}, final.keys()
    for name, body in final.items():
        assert body == (local / name).read_bytes(), name
    assert "tmp.txt" not in final
    assert "(inotify)" in output


@pytest.mark.parametrize("how", ["failing script", "SIGTERM"])
def test_final_flush_before_the_failure_file(sync_job, s3_server, tmp_path, how):
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        out = os.environ["SM_OUTPUT_INTERMEDIATE_DIR"]
        def on_term(signum, frame):
            with open(os.path.join(out, "on-term.txt"), "w") as f:
                f.write("saved on SIGTERM")
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
        for i in range(20):
            with open(os.path.join(out, f"step-{i}.txt"), "w") as f:
                f.write(str(i) * 1000)
        print("ready", flush=True)
        if os.environ.get("FAIL"):
            raise RuntimeError("training blew up")
        time.sleep(60)
        """
    )
    base, bucket, prefix = sync_job(script)
    env = {"TRAINING_JOB_NAME": "sync-job", "SMC_SYNC_SETTLE": "30"}  # nothing goes up before the end
    if how == "failing script":
        env["FAIL"] = "1"
    proc = start_train(base, env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ready" in line:
            break
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    final = keys(s3_server.client(), bucket, prefix)
    expected = {f"step-{i}.txt" for i in range(20)} | ({"on-term.txt"} if how == "SIGTERM" else set())
    assert set(final) == expected
    assert (base / "output" / "failure").exists()
    # the flush is logged before the runner reports the failure, or the stop (and writes output/failure)
    reported = "Training failed" if how == "failing script" else "The job was stopped by SIGTERM"
    assert output.index("Synced") < output.index(reported)


def test_transient_errors_are_retried(sync_job, s3_server, fault_proxy, tmp_path):
    base, bucket, prefix = sync_job(
        "import os\nout = os.environ['SM_OUTPUT_INTERMEDIATE_DIR']\n"
        "for n in ('x.txt', 'y.txt'):\n    open(os.path.join(out, n), 'w').write(n * 100)\n"
    )
    fault_proxy.add_fault(method="PUT", path_contains="x.txt", status=503, times=2)
    fault_proxy.add_fault(method="PUT", path_contains="y.txt", reset_after=0, times=1)
    proc = start_train(base, {"TRAINING_JOB_NAME": "sync-job", "AWS_ENDPOINT_URL": fault_proxy.endpoint_url})
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    final = keys(s3_server.client(), bucket, prefix)
    assert final == {"x.txt": b"x.txt" * 100, "y.txt": b"y.txt" * 100}
    faults = [r for r in fault_proxy.requests if r.fault]
    assert len(faults) >= 3, fault_proxy.requests


def test_a_missing_bucket_is_reported_by_name(job_dir, s3_server):
    script = (
        "import os\nopen(os.path.join(os.environ['SM_OUTPUT_INTERMEDIATE_DIR'], 'x.txt'), 'w').write('x')\n"
    )
    for exit_code in (0, 3):
        base = job_dir(
            hyperparameters={"sagemaker_s3_output": "s3://no-such-bucket-smc/runs"},
            code={"train.py": script + f"raise SystemExit({exit_code})\n"},
            entry_point="train.py",
        )
        proc = start_train(base, {"TRAINING_JOB_NAME": "sync-job"})
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == exit_code, output
        assert "'no-such-bucket-smc' does not exist (NoSuchBucket)" in output
        if exit_code:
            failure = (base / "output" / "failure").read_text()
            assert (
                "could not be uploaded to s3://no-such-bucket-smc/runs/sync-job/output/intermediate"
                in failure
            )
            assert "x.txt" in failure
        else:
            assert (base / "output" / "success").exists()


def test_a_bad_s3_output_is_a_configuration_error(job_dir):
    base = job_dir(
        hyperparameters={"sagemaker_s3_output": "bucket/runs"},
        code={"train.py": "print(1)"},
        entry_point="train.py",
    )
    proc = start_train(base, {"TRAINING_JOB_NAME": "sync-job"})
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output
    assert "sagemaker_s3_output is 'bucket/runs', which is not an S3 location" in output
