"""The fast entry-point scan finds exactly what importlib.metadata.entry_points(group=...) finds.

Real distributions on a real ``sys.path``: names that normalise alike across directories (the first one on
the path wins, even when it has no entry points), a ``.dist-info`` and an ``.egg-info`` of one name in one
directory, the same entry-point name from two distributions, an ``.egg-info`` that is a file, a missing
directory, headers that only look like ours, and a zip file (which takes importlib.metadata's own walk).
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from smc_core.plugins import _dists_by_directory_listing, _entry_points

GROUPS = ("smc.plugins", "smc.adapters", "console_scripts")


def _dist(root: Path, dirname: str, entry_points: str | None) -> None:
    info = root / dirname
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dirname.split('-')[0]}\nVersion: 1.0\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


def _key(ep: metadata.EntryPoint) -> tuple[str, str, str, str]:
    return ep.group, ep.name, ep.value, str(getattr(ep.dist, "_path", ""))


def _expected() -> dict[str, list[tuple[str, str, str, str]]]:
    return {
        g: [_key(ep) for ep in sorted(metadata.entry_points(group=g), key=lambda ep: ep.name)] for g in GROUPS
    }


@pytest.fixture
def odd_path(tmp_path: Path) -> Iterator[Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "Foo.Bar-1.0.dist-info", "[smc.plugins]\nfoo = foo_mod\n")
    _dist(second, "foo_bar-2.0.dist-info", "[smc.plugins]\nshadowed = foo2_mod\n")
    _dist(first, "zed-1.0.dist-info", None)
    _dist(second, "zed-2.0.dist-info", "[smc.adapters]\nzed = shadowed\n")
    _dist(second, "dup-1.0.dist-info", "[smc.adapters]\ndup = one\n")
    _dist(second, "dup-2.0.egg-info", "[smc.adapters]\ndup = two\n")
    _dist(first, "same-1.0.dist-info", "[smc.adapters]\nx = a_mod\n[console_scripts]\nx = a:main\n")
    _dist(second, "other-1.0.dist-info", "[smc.adapters]\nx = b_mod\n")
    _dist(first, "lookalike-1.0.dist-info", "[ smc.plugins ]\nno = 1\n[smc.pluginsx]\nno = 2\n")
    (first / "plain.egg-info").write_text("Name: plain\n")
    saved = list(sys.path)
    sys.path[:0] = [str(first), str(tmp_path / "missing"), str(second)]
    try:
        yield tmp_path
    finally:
        sys.path[:] = saved


def test_directory_scan_matches_importlib_metadata(odd_path: Path) -> None:
    assert _dists_by_directory_listing(tuple(f"[{g}]".encode() for g in GROUPS)) is not None
    found = {g: [_key(ep) for ep in eps] for g, eps in _entry_points(*GROUPS).items()}
    assert found == _expected()
    assert [k[1:3] for k in found["smc.plugins"] if "first" in k[3] or "second" in k[3]] == [
        ("foo", "foo_mod")
    ]


def test_a_zip_on_sys_path_takes_importlib_metadata_walk(odd_path: Path) -> None:
    archive = odd_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zz-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zz\nVersion: 1.0\n")
        zf.writestr("zz-1.0.dist-info/entry_points.txt", "[smc.plugins]\nzz = zz_mod\n")
    sys.path.insert(0, str(archive))
    assert _dists_by_directory_listing((b"[smc.plugins]",)) is None
    found = {g: [_key(ep) for ep in eps] for g, eps in _entry_points(*GROUPS).items()}
    assert found == _expected()
    assert ("smc.plugins", "zz", "zz_mod") in [k[:3] for k in found["smc.plugins"]]
