"""`smc local --checkpoint-s3-uri`: checkpoints round-trip through S3 as the platform keeps them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import os, time
    ckpt = os.environ["SM_CHECKPOINT_DIR"]
    existing = sorted(f for f in os.listdir(ckpt) if f.startswith("ckpt-"))
    print("resuming from", existing, flush=True)
    for step in range(len(existing) + 1, 4):
        with open(os.path.join(ckpt, f"ckpt-{step}"), "w") as f:
            f.write(f"state {step}")
        print("saved", step, flush=True)
        if step == 2 and os.environ.get("STOP_AFTER_2"):
            time.sleep(120)
    """
)


def smc_local(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "smc_core.cli.main", "local", *args],
        env={**os.environ, "SMC_GRACE_PERIOD": "5", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_stopped_job_resumes_from_its_checkpoints(tmp_path: Path, s3_server) -> None:
    bucket = s3_server.bucket()
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(SCRIPT)
    uri = f"s3://{bucket}/checkpoints/my-job"
    common = ["--entry-point", "train.py", "--checkpoint-s3-uri", uri]

    first = smc_local(
        str(source), *common, "--job-dir", str(tmp_path / "run1"), "--env", "STOP_AFTER_2=1", env={}
    )
    assert first.stdout is not None
    lines = []
    for line in first.stdout:
        lines.append(line)
        if "saved 2" in line:
            break
    first.send_signal(signal.SIGTERM)
    rest, _ = first.communicate(timeout=120)
    output = "".join(lines) + rest
    assert first.returncode == 143, output
    config = json.loads((tmp_path / "run1" / "input" / "config" / "checkpointconfig.json").read_text())
    assert config == {"LocalPath": str(tmp_path / "run1" / "checkpoints"), "S3Uri": uri}
    client = s3_server.client()
    stored = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert stored == {"checkpoints/my-job/ckpt-1", "checkpoints/my-job/ckpt-2"}, output

    local = tmp_path / "elsewhere"
    second = smc_local(
        str(source),
        *common,
        "--job-dir",
        str(tmp_path / "run2"),
        "--checkpoint-local-path",
        str(local),
        env={},
    )
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output
    assert "resuming from ['ckpt-1', 'ckpt-2']" in output
    assert "saved 3" in output and "saved 1" not in output
    stored = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert stored == {f"checkpoints/my-job/ckpt-{i}" for i in (1, 2, 3)}
    body = client.get_object(Bucket=bucket, Key="checkpoints/my-job/ckpt-3")["Body"].read()
    assert body == b"state 3" == (local / "ckpt-3").read_bytes()


def test_s3_output_option_syncs_intermediate_files(tmp_path: Path, s3_server) -> None:
    bucket = s3_server.bucket()
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(
        "import os\n"
        "open(os.path.join(os.environ['SM_OUTPUT_INTERMEDIATE_DIR'], 'tb.log'), 'w').write('events')\n"
    )
    proc = smc_local(
        str(source),
        "--entry-point",
        "train.py",
        "--job-name",
        "tb-job",
        "--job-dir",
        str(tmp_path / "job"),
        "--s3-output",
        f"s3://{bucket}/out",
        env={},
    )
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    body = (
        s3_server.client()
        .get_object(Bucket=bucket, Key="out/tb-job/output/intermediate/tb.log")["Body"]
        .read()
    )
    assert body == b"events"


def test_a_bad_checkpoint_uri_is_refused_before_anything_runs(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('must not run')")
    proc = smc_local(
        str(source),
        "--entry-point",
        "train.py",
        "--checkpoint-s3-uri",
        "/tmp/ckpt",
        "--job-dir",
        str(tmp_path / "j"),
        env={},
    )
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output
    assert "--checkpoint-s3-uri is '/tmp/ckpt', which is not an S3 location" in output
    assert "must not run" not in output
