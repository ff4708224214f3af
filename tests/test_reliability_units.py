"""The pieces behind the fault catalogue, alone: archive checks, exec limits, job-dir rules, reports."""

from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from smc_core.base.redact import forget_secrets, redact, remember_secrets
from smc_core.base.settings import SettingsRegistry
from smc_core.errors import ConfigError, FetchError
from smc_core.host.jobdir import check_job_dir, job_lock
from smc_core.host.reporting import FailureFile
from smc_core.job.paths import JobPaths
from smc_core.launch.functions import train_arguments
from smc_core.launch.limits import MAX_ARG_STRLEN, check_exec_limits
from smc_core.launch.signals import describe_exit_code
from smc_core.local.command import check_job_name
from smc_core.usercode.archive import archive_kind, extract_tar, extract_zip
from smc_core.usercode.fetch import remove_stale_staging


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_archive_kinds_are_told_apart_by_their_first_bytes() -> None:
    assert archive_kind(b"\x1f\x8b\x08rest") == "gzip"
    assert archive_kind(b"BZh91AY") == "bzip2"
    assert archive_kind(b"PK\x03\x04") == "zip"
    assert archive_kind(_tar({"a": b"x"})[:512]) == "tar"
    assert archive_kind(b"print('hello')\n" * 40) is None


def test_a_plain_tar_cut_between_members_is_refused(tmp_path: Path) -> None:
    data = _tar({"a.py": b"x" * 10, "b.py": b"y" * 10})
    with pytest.raises(
        FetchError, match=r"truncated: it ends after 1024 bytes of tar data, after the member 'a.py'"
    ):
        extract_tar(io.BytesIO(data[:1024]), tmp_path / "out", source="cut.tar")
    assert extract_tar(io.BytesIO(data), tmp_path / "whole", source="whole.tar") == ["a.py", "b.py"]


def test_zip_archives_extract_and_climbing_members_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("pkg/train.py", "print(1)\n")
    assert extract_zip(good, tmp_path / "out") == ["pkg/train.py"]
    assert (tmp_path / "out" / "pkg" / "train.py").read_text() == "print(1)\n"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../escape.py", "x")
    with pytest.raises(FetchError, match=r"contains '\.\.'"):
        extract_zip(bad, tmp_path / "out2")
    assert not (tmp_path / "escape.py").exists()


def test_exec_limits_name_the_large_hyperparameter() -> None:
    check_exec_limits(["python", "train.py", "--a", "1"], {"PATH": "/bin"}, {"a": 1})
    big = "v" * MAX_ARG_STRLEN
    with pytest.raises(ConfigError, match=r"The hyperparameter 'blob' \(131072 characters\) too large"):
        check_exec_limits(["python", "train.py", "--blob", big], {}, {"blob": big, "epochs": 2})


def test_job_names_are_one_plain_component() -> None:
    assert check_job_name("my-job-1") == "my-job-1"
    for bad in ("../x", "/abs", "a/b", "..", ".", "", "a\\b"):
        with pytest.raises(ConfigError, match="--job-name"):
            check_job_name(bad)


def test_a_missing_job_dir_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "missing")
    with pytest.raises(ConfigError, match="does not exist"):
        check_job_dir(paths, SettingsRegistry({}))
    assert not paths.base_dir.exists()


def test_a_busy_job_dir_is_refused_at_once(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path)
    with job_lock(paths):
        started = time.monotonic()
        with (
            pytest.raises(
                ConfigError, match=f"Another job is running in the job directory {tmp_path} \\(smc pid"
            ),
            job_lock(paths),
        ):
            pass
        assert time.monotonic() - started < 1
    with job_lock(paths):  # free again once the first ends
        pass


def test_the_failure_file_is_written_into_its_reserve(tmp_path: Path) -> None:
    failure = FailureFile(tmp_path / "failure")
    failure.reserve()
    assert failure.reserve_path.stat().st_size > 0
    assert failure.write("FetchError: x\nExitCode 4")
    assert (tmp_path / "failure").read_text() == "FetchError: x\nExitCode 4\n"
    assert not failure.reserve_path.exists() and sorted(os.listdir(tmp_path)) == ["failure"]


def test_stale_staging_dirs_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".smc-staging-abc" / "d").mkdir(parents=True)
    (tmp_path / "train.py").write_text("")
    assert remove_stale_staging(tmp_path) == [".smc-staging-abc"]
    assert sorted(os.listdir(tmp_path)) == ["train.py"]


def test_sigkill_is_described_by_its_cause() -> None:
    assert "sent by smc when the grace period" in describe_exit_code(137, "grace-period")
    assert "out-of-memory killer (the cgroup" in describe_exit_code(137, "out-of-memory")
    plain = describe_exit_code(137)
    assert plain.startswith("exit code 137: killed by SIGKILL (not by smc")


# --- one redaction --------------------------------------------------------------------------------------
def test_redact_hides_secret_values_beside_their_names_whatever_their_length() -> None:
    cases = {
        "python train.py --api_key abc --epochs 2": "python train.py --api_key <redacted> --epochs 2",
        "python train.py --api_key=abc": "python train.py --api_key=<redacted>",
        "python train.py --db_password 'a b' -x": "python train.py --db_password '<redacted>' -x",
        'SM_HPS={"api_key":"abc","epochs":2}': 'SM_HPS={"api_key":"<redacted>","epochs":2}',
        'SM_USER_ARGS=["--api_key","abc"]': 'SM_USER_ARGS=["--api_key","<redacted>"]',
        "['train.py', '--token', 'xyz']": "['train.py', '--token', '<redacted>']",
        "SM_HP_DB_PASSWORD=pw1 SM_HP_EPOCHS=2": "SM_HP_DB_PASSWORD=<redacted> SM_HP_EPOCHS=2",
        "https://user:hunter2@pypi.example/simple": "https://user:<redacted>@pypi.example/simple",
        "KeyError: 'monkey'": "KeyError: 'monkey'",
        "mpirun -x SM_HP_API_KEY -x PATH": "mpirun -x SM_HP_API_KEY -x PATH",
    }
    for text, shown in cases.items():
        assert redact(text) == shown, text


def test_redact_scrubs_long_secret_values_anywhere() -> None:
    remember_secrets({"MY_TOKEN": "tok-0123456789", "SHORT_KEY": "abc", "EPOCHS": "epochs-1234"})
    try:
        assert redact('printed tok-0123456789 and "tok-0123456789"') == 'printed <redacted> and "<redacted>"'
        assert redact("abc and epochs-1234 stay") == "abc and epochs-1234 stay"
    finally:
        forget_secrets()


def test_function_mode_does_not_quote_a_secret_value_it_cannot_convert() -> None:
    def train(db_password: int) -> None: ...

    with pytest.raises(ConfigError) as raised:
        train_arguments(train, {"db_password": "pw1"}, {})
    assert "pw1" not in raised.value.message and "<redacted>" in raised.value.message


def test_redact_leaves_usage_placeholders_alone() -> None:
    for text in ("--env '=x': expected KEY=VALUE", "--hyperparameter 'epochs': expected KEY=VALUE"):
        assert redact(text) == text
