"""Safe extraction: hostile archives are refused, naming the member, and nothing outside is touched."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from smc_core.errors import FetchError
from smc_core.usercode.archive import extract_tar
from smc_core.usercode.fetch import fetch_code


def build(entries: list[tuple[str, str, str | bytes]]) -> bytes:
    """A .tar.gz of ``(kind, name, content-or-link)`` entries, in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for kind, name, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = value.encode() if isinstance(value, str) else value
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "blk": tarfile.BLKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind in ("sym", "hard"):
                info.linkname = str(value)
            archive.addfile(info)
    return buffer.getvalue()


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` with its content (files) or link target (symlinks)."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            out[rel] = (
                os.readlink(path) if path.is_symlink() else (path.read_bytes() if path.is_file() else "dir")
            )
    return out


HOSTILE: dict[str, tuple[list[tuple[str, str, str | bytes]], str]] = {
    "absolute path": ([("file", "/tmp/evil-abs.txt", "x")], "/tmp/evil-abs.txt"),
    "dot-dot": ([("file", "ok.txt", "fine"), ("file", "../outside/evil.txt", "x")], "../outside/evil.txt"),
    "dot-dot in the middle": ([("file", "a/../../outside/evil.txt", "x")], "a/../../outside/evil.txt"),
    "absolute symlink": ([("sym", "link", "/etc/passwd")], "link"),
    "relative symlink out": ([("sym", "link", "../outside")], "link"),
    "symlink then write through it": (
        [("sym", "escape", "../outside"), ("file", "escape/evil.txt", "x")],
        "escape",
    ),
    "symlink chain out": ([("dir", "d", ""), ("sym", "d/up", ".."), ("sym", "d/up2", "up/..")], "d/up2"),
    # A directory already written into (known to be real) becomes a link out, then is written through.
    "used directory re-pointed out": (
        [("file", "d/ok.txt", "fine"), ("sym", "d", "../outside"), ("file", "d/evil.txt", "x")],
        "d",
    ),
    "hard link out": ([("hard", "hard", "../outside/secret.txt")], "hard"),
    "hard link absolute": ([("hard", "hard", "/etc/passwd")], "hard"),
    "character device": ([("chr", "tty", "")], "tty"),
    "block device": ([("blk", "disk", "")], "disk"),
    "fifo": ([("fifo", "pipe", "")], "pipe"),
}


@pytest.fixture
def arena(tmp_path: Path) -> Callable[[], tuple[Path, Path, dict[str, bytes | str]]]:
    """A destination and, beside it, an ``outside`` directory whose content must never change."""

    def make() -> tuple[Path, Path, dict[str, bytes | str]]:
        outside = tmp_path / "outside"
        outside.mkdir(exist_ok=True)
        (outside / "secret.txt").write_text("secret")
        dest = tmp_path / "code"
        return dest, outside, snapshot(tmp_path)

    return make


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_naming_the_member(
    case: str, arena: Callable[..., tuple], tmp_path: Path
) -> None:
    entries, member = HOSTILE[case]
    dest, _outside, before = arena()
    with pytest.raises(FetchError) as error:
        extract_tar(io.BytesIO(build(entries)), dest, source="evil.tar.gz")
    assert repr(member) in error.value.message
    assert "evil.tar.gz" in error.value.message
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("code")}
    assert after == before
    assert not Path("/tmp/evil-abs.txt").exists()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_leaves_the_code_dir_as_it_was(case: str, tmp_path: Path) -> None:
    entries, member = HOSTILE[case]
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(build(entries))
    code = tmp_path / "job" / "code"
    code.mkdir(parents=True)
    (code / "previous.py").write_text("print('previous')")
    before = snapshot(tmp_path / "job")
    with pytest.raises(FetchError) as error:
        fetch_code(str(archive), code)
    assert repr(member) in error.value.message
    after = {k: v for k, v in snapshot(tmp_path / "job").items() if ".smc-code" not in k}
    assert after == before


def test_links_inside_the_archive_are_extracted(tmp_path: Path) -> None:
    entries: list[tuple[str, str, str | bytes]] = [
        ("dir", "pkg", ""),
        ("file", "pkg/data.txt", "payload"),
        ("sym", "pkg/alias.txt", "data.txt"),
        ("sym", "top", "pkg"),
        ("hard", "pkg/hard.txt", "pkg/data.txt"),
        ("file", "top/through-link.txt", "inside"),
    ]
    dest = tmp_path / "code"
    names = extract_tar(io.BytesIO(build(entries)), dest)
    assert names == [e[1] for e in entries]
    assert (dest / "pkg" / "alias.txt").read_text() == "payload"
    assert os.readlink(dest / "top") == "pkg"
    assert (dest / "pkg" / "hard.txt").stat().st_ino == (dest / "pkg" / "data.txt").stat().st_ino
    assert (dest / "pkg" / "through-link.txt").read_text() == "inside"


def test_not_an_archive_is_a_fetch_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="not an archive"):
        extract_tar(
            io.BytesIO(b"this is not a tar archive at all" * 20), tmp_path / "code", source="s3://b/k"
        )


def test_truncated_archive_is_a_fetch_error(tmp_path: Path) -> None:
    data = build([("file", "big.bin", os.urandom(200_000))])
    with pytest.raises(
        FetchError, match=r"cut.tar.gz: the gzip archive is truncated: it ends after \d+ bytes"
    ):
        extract_tar(io.BytesIO(data[: len(data) // 2]), tmp_path / "code", source="cut.tar.gz")


def test_setuid_bits_are_dropped(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("tool")
        info.mode, info.size = 0o4755, 2
        archive.addfile(info, io.BytesIO(b"hi"))
    extract_tar(io.BytesIO(buffer.getvalue()), tmp_path / "code")
    assert (tmp_path / "code" / "tool").stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("decoder", ["isal", "zlib"])
def test_corrupt_gzip_is_a_fetch_error_with_either_decoder(
    decoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if decoder == "zlib":
        monkeypatch.setitem(__import__("sys").modules, "isal", None)  # as where isal has no wheel
    else:
        pytest.importorskip("isal")
    data = bytearray(build([("file", "text.py", "x = 1\n" * 50_000)]))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(FetchError, match=r"bad.tar.gz: the gzip archive is corrupt near byte \d+"):
        extract_tar(io.BytesIO(bytes(data)), tmp_path / "code", source="bad.tar.gz")


def test_a_directory_replaced_by_a_link_is_written_through_the_link(tmp_path: Path) -> None:
    # Parents already resolved are remembered (100,000 small files, issue 28): a symlink member, or a
    # directory removed, must make the next member under that name resolve again.
    entries: list[tuple[str, str, str | bytes]] = [
        ("dir", "real", ""),
        ("file", "a/one.txt", "1"),
        ("sym", "a", "real"),
        ("file", "a/two.txt", "2"),
        ("file", "b/c/three.txt", "3"),
        ("file", "b", "now a file"),
        ("dir", "b", ""),
        ("file", "b/c/four.txt", "4"),
    ]
    dest = tmp_path / "code"
    extract_tar(io.BytesIO(build(entries)), dest)
    assert os.readlink(dest / "a") == "real"
    assert (dest / "real" / "two.txt").read_text() == "2"
    assert not (dest / "real" / "one.txt").exists()  # the directory "a" it was in was replaced
    assert (dest / "b" / "c" / "four.txt").read_text() == "4"
    assert not (dest / "b" / "c" / "three.txt").exists()
