"""Finding entry points among the hundreds of distributions a framework image carries, without delay.

:func:`find_entry_points` returns, for each group asked, the entry points that
``importlib.metadata.entry_points(group=...)`` returns (the first distribution of a normalised name on
``sys.path`` wins), sorted by name. It gets there faster:

* one pass for all groups, listing each ``sys.path`` directory once, instead of a ``Distribution`` object per
  installed distribution and a pass per group;
* each ``entry_points.txt`` read as bytes, and parsed only when it has one of the ``[group]`` headers;
* importlib.metadata (whose import pulls in ``email``: ~20 ms) not imported at all: the entry points found
  are :class:`ScannedEntryPoint` records, parsed by importlib.metadata's rules, with ``load()`` and ``dist``
  (name, version) as smc uses them.

Where the layout is unusual (a zip file or ``.egg`` on ``sys.path``, another metadata finder on
``sys.meta_path``, a metadata directory name that does not give the distribution's name), it takes
importlib.metadata's own walk and returns its ``EntryPoint`` objects.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import machinery
from typing import Any, Protocol

from smc_core.errors import PluginError

__all__ = ["EntryPointLike", "ScannedDistribution", "ScannedEntryPoint", "find_entry_points"]


class EntryPointLike(Protocol):
    """What smc uses of an entry point: ``importlib.metadata.EntryPoint`` and :class:`ScannedEntryPoint`."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def group(self) -> str: ...

    def load(self) -> Any: ...


_INFO_SUFFIXES = (".dist-info", ".egg-info")
_UNREADABLE = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
# importlib.metadata's EntryPoint.pattern and its name normalisation (Prepared.normalize).
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")
_SEPARATORS = re.compile(r"[-_.]+")


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except _UNREADABLE:
        return None


class _Headers:
    """Message headers by name, any case; a missing one is None, as in ``email.message.Message``."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self._values = values or {}

    def __getitem__(self, name: str) -> str | None:
        return self._values.get(name.lower())


def _parse_headers(text: str) -> _Headers:
    # The header block of METADATA / PKG-INFO as email.message_from_string reads it (compat32): a name's
    # first occurrence wins, continuation lines are kept, the block ends at the first line of another kind.
    values: dict[str, str] = {}
    current: str | None = None  # the header being read, if it is the first of its name
    for line in text.splitlines():
        if line[:1] in (" ", "\t"):
            if current is not None:
                values[current] += "\n" + line
            continue
        field, colon, value = line.partition(":")
        if not colon or not field or " " in field or "\t" in field:
            break
        current = field.lower()
        if current in values:
            current = None
            continue
        values[current] = value.lstrip(" \t").rstrip("\r\n")
    return _Headers(values)


@dataclass(frozen=True)
class ScannedDistribution:
    """An installed distribution found by the directory scan: its metadata directory (or egg-info file)."""

    path: str

    @property
    def metadata(self) -> _Headers:
        """The headers of its ``METADATA`` (or ``PKG-INFO``), e.g. ``metadata["Name"]``."""
        for candidate in ("METADATA", "PKG-INFO", ""):
            raw = _read(os.path.join(self.path, candidate) if candidate else self.path)
            if raw:
                return _parse_headers(raw.decode("utf-8"))
        return _Headers()

    @property
    def version(self) -> str | None:
        """Its version, from its metadata."""
        return self.metadata["Version"]


@dataclass(frozen=True)
class ScannedEntryPoint:
    """An entry point found by the directory scan, as ``importlib.metadata.EntryPoint`` would describe it."""

    name: str
    value: str
    group: str
    dist: ScannedDistribution

    def load(self) -> Any:
        """Import the module and return the object the value names (``module:attr.attr``)."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(
                f"entry point {self.name} = {self.value!r}: the value is not 'module' or 'module:attr'"
            )
        module = importlib.import_module(match.group("module"))
        attrs = filter(None, (match.group("attr") or "").split("."))
        return functools.reduce(getattr, attrs, module)


def _parse_entry_points(text: str, dist: ScannedDistribution) -> list[ScannedEntryPoint]:
    # importlib.metadata's rules (Sectioned.section_pairs, Pair.parse): stripped lines, '#' comments,
    # "[group]" headers, "name = value" pairs (a line without "=" is an error, as there).
    found = []
    group = None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line.strip("[]")
            continue
        if group is None:
            continue
        if "=" not in line:
            raise PluginError(
                f"{os.path.join(dist.path, 'entry_points.txt')}: the line {line!r} under [{group}] is not "
                "'name = value'. Reinstall that distribution, or fix its entry points and rebuild it."
            )
        name, value = line.split("=", 1)
        found.append(ScannedEntryPoint(name.strip(), value.strip(), group, dist))
    return found


def _has_header(raw: bytes | str | None, headers: tuple[bytes, ...]) -> bool:
    if not raw:
        return False
    data = raw.encode() if isinstance(raw, str) else raw
    return any(header in data for header in headers)


def _scan_directories(headers: tuple[bytes, ...]) -> list[ScannedEntryPoint] | None:
    """The entry points of the distributions whose ``entry_points.txt`` has one of ``headers``; or None.

    Takes the ``*.dist-info`` / ``*.egg-info`` entries of each ``sys.path`` directory in importlib.metadata's
    order, with its de-duplication (by the name before the first ``-``, normalised). None where the layout
    needs importlib.metadata itself.
    """
    if any(getattr(f, "find_distributions", None) for f in sys.meta_path if f is not machinery.PathFinder):
        return None
    seen: set[str] = set()
    found: list[ScannedEntryPoint] = []
    for root in sys.path:
        if not isinstance(root, str) or root.lower().endswith(".egg"):
            return None
        try:
            children = os.listdir(root or ".")
        except FileNotFoundError:
            continue
        except OSError:
            return None  # a file (zip) or an unreadable directory: importlib.metadata knows what to do
        for child in children:
            if not child.lower().endswith(_INFO_SUFFIXES):
                continue
            stem, _, suffix = child.rpartition(".")
            name = stem.partition("-")[0]
            if "." + suffix not in _INFO_SUFFIXES or not name:
                return None  # importlib.metadata would read METADATA for this one's name
            key = _SEPARATORS.sub("-", name).lower().replace("-", "_")
            if key in seen:
                continue
            seen.add(key)
            path = os.path.join(root, child)
            raw = _read(os.path.join(path, "entry_points.txt"))
            if _has_header(raw, headers):
                found += _parse_entry_points(raw.decode("utf-8"), ScannedDistribution(path))  # type: ignore[union-attr]
    return found


def _walk_importlib_metadata(headers: tuple[bytes, ...]) -> list[EntryPointLike]:
    from importlib import metadata  # its import pulls in email (~20 ms): only on this fallback

    seen: set[str] = set()
    found: list[EntryPointLike] = []
    for dist in metadata.distributions():
        # importlib.metadata itself tells distributions apart by this name (its _unique()).
        key = getattr(dist, "_normalized_name", None) or (dist.metadata["Name"] or "").lower()
        if key in seen:
            continue
        seen.add(key)
        if _has_header(dist.read_text("entry_points.txt"), headers):
            found += dist.entry_points
    return found


def find_entry_points(*groups: str) -> dict[str, list[EntryPointLike]]:
    """``{group: entry points}`` for each of ``groups``, each list sorted by entry-point name.

    The same entry points as ``importlib.metadata.entry_points(group=group)``, from one scan.
    """
    headers = tuple(f"[{group}]".encode() for group in groups)
    scanned: Iterable[EntryPointLike] | None = _scan_directories(headers)
    if scanned is None:
        scanned = _walk_importlib_metadata(headers)
    found: dict[str, list[EntryPointLike]] = {group: [] for group in groups}
    for ep in scanned:
        if ep.group in found:
            found[ep.group].append(ep)
    return {group: sorted(eps, key=lambda ep: ep.name) for group, eps in found.items()}
