"""Warm pools (issue 26): uv's cache and the extracted code kept in the persistent cache directory,
reused by the next job; a corrupt or foreign cache detected and bypassed, and said so."""

from __future__ import annotations

import os
from pathlib import Path

from smc_core.testing.jobs import make_job_dir
from smc_core.testing.s3 import MotoServer
from smc_core.usercode.fetch import fetch_code
from smc_core.usercode.warmpool import WarmPoolCache

from ..helpers import make_wheel, run_train, tar_bytes

USES_DEPS = "import dep0, dep1, dep2\nprint('deps', dep0.VALUE + dep1.VALUE + dep2.VALUE, flush=True)\n"


def _job(base: Path, wheels: Path) -> tuple[Path, dict[str, str]]:
    make_job_dir(
        base,
        entry_point="train.py",
        code={"train.py": USES_DEPS, "requirements.txt": "dep0\ndep1\ndep2\n"},
    )
    (base / "sagemaker" / "warmpoolcache").mkdir(parents=True, exist_ok=True)
    env = {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "UV_NO_CONFIG": "1",
        "SMC_INSTALLER": "uv",
    }
    return base, env


def test_the_next_job_installs_from_the_warm_pool_and_a_corrupt_cache_is_bypassed(
    tmp_path: Path, scratch_python: str
) -> None:
    wheels = tmp_path / "wheels"
    for index in range(3):
        make_wheel(wheels, f"dep{index}", "1.0", f"VALUE = {index + 1}\n")
    base, env = _job(tmp_path / "job", wheels)
    cache = base / "sagemaker" / "warmpoolcache" / "smc"

    first = run_train(base, env=env, python=scratch_python)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "deps 6" in first.stdout
    assert "the installers' caches are in" in first.stderr
    assert (cache / "uv.manifest.json").is_file() and any((cache / "uv").rglob("dep0*"))

    # the same job again on the warm pool: the cache is trusted
    second = run_train(base, env=env, python=scratch_python)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "is corrupt" not in second.stderr

    victim = next(p for p in (cache / "uv").rglob("*") if p.is_file() and p.stat().st_size > 0)
    victim.write_bytes(victim.read_bytes()[:-1])  # cut short, as a job killed while writing leaves it
    third = run_train(base, env=env, python=scratch_python)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "Warm pool: the uv cache in" in third.stderr and "is corrupt" in third.stderr
    assert "changed:" in third.stderr and "installs clean" in third.stderr
    assert "deps 6" in third.stdout


def test_a_foreign_cache_folder_is_not_used(tmp_path: Path, scratch_python: str) -> None:
    wheels = tmp_path / "wheels"
    for index in range(3):
        make_wheel(wheels, f"dep{index}", "1.0", f"VALUE = {index + 1}\n")
    base, env = _job(tmp_path / "job", wheels)
    foreign = base / "sagemaker" / "warmpoolcache" / "smc"
    foreign.mkdir(parents=True)
    (foreign / "theirs.bin").write_bytes(b"not smc's")
    done = run_train(base, env=env, python=scratch_python)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "was not made by this smc" in done.stderr and "not trusted, not used" in done.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["theirs.bin"]


def test_the_extracted_code_is_kept_by_etag_and_checked(tmp_path: Path, s3_server: MotoServer) -> None:
    bucket = s3_server.bucket()
    s3_server.client().put_object(
        Bucket=bucket,
        Key="src.tar.gz",
        Body=tar_bytes({"train.py": "print('v1')\n", "lib/util.py": "X = 1\n"}),
    )
    source = f"s3://{bucket}/src.tar.gz"
    cache = WarmPoolCache(tmp_path / "warmpoolcache")
    assert cache.open()
    environ = {**os.environ, **s3_server.env}
    fetch_code(source, tmp_path / "one", environ=environ, region="us-east-1", cache=cache)
    entries = list((cache.root / "code").iterdir())
    assert len(entries) == 1 and (entries[0] / "files" / "lib" / "util.py").read_text() == "X = 1\n"

    (entries[0] / "files" / "lib" / "util.py").write_text("X = 1  # kept\n")  # still one file: the cache wins
    restored = tmp_path / "two"
    assert cache.restore_code(source, _etag(s3_server, bucket), restored) is False  # its SHA-256 differs
    assert not entries[0].exists()
    fetch_code(source, tmp_path / "three", environ=environ, region="us-east-1", cache=cache)
    assert (tmp_path / "three" / "lib" / "util.py").read_text() == "X = 1\n"
    assert cache.restore_code(source, _etag(s3_server, bucket), restored) is True
    assert (restored / "train.py").read_text() == "print('v1')\n"


def _etag(s3_server: MotoServer, bucket: str) -> str:
    return str(s3_server.client().head_object(Bucket=bucket, Key="src.tar.gz")["ETag"])


def test_uv_copies_from_a_cache_on_another_file_system(tmp_path: Path) -> None:
    """A warm pool's volume is not the file system of the image's site-packages: uv is told to copy
    (a hard link per file would fail and warn); on the same file system, and where the job sets
    UV_LINK_MODE itself, uv's own choice stands."""
    import sysconfig
    import tempfile

    purelib = os.stat(sysconfig.get_paths()["purelib"]).st_dev
    assert os.stat(tmp_path).st_dev == purelib, "tmp_path must share site-packages' file system"
    same = WarmPoolCache(tmp_path / "same")
    assert same.open() and "UV_LINK_MODE" not in same.installer_environ({})
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:  # tmpfs
        assert os.stat(other).st_dev != purelib
        cache = WarmPoolCache(Path(other))
        assert cache.open()
        assert cache.installer_environ({})["UV_LINK_MODE"] == "copy"
        assert "UV_LINK_MODE" not in cache.installer_environ({"UV_LINK_MODE": "symlink"})
