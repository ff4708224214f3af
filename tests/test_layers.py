"""The core's layers, from the code's own imports: every import points down, no circle, no façade inside.

``LAYERS`` is the one statement of the order, bottom first. A module may import from its own part and
from the parts below it; every import counts (top-level, inside functions, under ``TYPE_CHECKING``),
read with :mod:`ast` from the source, so nothing has to be imported to check it. Inside the package a
name is imported from the module that defines it, never through the public façade ``smc_core``
(``from smc_core import X``), except ``hookimpl`` and ``__version__``, which ``smc_core/__init__.py``
defines itself with nothing of smc imported. :mod:`smc_core.testing` is the kit a plugin author copies
from: it may use the façade as they do.
"""

from __future__ import annotations

import ast
import functools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import smc_core

PACKAGE = Path(smc_core.__file__).parent

LAYERS: tuple[str, ...] = (
    "errors",  # the error hierarchy and exit codes
    "base",  # the settings registry, messages, the logger, stop signals
    "job",  # TrainingEnv, the job directory's config, hyperparameters, SM_* exports, platforms
    "launch",  # supervised processes, signals, function mode
    "cluster",  # the cluster toolkit: the job's channel, failing-rank reports, bounded waits, networks
    "usercode",  # fetching, extracting and describing the user's code; installing what it needs
    "outputs",  # syncing output/intermediate and checkpoints with S3
    "hookspecs",  # the contract: its types come from the layers below
    "host",  # the runner, plugin loading, the job dir's checks, switches, the outcome files
    "defaults",  # the built-in plugins
    "mpi",  # the MPI launch: a default plugin that uses only the public API
    "local",  # smc local: a client of the runtime, apart from what runs in a container
    "cli",  # train and smc, which dispatches smc local
    "testing",  # the kit for plugin authors
)
"""The parts of ``smc_core`` (its subpackages and top modules), bottom first: a module imports only
from its own part and the parts below it."""

FACADE = "smc_core"
FACADE_NAMES = frozenset({"hookimpl", "__version__"})
"""What a module inside the package may import from the façade: defined there, importing nothing."""
FACADE_USERS = frozenset({"testing"})
"""Parts that may import public names through the façade, as plugin authors do."""


@dataclass(frozen=True)
class Import:
    """One import: the importing module's file and line, and the module of smc_core imported."""

    path: Path
    line: int
    source: str
    target: str
    names: tuple[str, ...]


@functools.cache
def parse(path: Path, mtime_ns: int) -> ast.Module:
    """``path``'s syntax tree (each file is read once per change, for all the tests)."""
    return ast.parse(path.read_text(), filename=str(path))


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> Iterator[Import]:
    """Every import of a module of the package ``root`` (a directory), in every module of it."""
    package = root.name
    modules = {module_name(root, p): p for p in root.rglob("*.py")}
    for source, path in sorted(modules.items()):
        tree = parse(path, path.stat().st_mtime_ns)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        yield Import(path, node.lineno, source, alias.name, ())
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                if base != package and not base.startswith(package + "."):
                    continue
                names = tuple(alias.name for alias in node.names)
                submodules = [f"{base}.{name}" for name in names if f"{base}.{name}" in modules]
                for target in submodules:  # from smc_core.job import paths: the module paths
                    yield Import(path, node.lineno, source, target, ())
                rest = tuple(name for name in names if f"{base}.{name}" not in modules)
                if rest:
                    yield Import(path, node.lineno, source, base, rest)


def part_of(module: str) -> str:
    """``smc_core.job.platforms.vertex``: ``job``; ``smc_core.errors``: ``errors``; the façade: ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def definitions(root: Path) -> dict[str, tuple[set[str], dict[str, str]]]:
    """Each module's top-level names: those it defines, and those it imports (name -> from where)."""
    found = {}
    for path in root.rglob("*.py"):
        defined: set[str] = set()
        imported: dict[str, str] = {}

        def scan(body: list[ast.stmt], defined: set[str], imported: dict[str, str]) -> None:
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    defined.add(node.name)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    defined.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
                elif isinstance(node, ast.ImportFrom):
                    imported.update({a.asname or a.name: node.module or "" for a in node.names})
                elif isinstance(node, (ast.If, ast.Try)):
                    for block in (node.body, node.orelse, *(h.body for h in getattr(node, "handlers", []))):
                        scan(block, defined, imported)

        scan(parse(path, path.stat().st_mtime_ns).body, defined, imported)
        found[module_name(root, path)] = (defined, imported)
    return found


def violations(root: Path) -> list[str]:
    """What breaks the layers in the package ``root``: each a line naming file, line, import and fix."""
    found = []
    known = definitions(root)
    for imp in imports(root):
        where = f"{imp.path.relative_to(root.parent)}:{imp.line}"
        source, target = part_of(imp.source), part_of(imp.target)
        if not source:
            continue  # the façade itself: it names every public name's module (imported on first use)
        if not target:
            leaked = sorted(set(imp.names) - FACADE_NAMES)
            if leaked and source not in FACADE_USERS:
                found.append(
                    f"{where}: from smc_core import {', '.join(leaked)}: inside the package, import a name "
                    "from the module that defines it (smc_core/__init__.py's _EXPORTS names it)"
                )
            continue
        unknown = [part for part in (source, target) if part not in LAYERS]
        for part in unknown:
            found.append(f"{where}: smc_core.{part} is in no layer: add it to LAYERS in tests/test_layers.py")
        if not unknown and LAYERS.index(target) > LAYERS.index(source):
            names = f" ({', '.join(imp.names)})" if imp.names else ""
            below = ", ".join(LAYERS[: LAYERS.index(source) + 1])
            found.append(
                f"{where}: {imp.source} imports {imp.target}{names}, which runs back up: {source} may "
                f"import only from {below}. Move the name down to the layer where it belongs."
            )
        defined, imported = known.get(imp.target, (set(), {}))
        for name in imp.names:
            if name not in defined and name in imported:
                found.append(
                    f"{where}: {name} is imported from {imp.target}, which imports it from "
                    f"{imported[name]}: import it from the module that defines it"
                )
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The circles of a directed graph, one per strongly connected component of two or more nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def graphs(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The package graph (part -> parts it imports) and the module graph, the façade left out."""
    parts: dict[str, set[str]] = {}
    modules: dict[str, set[str]] = {}
    for imp in imports(root):
        source, target = part_of(imp.source), part_of(imp.target)
        if not source or not target or imp.source == imp.target:
            continue
        modules.setdefault(imp.source, set()).add(imp.target)
        if source != target:
            parts.setdefault(source, set()).add(target)
    return parts, modules


def test_every_import_points_down_and_none_goes_through_the_facade() -> None:
    found = violations(PACKAGE)
    assert not found, "\n".join(found)


def test_the_package_graph_and_the_module_graph_have_no_circle() -> None:
    parts, modules = graphs(PACKAGE)
    assert not cycles(parts), f"circles among smc_core's parts: {cycles(parts)}"
    assert not cycles(modules), f"circles among smc_core's modules: {cycles(modules)}"


def test_every_public_name_comes_from_the_module_that_defines_it() -> None:
    known = definitions(PACKAGE)
    misplaced = {name: module for name, module in smc_core._EXPORTS.items() if name not in known[module][0]}
    assert misplaced == {}, "smc_core/__init__.py's _EXPORTS names a module that only imports these names"


def test_the_check_catches_a_back_import_a_circle_and_the_facade(tmp_path: Path) -> None:
    root = tmp_path / "smc_core"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    with (root / "base" / "log.py").open("a") as f:
        f.write("\n\ndef planted() -> None:\n    from smc_core.host.runner import main  # noqa\n")
    with (root / "job" / "paths.py").open("a") as f:
        f.write("\nfrom smc_core import TrainingEnv  # noqa\n")
    with (root / "host" / "summary.py").open("a") as f:
        f.write("\nfrom smc_core.job.environment import JobPaths  # noqa\n")
    (root / "newpart").mkdir()
    (root / "newpart" / "__init__.py").write_text("from smc_core.errors import ConfigError\n")
    found = violations(root)
    assert any(line.startswith("smc_core/base/log.py:") and "runs back up" in line for line in found), found
    assert any("from smc_core import TrainingEnv" in line for line in found), found
    assert any("smc_core.newpart is in no layer" in line for line in found), found
    assert any(
        "JobPaths is imported from smc_core.job.environment, which imports it from" in line for line in found
    )
    parts, modules = graphs(root)
    assert sorted({"base", "host"} & {p for c in cycles(parts) for p in c}) == ["base", "host"]
    assert any("smc_core.base.log" in c and "smc_core.host.runner" in c for c in cycles(modules))


def test_relative_and_module_imports_are_resolved(tmp_path: Path) -> None:
    root = tmp_path / "smc_core"
    for module in ("__init__", "hookspecs", "base/__init__", "base/log", "base/settings", "job/__init__"):
        (root / f"{module}.py").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{module}.py").write_text("")
    (root / "job" / "paths.py").write_text("JobPaths = None\n")
    (root / "job" / "planted.py").write_text(
        "from . import paths\n"
        "from .paths import JobPaths\n"
        "from ..base import settings\n"
        "import smc_core.base.log as log\n"
        "from smc_core import hookspecs, hookimpl\n"
    )
    found = sorted(
        (imp.line, imp.target, imp.names) for imp in imports(root) if imp.source == "smc_core.job.planted"
    )
    assert found == [
        (1, "smc_core.job.paths", ()),
        (2, "smc_core.job.paths", ("JobPaths",)),
        (3, "smc_core.base.settings", ()),
        (4, "smc_core.base.log", ()),
        (5, "smc_core", ("hookimpl",)),
        (5, "smc_core.hookspecs", ()),
    ]


def test_every_folder_of_the_package_is_a_package_a_wheel_ships() -> None:
    # setuptools' find_packages takes only folders with an __init__.py: another would work here, in the
    # checkout, and be missing from the wheel.
    folders = {path.parent for path in PACKAGE.rglob("*.py")}
    missing = sorted(str(f.relative_to(PACKAGE.parent)) for f in folders if not (f / "__init__.py").exists())
    assert missing == [], f"folders without __init__.py: {missing}"
