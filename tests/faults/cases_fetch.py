"""Catalogue cases: fetching the user's code (exit 4, or success after transient faults)."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

from smc_core.testing.s3 import FAKE_CREDENTIALS
from tests.faults.kit import (
    Kit,
    Outcome,
    closed_port_url,
    silent_server,
    tar_gz,
    tar_with,
    wait_for,
    zip_bytes,
)

RUNS = "import pathlib\npathlib.Path('ran').touch()\nprint('trained')\n"
FAST_S3 = {"SMC_S3_TIMEOUT": "6", "SMC_S3_RETRIES": "3", **FAKE_CREDENTIALS}


def _no_staging(base: Path) -> None:
    leftovers = [p.name for p in (base / "code").glob(".smc-staging-*")]
    assert not leftovers, leftovers


def s3_connection_refused(kit: Kit) -> Outcome:
    endpoint = closed_port_url()
    base = kit.job(source="s3://bucket/job/source/sourcedir.tar.gz")
    done = kit.train(base, env={"AWS_ENDPOINT_URL": endpoint, **FAST_S3})
    assert endpoint in done.first_line and "s3://bucket/job/source/sourcedir.tar.gz" in done.first_line
    assert "last error" in done.first_line and "AttributeError" not in done.stderr
    assert done.stderr.count("retry ") >= 1
    return done


def s3_endpoint_never_answers(kit: Kit) -> Outcome:
    base = kit.job(source="s3://bucket/code.tar.gz")
    with silent_server() as endpoint:
        done = kit.train(base, env={"AWS_ENDPOINT_URL": endpoint, **FAST_S3}, timeout=60)
    assert done.seconds < 30, done.seconds
    assert endpoint in done.first_line and "timeout" in done.first_line.lower()
    return done


def s3_head_503_then_ok(kit: Kit) -> Outcome:
    uri = kit.put(tar_gz({"train.py": RUNS}))
    proxy = kit.proxy()
    proxy.add_fault(method="HEAD", path_contains="sourcedir", status=503, times=6)
    base = kit.job(source=uri)
    done = kit.train(base, env={"AWS_ENDPOINT_URL": proxy.endpoint_url, "SMC_S3_RETRIES": "8"})
    assert (base / "code" / "ran").exists()
    assert done.stderr.count("transient error on HEAD before the first byte") == 6
    return done


def s3_get_reset_mid_body(kit: Kit) -> Outcome:
    uri = kit.put(tar_gz({"train.py": RUNS, "big.bin": os.urandom(300_000)}))
    proxy = kit.proxy()
    proxy.add_fault(method="GET", path_contains="sourcedir", reset_after=100_000, times=2)
    base = kit.job(source=uri)
    done = kit.train(base, env={"AWS_ENDPOINT_URL": proxy.endpoint_url})
    assert (base / "code" / "ran").exists()
    assert any(r.range for r in proxy.requests if r.method == "GET"), "resumed with a Range request"
    return done


def s3_get_500_always(kit: Kit) -> Outcome:
    uri = kit.put(tar_gz({"train.py": RUNS}))
    proxy = kit.proxy()
    proxy.add_fault(method="GET", path_contains="sourcedir", status=500, times=1000)
    base = kit.job(source=uri)
    done = kit.train(base, env={"AWS_ENDPOINT_URL": proxy.endpoint_url, **FAST_S3})
    _no_staging(base)
    return done


def s3_object_missing(kit: Kit) -> Outcome:
    uri = kit.put(b"x", key="other")
    base = kit.job(source=uri.rsplit("/", 1)[0] + "/missing.tar.gz")
    done = kit.train(base)
    assert "does not exist in the bucket" in done.first_line
    return done


def s3_bucket_missing(kit: Kit) -> Outcome:
    kit.s3()
    base = kit.job(source="s3://no-such-bucket-smc/code.tar.gz")
    return kit.train(base)


def s3_truncated_tar_gz(kit: Kit) -> Outcome:
    data = tar_gz({"requirements.txt": "nothing-here==1\n", "train.py": RUNS, "util.py": "X = 1\n"})
    uri = kit.put(data[: len(data) * 3 // 4])
    base = kit.job(source=uri)
    done = kit.train(base)
    assert not (base / "code" / "ran").exists() and not (base / "code" / "train.py").exists()
    _no_staging(base)
    return done


def local_truncated_tar_gz(kit: Kit) -> Outcome:
    data = tar_gz({"train.py": RUNS, "big.bin": os.urandom(50_000)})
    (kit.tmp / "code.tar.gz").write_bytes(data[: len(data) // 2])
    base = kit.job(source=str(kit.tmp / "code.tar.gz"))
    done = kit.train(base)
    assert not (base / "code" / "ran").exists()
    return done


def corrupt_gzip(kit: Kit) -> Outcome:
    data = bytearray(tar_gz({"train.py": RUNS, "pad.txt": "y" * 5000}))
    data[len(data) // 2] ^= 0xFF
    uri = kit.put(bytes(data))
    base = kit.job(source=uri)
    done = kit.train(base)
    assert not (base / "code" / "ran").exists()
    return done


def gzip_trailer_wrong(kit: Kit) -> Outcome:
    data = bytearray(tar_gz({"train.py": RUNS}))
    data[-5] ^= 0xFF  # the CRC32 in the trailer
    uri = kit.put(bytes(data))
    base = kit.job(source=uri)
    done = kit.train(base)
    assert not (base / "code" / "ran").exists()
    return done


def s3_zip_source(kit: Kit) -> Outcome:
    uri = kit.put(zip_bytes({"train.py": RUNS, "pkg/util.py": "X = 1\n"}), key="sourcedir.zip")
    base = kit.job(source=uri)
    done = kit.train(base)
    assert (base / "code" / "ran").exists() and (base / "code" / "pkg" / "util.py").exists()
    return done


def local_zip_source(kit: Kit) -> Outcome:
    (kit.tmp / "code.zip").write_bytes(zip_bytes({"train.py": RUNS}))
    base = kit.job(source=str(kit.tmp / "code.zip"))
    done = kit.train(base)
    assert (base / "code" / "ran").exists()
    return done


def truncated_zip(kit: Kit) -> Outcome:
    data = zip_bytes({"train.py": RUNS, "pad.txt": "z" * 3000})
    uri = kit.put(data[: len(data) - 40], key="sourcedir.zip")
    base = kit.job(source=uri)
    done = kit.train(base)
    assert not (base / "code" / "ran").exists()
    return done


def zip_climbs_out(kit: Kit) -> Outcome:
    uri = kit.put(zip_bytes({"../evil.py": "x = 1\n", "train.py": RUNS}), key="sourcedir.zip")
    base = kit.job(source=uri)
    done = kit.train(base)
    assert not (base / "evil.py").exists()
    return done


def s3_not_an_archive(kit: Kit) -> Outcome:
    uri = kit.put(b"print('a script, not an archive')\n" * 30)
    return kit.train(kit.job(source=uri))


def local_file_named_like_archive(kit: Kit) -> Outcome:
    (kit.tmp / "code.tar.gz").write_text("just text\n")
    base = kit.job(source=str(kit.tmp / "code.tar.gz"))
    done = kit.train(base)
    assert "Did you mean" not in done.failure
    return done


def member_absolute(kit: Kit) -> Outcome:
    member = tarfile.TarInfo("/tmp/smc-evil")
    member.size = 1
    uri = kit.put(tar_with(member, b"x"))
    return kit.train(kit.job(source=uri))


def member_dotdot(kit: Kit) -> Outcome:
    member = tarfile.TarInfo("../../evil.txt")
    member.size = 1
    uri = kit.put(tar_with(member, b"x"))
    base = kit.job(source=uri)
    done = kit.train(base)
    assert not (base.parent / "evil.txt").exists()
    return done


def member_symlink_outside(kit: Kit) -> Outcome:
    member = tarfile.TarInfo("link")
    member.type = tarfile.SYMTYPE
    member.linkname = "../../../etc"
    uri = kit.put(tar_with(member))
    return kit.train(kit.job(source=uri))


def member_device(kit: Kit) -> Outcome:
    member = tarfile.TarInfo("dev")
    member.type = tarfile.CHRTYPE
    uri = kit.put(tar_with(member))
    return kit.train(kit.job(source=uri))


def source_http(kit: Kit) -> Outcome:
    return kit.train(kit.job(source="http://example.invalid/code.tar.gz"))


def source_local_missing(kit: Kit) -> Outcome:
    return kit.train(kit.job(source=str(kit.tmp / "nope.tar.gz")))


def source_bad_s3_uri(kit: Kit) -> Outcome:
    return kit.train(kit.job(source="s3://bucket-only"))


def existing_code_error_policy(kit: Kit) -> Outcome:
    uri = kit.put(tar_gz({"train.py": RUNS}))
    base = kit.job({"old.py": "print('old')\n"}, source=uri)
    done = kit.train(base, env={"SMC_EXISTING_CODE": "error"})
    assert (base / "code" / "old.py").exists() and not (base / "code" / "ran").exists()
    return done


def sigterm_during_s3_download(kit: Kit) -> Outcome:
    base = kit.job(source="s3://bucket/code.tar.gz")
    with silent_server() as endpoint:
        started = time.monotonic()  # loading takes well under a second; then HEAD hangs for 20 s
        done = kit.signal_when(
            base,
            lambda: time.monotonic() > started + 3,
            env={"AWS_ENDPOINT_URL": endpoint, "SMC_S3_TIMEOUT": "60"},
        )
    assert done.seconds < 20
    _no_staging(base)
    return done


def sigterm_mid_body(kit: Kit) -> Outcome:
    uri = kit.put(tar_gz({"train.py": RUNS, "big.bin": os.urandom(400_000)}))
    proxy = kit.proxy()
    proxy.add_fault(method="GET", path_contains="sourcedir", status=503, times=1000)
    base = kit.job(source=uri)
    done = kit.signal_when(
        base,
        lambda: sum(r.method == "GET" for r in proxy.requests) >= 2,
        env={"AWS_ENDPOINT_URL": proxy.endpoint_url, "SMC_S3_TIMEOUT": "60"},
    )
    _no_staging(base)
    assert not (base / "code" / "ran").exists()
    return done


def stale_staging_cleaned(kit: Kit) -> Outcome:
    uri = kit.put(tar_gz({"train.py": RUNS}))
    base = kit.job(source=uri)
    stale = base / "code" / ".smc-staging-killed"
    (stale / "half").mkdir(parents=True)
    (stale / "half" / "file.bin").write_bytes(b"partial")
    done = kit.train(base)
    assert not stale.exists() and (base / "code" / "ran").exists()
    assert "left in" in done.stderr and "interrupted fetch" in done.stderr
    return done


def plain_tar_cut_mid_member(kit: Kit) -> Outcome:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = RUNS.encode() * 200
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    uri = kit.put(buffer.getvalue()[:1500], key="code.tar")
    base = kit.job(source=uri)
    done = kit.train(base)
    assert not (base / "code" / "ran").exists()
    return done


_ = wait_for


def plain_tar_cut_between_members(kit: Kit) -> Outcome:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in (("train.py", RUNS), ("requirements.txt", "nothing==1\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text.encode()))
    data = buffer.getvalue()
    uri = kit.put(data[:1024], key="code.tar")  # header + one block: exactly the first member
    base = kit.job(source=uri)
    done = kit.train(base)
    assert not (base / "code" / "ran").exists() and "'train.py'" in done.first_line
    return done
