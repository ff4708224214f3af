"""`smc local`: bad input refused before anything runs, and whole jobs end to end."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from smc_core.local.command import parse_value

from .helpers import run_smc

ROOT = Path(__file__).resolve().parent.parent
PLAIN = ROOT / "examples" / "plain"


def local(*args: str, cwd: Path, **kwargs):
    return run_smc("smc", "local", *args, cwd=cwd, **kwargs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-dir", "--entry-point", "train.py"], "source dir missing-dir: no such directory"),
        ([str(PLAIN), "--entry-point", "nope.py"], "--entry-point nope.py: not found in"),
        (
            [str(PLAIN), "--entry-point", "train.py", "-p", "epochs"],
            "--hyperparameter 'epochs': expected KEY=VALUE",
        ),
        (
            [str(PLAIN), "--entry-point", "train.py", "-c", "train=/no/such/path"],
            "--channel train=/no/such/path",
        ),
        ([str(PLAIN), "--entry-point", "train.py", "-c", "bad name=."], "channel names use letters"),
        ([str(PLAIN), "--entry-point", "train.py", "--adapter", "nosuch"], "--adapter nosuch: not installed"),
        ([str(PLAIN), "--entry-point", "train.py", "--env", "=x"], "--env '=x': expected KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_nothing_runs(tmp_path, args, message):
    proc = local(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / ".smc").exists()


def test_an_existing_job_dir_is_never_overwritten(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "precious").write_text("keep me")
    proc = local(str(PLAIN), "--entry-point", "train.py", "--job-dir", str(job_dir), cwd=tmp_path)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert (job_dir / "precious").read_text() == "keep me"


def test_values_are_json_when_they_are_json():
    assert parse_value("3") == 3
    assert parse_value("[64, 32]") == [64, 32]
    assert parse_value("true") is True
    assert parse_value("adam") == "adam"
    assert parse_value('"007"') == "007"


def test_plain_example_end_to_end(tmp_path):
    proc = local(
        str(PLAIN),
        "--entry-point",
        "train.py",
        "-p",
        "slope=2.5",
        "-p",
        "points=40",
        "-c",
        f"train={PLAIN / 'data'}",
        "--job-name",
        "plain-1",
        "--output-tar",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = tmp_path / ".smc" / "jobs" / "plain-1"
    assert "smc local: job plain-1 succeeded" in proc.stdout
    assert f"model:   {job / 'model'} (model.json)" in proc.stdout
    model = json.loads((job / "model" / "model.json").read_text())
    assert model["slope"] == pytest.approx(3.0) and model["intercept"] == pytest.approx(0.5)
    hps = json.loads((job / "input" / "config" / "hyperparameters.json").read_text())
    assert hps["slope"] == "2.5" and hps["points"] == "40" and hps["sagemaker_program"] == '"train.py"'
    assert (job / "input" / "data" / "train").resolve() == (PLAIN / "data").resolve()
    with tarfile.open(job / "output" / "model.tar.gz") as tar:
        assert tar.getnames() == ["model.json"]
    assert (job / "output" / "success").exists()


def test_failing_job_prints_the_reason_and_keeps_the_exit_code(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("import sys\nraise SystemExit(9)\n")
    proc = local(str(source), "--entry-point", "train.py", "--job-name", "bad", "--clean", cwd=tmp_path)
    assert proc.returncode == 9
    assert "smc local: job bad failed (exit code 9)" in proc.stdout
    assert "failure: " in proc.stdout and "ExitCode 9" in proc.stdout
    job = tmp_path / ".smc" / "jobs" / "bad"
    assert not (job / "input").exists() and (job / "output" / "failure").exists()


def test_s3_channel_is_downloaded_into_the_job(tmp_path, s3_server):
    bucket = s3_server.bucket()
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="data/points.csv", Body=b"0,1\n1,4\n2,7\n")
    client.put_object(Bucket=bucket, Key="data/extra/readme.txt", Body=b"nested")
    proc = local(
        str(PLAIN),
        "--entry-point",
        "train.py",
        "-c",
        f"train=s3://{bucket}/data",
        "--job-name",
        "s3-channel",
        cwd=tmp_path,
        env=s3_server.env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    channel = tmp_path / ".smc" / "jobs" / "s3-channel" / "input" / "data" / "train"
    assert (channel / "points.csv").read_bytes() == b"0,1\n1,4\n2,7\n"
    assert (channel / "extra" / "readme.txt").read_bytes() == b"nested"
    model = json.loads((tmp_path / ".smc" / "jobs" / "s3-channel" / "model" / "model.json").read_text())
    assert model["slope"] == pytest.approx(3.0)


def test_missing_s3_channel_is_a_clear_error(tmp_path, s3_server):
    bucket = s3_server.bucket()
    proc = local(
        str(PLAIN),
        "--entry-point",
        "train.py",
        "-c",
        f"train=s3://{bucket}/nothing",
        cwd=tmp_path,
        env=s3_server.env,
    )
    assert proc.returncode == 4
    assert f"s3://{bucket}/nothing: no objects under this prefix" in proc.stderr


def test_sigterm_to_smc_local_stops_the_job_and_leaves_nothing_behind(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "src"
    source.mkdir()
    marker = tmp_path / "started"
    checkpoint = tmp_path / "checkpoint"
    (source / "train.py").write_text(
        "import os, signal, sys, time\n"
        "def stop(signum, frame):\n"
        f"    open({str(checkpoint)!r}, 'w').write('saved')\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(120)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    smc = Path(sys.executable).parent / "smc"
    proc = subprocess.Popen(
        [str(smc), "local", str(source), "--entry-point", "train.py", "--job-name", "stopped"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    user_pid = int(marker.read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert checkpoint.read_text() == "saved"
    assert "ExitCode 143" in (tmp_path / ".smc" / "jobs" / "stopped" / "output" / "failure").read_text()
    try:
        os.kill(user_pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"the user's process {user_pid} outlived smc local")
