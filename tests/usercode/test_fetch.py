"""Fetching the code: every source, end to end through ``train``; the code dir rule; races; faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from smc_core.testing.s3 import FaultProxy, MotoServer
from smc_core.usercode.fetch import MARKER_NAME, fetch_code

from ..helpers import failure_text, run_train, tar_bytes

SCRIPT = """
import os, sys
print("running", os.path.basename(__file__), "from", os.getcwd(), "args", sys.argv[1:])
print("VERSION", open("version.txt").read().strip())
"""


def code_files(version: str) -> dict[str, str]:
    return {"train.py": SCRIPT, "version.txt": version, "pkgdir/": "", "pkgdir/helper.py": "X = 1\n"}


def job_with_source(job_dir: Callable[..., Path], source: str | None, **kwargs: object) -> Path:
    raw = {"sagemaker_submit_directory": json.dumps(source)} if source else {}
    return job_dir(entry_point="train.py", hyperparameters={"epochs": 2}, raw_hyperparameters=raw, **kwargs)


def test_s3_source(job_dir: Callable[..., Path], s3_server: MotoServer) -> None:
    bucket = s3_server.bucket()
    s3_server.client().put_object(
        Bucket=bucket, Key="job/source/sourcedir.tar.gz", Body=tar_bytes(code_files("s3"))
    )
    base = job_with_source(job_dir, f"s3://{bucket}/job/source/sourcedir.tar.gz")
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert "VERSION s3" in done.stdout
    assert "args ['--epochs', '2']" in done.stdout
    assert (base / "code" / "pkgdir" / "helper.py").read_text() == "X = 1\n"
    assert (base / "output" / "success").exists()


def test_s3_endpoint_from_s3_endpoint_url(job_dir: Callable[..., Path], s3_server: MotoServer) -> None:
    bucket = s3_server.bucket()
    s3_server.client().put_object(Bucket=bucket, Key="code.tar.gz", Body=tar_bytes(code_files("alt")))
    base = job_with_source(job_dir, f"s3://{bucket}/code.tar.gz")
    env = {"AWS_ENDPOINT_URL": "", "S3_ENDPOINT_URL": s3_server.endpoint_url}
    done = run_train(base, env=env)
    assert done.returncode == 0, done.stderr
    assert "VERSION alt" in done.stdout


def test_missing_s3_object_is_a_fetch_error(job_dir: Callable[..., Path], s3_server: MotoServer) -> None:
    bucket = s3_server.bucket()
    base = job_with_source(job_dir, f"s3://{bucket}/nope.tar.gz")
    done = run_train(base)
    assert done.returncode == 4, done.stderr
    text = failure_text(base)
    assert text.startswith(f"FetchError: s3://{bucket}/nope.tar.gz: 404")
    assert "ExitCode 4" in text


def test_s3_object_that_is_not_an_archive(job_dir: Callable[..., Path], s3_server: MotoServer) -> None:
    bucket = s3_server.bucket()
    s3_server.client().put_object(Bucket=bucket, Key="code.tar.gz", Body=b"print('not a tarball')\n" * 40)
    base = job_with_source(job_dir, f"s3://{bucket}/code.tar.gz")
    done = run_train(base)
    assert done.returncode == 4
    assert "not an archive" in failure_text(base)


@pytest.mark.parametrize("form", ["plain", "file-uri"])
def test_local_directory_source(form: str, job_dir: Callable[..., Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkgdir").mkdir(parents=True)
    for name, text in code_files("dir").items():
        if not name.endswith("/"):
            (src / name).write_text(text)
    source = str(src) if form == "plain" else f"file://{src}"
    base = job_with_source(job_dir, source)
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert "VERSION dir" in done.stdout


@pytest.mark.parametrize("form", ["plain", "file-uri"])
def test_local_tarball_source(form: str, job_dir: Callable[..., Path], tmp_path: Path) -> None:
    tarball = tmp_path / "sourcedir.tar.gz"
    tarball.write_bytes(tar_bytes(code_files("tar")))
    base = job_with_source(job_dir, str(tarball) if form == "plain" else tarball.as_uri())
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert "VERSION tar" in done.stdout


def test_no_source_runs_the_code_dir_as_it_is(job_dir: Callable[..., Path]) -> None:
    base = job_with_source(job_dir, None, code={"train.py": SCRIPT, "version.txt": "baked"})
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert "VERSION baked" in done.stdout
    assert not (base / "code" / MARKER_NAME).exists()
    assert not (base / ".smc-code" / MARKER_NAME).exists()


def test_missing_local_source(job_dir: Callable[..., Path], tmp_path: Path) -> None:
    base = job_with_source(job_dir, str(tmp_path / "missing.tar.gz"))
    done = run_train(base)
    assert done.returncode == 4
    assert "missing.tar.gz: no such file or directory" in failure_text(base)


def test_unsupported_scheme(job_dir: Callable[..., Path]) -> None:
    base = job_with_source(job_dir, "https://example.invalid/code.tar.gz")
    done = run_train(base)
    assert done.returncode == 4
    assert "unsupported code source" in failure_text(base)


# --- the code dir rule ------------------------------------------------------------------------


@pytest.fixture
def stale_job(job_dir: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    """A job whose code dir holds stale code, and whose source is a new tarball."""
    tarball = tmp_path / "new.tar.gz"
    tarball.write_bytes(tar_bytes(code_files("new")))
    base = job_with_source(
        job_dir, str(tarball), code={"train.py": SCRIPT, "version.txt": "stale", "old.py": ""}
    )
    return base, tarball


def test_stale_code_is_replaced_by_default_with_a_warning(stale_job: tuple[Path, Path]) -> None:
    base, _tarball = stale_job
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert "VERSION new" in done.stdout
    assert not (base / "code" / "old.py").exists()
    assert "replacing it with" in done.stderr and "old.py" in done.stderr


def test_stale_code_kept_on_request_says_so(stale_job: tuple[Path, Path]) -> None:
    base, _ = stale_job
    done = run_train(base, env={"SMC_EXISTING_CODE": "keep"})
    assert done.returncode == 0, done.stderr
    assert "VERSION stale" in done.stdout
    assert "NOT fetching" in done.stderr


def test_kept_code_is_not_described_as_the_source(stale_job: tuple[Path, Path]) -> None:
    from smc_core import create_environment
    from smc_core.defaults.usercode import fetch_user_code

    base, tarball = stale_job
    kept = fetch_user_code(training_env=create_environment(base, {"SMC_EXISTING_CODE": "keep"}))
    assert kept.source is None  # the job's source was never fetched: what runs is the code dir as it is
    fetched = fetch_user_code(training_env=create_environment(base, {}))
    assert fetched.source == str(tarball)


def test_stale_code_is_an_error_on_request(stale_job: tuple[Path, Path]) -> None:
    base, _ = stale_job
    done = run_train(base, env={"SMC_EXISTING_CODE": "error"})
    assert done.returncode == 4
    text = failure_text(base)
    assert "already holds code not fetched from it" in text and "old.py" in text


def test_same_source_is_reused_and_a_changed_one_refetched(tmp_path: Path) -> None:
    tarball = tmp_path / "code.tar.gz"
    tarball.write_bytes(tar_bytes(code_files("one")))
    code = tmp_path / "code"
    assert fetch_code(str(tarball), code) == "fetched"
    assert fetch_code(str(tarball), code) == "reused"
    tarball.write_bytes(tar_bytes(code_files("two")))
    os.utime(tarball, ns=(1, 1))
    assert fetch_code(str(tarball), code) == "fetched"
    assert (code / "version.txt").read_text() == "two"


def test_smc_keeps_its_bookkeeping_outside_the_code_dir(tmp_path: Path) -> None:
    tarball = tmp_path / "code.tar.gz"
    tarball.write_bytes(tar_bytes(code_files("one")))
    code = tmp_path / "job" / "code"
    assert fetch_code(str(tarball), code) == "fetched"
    # Only the archive's files: no lock, marker or staging dir for the user's code to see or copy.
    assert sorted(os.listdir(code)) == ["pkgdir", "train.py", "version.txt"]
    marker = json.loads((tmp_path / "job" / ".smc-code" / MARKER_NAME).read_text())
    assert marker["source"] == str(tarball)
    assert sorted(os.listdir(tmp_path / "job")) == [".smc-code", "code"]


RACER = """
import sys
from smc_core.usercode.fetch import fetch_code
print(fetch_code(sys.argv[1], sys.argv[2]))
"""


def test_processes_on_one_host_take_turns(tmp_path: Path, s3_server: MotoServer) -> None:
    bucket = s3_server.bucket()
    files = {f"data/{i}.txt": str(i) * 5000 for i in range(200)}
    files.update(code_files("race"))
    s3_server.client().put_object(Bucket=bucket, Key="code.tar.gz", Body=tar_bytes(files))
    code = tmp_path / "code"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, f"s3://{bucket}/code.tar.gz", str(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in racers]
    assert all(p.returncode == 0 for p in racers), results
    outcomes = sorted(out.strip() for out, _ in results)
    assert outcomes == ["fetched", "reused", "reused", "reused"]
    assert (code / "data" / "199.txt").read_text() == "199" * 5000
    assert not [n for n in os.listdir(code) if n.startswith(".smc-staging")]


# --- transient faults -------------------------------------------------------------------------


def test_reset_in_the_middle_of_a_download_is_resumed_byte_identical(
    job_dir: Callable[..., Path], s3_server: MotoServer, fault_proxy: FaultProxy
) -> None:
    bucket = s3_server.bucket()
    payload = {f"blob{i}.bin": os.urandom(300_000) for i in range(6)}
    files: dict[str, str | bytes] = {**code_files("faulty"), **payload}
    archive = tar_bytes(files, mode="w")  # uncompressed: the cut falls inside a member's data
    s3_server.client().put_object(Bucket=bucket, Key="code.tar", Body=archive)
    fault_proxy.add_fault(
        method="GET", path_contains="code.tar", reset_after=len(archive) // 3, only_ranged=False
    )
    fault_proxy.add_fault(method="GET", path_contains="code.tar", status=503, only_ranged=True)
    fault_proxy.add_fault(method="GET", path_contains="code.tar", reset_after=250_000, only_ranged=True)
    base = job_with_source(job_dir, f"s3://{bucket}/code.tar")
    done = run_train(base, env={"AWS_ENDPOINT_URL": fault_proxy.endpoint_url})
    assert done.returncode == 0, done.stderr
    assert "VERSION faulty" in done.stdout
    for name, data in payload.items():
        assert (base / "code" / name).read_bytes() == data
    gets = [r for r in fault_proxy.requests if r.method == "GET"]
    faults = [r.fault for r in gets if r.fault]
    assert len(faults) == 3, gets
    # each retry asks for the rest from the byte the client had (a reset drops bytes in flight)
    starts = [int(r.range.removeprefix("bytes=").rstrip("-")) for r in gets if r.range]
    assert len(starts) == 3 and 0 < starts[0] <= len(archive) // 3
    assert starts[0] == starts[1] < starts[2] <= starts[1] + 250_000
    assert "transient error" in done.stderr and "resumed" in done.stderr


def test_a_source_dir_holding_the_code_dir_is_copied_without_it(tmp_path: Path) -> None:
    # `smc local .` run in the source dir: the job dir (and its code dir) are inside the source.
    from smc_core.usercode.fetch import download_and_extract

    source = tmp_path / "project"
    (source / "pkg").mkdir(parents=True)
    (source / "train.py").write_text("print('hi')\n")
    (source / "pkg" / "util.py").write_text("X = 1\n")
    dest = source / ".smc" / "jobs" / "train-1" / "code" / ".smc-staging-1"
    dest.mkdir(parents=True)
    download_and_extract(str(source), dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "pkg",
        "pkg/util.py",
        "train.py",
    ]


def test_an_emptied_code_dir_is_fetched_again(tmp_path: Path) -> None:
    # The marker lives beside the code dir: emptying the code dir must not make smc "reuse" nothing.
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('hi')\n")
    code = tmp_path / "code"
    assert fetch_code(str(source), code) == "fetched"
    assert fetch_code(str(source), code) == "reused"
    (code / "train.py").unlink()
    assert fetch_code(str(source), code) == "fetched"
    assert (code / "train.py").read_text() == "print('hi')\n"
