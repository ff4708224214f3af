"""find_entry_points finds exactly what importlib.metadata.entry_points(group=...) finds, and loads the same.

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
from typing import Any

import pytest

from smc_core.host.entrypoints import ScannedEntryPoint, _scan_directories, find_entry_points
from smc_core.host.plugins import _dist_of

GROUPS = ("smc.plugins", "smc.adapters", "console_scripts")


def _dist(root: Path, dirname: str, entry_points: str | None, metadata_text: str | None = None) -> None:
    info = root / dirname
    info.mkdir(parents=True)
    name = dirname.split("-")[0]
    (info / "METADATA").write_text(metadata_text or f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


def _key(ep: Any) -> tuple[str, str, str, str]:
    dist = ep.dist
    path = getattr(dist, "path", None) or str(getattr(dist, "_path", ""))
    return ep.group, ep.name, ep.value, path


def _expected() -> dict[str, list[tuple[str, str, str, str]]]:
    return {
        g: [_key(ep) for ep in sorted(metadata.entry_points(group=g), key=lambda ep: ep.name)] for g in GROUPS
    }


@pytest.fixture
def odd_path(tmp_path: Path) -> Iterator[Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "Foo.Bar-1.0.dist-info", "# comment\n[smc.plugins]\nfoo = json:dumps\n")
    _dist(second, "foo_bar-2.0.dist-info", "[smc.plugins]\nshadowed = foo2_mod\n")
    _dist(first, "zed-1.0.dist-info", None)
    _dist(second, "zed-2.0.dist-info", "[smc.adapters]\nzed = shadowed\n")
    _dist(second, "dup-1.0.dist-info", "[smc.adapters]\ndup = one\n")
    _dist(second, "dup-2.0.egg-info", "[smc.adapters]\ndup = two\n")
    _dist(
        first,
        "same-1.0.dist-info",
        "[smc.adapters]\n  x =  os.path : join [extra]\n[console_scripts]\nx = a:main\n",
        "Metadata-Version: 2.1\nname: Same-Dist\nVersion: 3.1.4\nVersion: 9\nSummary: s\n\nName: body\n",
    )
    _dist(second, "other-1.0.dist-info", "[smc.adapters]\nx = b_mod\n")
    _dist(first, "lookalike-1.0.dist-info", "[ smc.plugins ]\nno = 1\n[smc.pluginsx]\nno = 2\n")
    (first / "plain.egg-info").write_text("Name: plain\n")
    saved = list(sys.path)
    sys.path[:0] = [str(first), str(tmp_path / "missing"), str(second)]
    try:
        yield tmp_path
    finally:
        sys.path[:] = saved


def test_directory_scan_finds_what_importlib_metadata_finds(odd_path: Path) -> None:
    assert _scan_directories(tuple(f"[{g}]".encode() for g in GROUPS)) is not None
    found = find_entry_points(*GROUPS)
    assert {g: [_key(ep) for ep in eps] for g, eps in found.items()} == _expected()
    ours = [k[1:3] for k in map(_key, found["smc.plugins"]) if str(odd_path) in k[3]]
    assert ours == [("foo", "json:dumps")]
    assert all(isinstance(ep, ScannedEntryPoint) for ep in found["smc.adapters"])


def test_scanned_entry_points_load_and_name_their_distribution_as_importlib_metadata_does(
    odd_path: Path,
) -> None:
    found = find_entry_points(*GROUPS)
    reference = {_key(ep): ep for g in GROUPS for ep in metadata.entry_points(group=g)}
    for ep in found["smc.plugins"] + found["smc.adapters"]:
        same = reference[_key(ep)]
        assert _dist_of(ep) == _dist_of(same)  # type: ignore[arg-type]
        if ep.value in ("json:dumps", "os.path : join [extra]"):
            assert ep.load() is same.load()
    (same_dist,) = [ep for ep in found["smc.adapters"] if ep.value.startswith("os.path")]
    assert _dist_of(same_dist) == ("Same-Dist", "3.1.4")


def test_a_zip_on_sys_path_takes_importlib_metadata_walk(odd_path: Path) -> None:
    archive = odd_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zz-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zz\nVersion: 1.0\n")
        zf.writestr("zz-1.0.dist-info/entry_points.txt", "[smc.plugins]\nzz = zz_mod\n")
    sys.path.insert(0, str(archive))
    assert _scan_directories((b"[smc.plugins]",)) is None
    found = find_entry_points(*GROUPS)
    assert {g: [_key(ep) for ep in eps] for g, eps in found.items()} == _expected()
    assert ("smc.plugins", "zz", "zz_mod") in [_key(ep)[:3] for ep in found["smc.plugins"]]
