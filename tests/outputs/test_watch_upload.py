"""The watcher and the uploader on their own (polling and inotify), against moto's server."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from smc_core.errors import ConfigError
from smc_core.outputs.sync import start_directory_sync
from smc_core.outputs.upload import join_s3_uri, parse_s3_prefix
from smc_core.outputs.watch import ClosedFileWatcher, inotify_available


@pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "polling"])
def test_watcher_reports_closed_and_deleted_files(tmp_path: Path, use_inotify: bool) -> None:
    if use_inotify and not inotify_available():
        pytest.skip("inotify is not available here (Linux with inotify_simple)")
    closed: list[Path] = []
    deleted: list[Path] = []
    lock = threading.Lock()

    def record(into):
        def callback(path):
            with lock:
                into.append(path)

        return callback

    watcher = ClosedFileWatcher(
        tmp_path, record(closed), record(deleted), poll_interval=0.2, use_inotify=use_inotify
    ).start()
    try:
        (tmp_path / "sub" / "deeper").mkdir(parents=True)
        time.sleep(0.5)
        (tmp_path / "sub" / "deeper" / "a.txt").write_text("a")
        held = open(tmp_path / "held.txt", "w")  # noqa: SIM115
        held.write("x")
        held.flush()
        time.sleep(1.0)
        (tmp_path / "sub" / "deeper" / "a.txt").unlink()
        time.sleep(1.0)
    finally:
        watcher.stop()
        held.close()
    assert tmp_path / "sub" / "deeper" / "a.txt" in closed
    assert tmp_path / "sub" / "deeper" / "a.txt" in deleted
    if use_inotify:  # polling cannot tell an idle open file from a closed one (documented)
        assert tmp_path / "held.txt" not in closed


def test_sync_uploads_changes_once_and_skips_what_is_already_there(tmp_path: Path, s3_server) -> None:
    bucket = s3_server.bucket()
    root = tmp_path / "ckpt"
    root.mkdir()
    (root / "restored.txt").write_text("from S3")
    sync = start_directory_sync(
        root, f"s3://{bucket}/ckpt", s3_server.client, settle=0.1, uploaded=[root / "restored.txt"]
    )
    (root / "new.txt").write_text("v1")
    time.sleep(1.0)
    (root / "new.txt").write_text("v2")
    report = sync.finish(30)
    assert report.complete
    client = s3_server.client()
    listed = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert listed == {"ckpt/new.txt"}  # restored.txt was already there, unchanged
    assert client.get_object(Bucket=bucket, Key="ckpt/new.txt")["Body"].read() == b"v2"


def test_large_files_go_up_in_parts(tmp_path: Path, s3_server) -> None:
    bucket = s3_server.bucket()
    data = bytes(range(256)) * (40 * 1024 * 4)  # 40 MiB
    (tmp_path / "big.bin").write_bytes(data)
    sync = start_directory_sync(tmp_path, f"s3://{bucket}/out", s3_server.client, settle=0.1)
    report = sync.finish(120)
    assert report.complete, report
    head = s3_server.client().head_object(Bucket=bucket, Key="out/big.bin")
    assert head["ContentLength"] == len(data)
    assert "-" in head["ETag"]  # a multipart upload's ETag ends with -<parts>


def test_s3_locations_are_checked() -> None:
    assert parse_s3_prefix("s3://b/p/q/", "x") == ("b", "p/q")
    assert join_s3_uri("s3://b/runs/", "job", "output") == "s3://b/runs/job/output"
    with pytest.raises(ConfigError, match="--s3-output is 'b/p', which is not an S3 location"):
        parse_s3_prefix("b/p", "--s3-output")


def test_a_file_deleted_during_its_upload_is_not_a_failure(tmp_path: Path, s3_server) -> None:
    # The script deletes the file on purpose while it goes up: boto3's real upload then fails with
    # FileNotFoundError, which is not a transient error to retry, nor a file that failed to upload.
    bucket = s3_server.bucket()
    root = tmp_path / "out"
    root.mkdir()

    def client_deleting_first():  # the real client; the file goes away as its upload starts
        client = s3_server.client()
        real = client.upload_file

        def upload_file(filename, *args, **kwargs):
            Path(filename).unlink(missing_ok=True)
            return real(filename, *args, **kwargs)

        client.upload_file = upload_file
        return client

    sync = start_directory_sync(root, f"s3://{bucket}/out", client_deleting_first, settle=0.1)
    (root / "scratch.tmp").write_text("temporary")
    time.sleep(1.0)
    report = sync.finish(30)
    assert report.complete and not report.failures, report


@pytest.mark.skipif(
    not inotify_available(), reason="inotify is not available here (Linux with inotify_simple)"
)
def test_a_root_deleted_and_made_again_is_watched_again(tmp_path: Path) -> None:
    root = tmp_path / "intermediate"
    closed: list[Path] = []
    watcher = ClosedFileWatcher(root, closed.append, use_inotify=True).start()
    try:
        shutil.rmtree(root)
        time.sleep(0.5)
        (root / "sub").mkdir(parents=True)
        time.sleep(0.5)
        (root / "sub" / "later.txt").write_text("x")
        deadline = time.monotonic() + 10
        while root / "sub" / "later.txt" not in closed and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watcher.stop()
    assert root / "sub" / "later.txt" in closed, closed
