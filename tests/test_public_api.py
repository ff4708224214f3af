"""Adapters, plugins and examples use only smc's public API: ``smc_core`` (and ``smc_core.testing`` in
tests). Imports are read with ``ast``, so a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import smc_core

ROOT = Path(__file__).resolve().parents[1]


def sources() -> list[Path]:
    """Every Python file of the adapters (their packages and tests) and of the examples."""
    files = [*ROOT.glob("plugins/*/**/*.py"), *ROOT.glob("examples/**/*.py")]
    return sorted(f for f in files if "build" not in f.relative_to(ROOT).parts)


def is_test(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return "tests" in parts or path.name.startswith("test_") or path.name == "conftest.py"


def smc_imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) for every import of an ``smc_core`` module in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "smc_core":
                    yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_smc(node.module):
            yield node.lineno, str(node.module), [alias.name for alias in node.names]


def _is_smc(module: str | None) -> bool:
    return bool(module) and str(module).split(".")[0] == "smc_core"


def allowed(module: str, test: bool) -> bool:
    if module == "smc_core":
        return True
    return test and (module == "smc_core.testing" or module.startswith("smc_core.testing."))


def test_the_check_sees_the_adapters_and_the_examples() -> None:
    files = {str(f.relative_to(ROOT)) for f in sources()}
    assert "plugins/pytorch/smc_pytorch/plugin.py" in files
    assert "examples/smc-code-from-dir/smc_code_from_dir.py" in files
    assert any(f.startswith("plugins/pytorch/tests/") for f in files)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_the_public_api(path: Path) -> None:
    test = is_test(path)
    wrong = []
    for line, module, names in smc_imports(path):
        if not allowed(module, test):
            wrong.append(f"line {line}: {module} is internal")
        elif module == "smc_core":
            wrong += [f"line {line}: smc_core.{n} is not public" for n in names if n not in smc_core.__all__]
    assert not wrong, (
        f"{path.relative_to(ROOT)} reaches past the public API ({'; '.join(wrong)}): import from smc_core "
        "(tests also from smc_core.testing), or make the name public in smc_core/__init__.py (_EXPORTS)."
    )


def test_the_check_catches_an_internal_import(tmp_path: Path) -> None:
    sample = tmp_path / "plugin.py"
    sample.write_text(
        "from smc_core import hookimpl\n"
        "def f():\n    from smc_core.launch.process import run_process\n    import smc_core.errors\n"
    )
    found = [(line, module) for line, module, _ in smc_imports(sample)]
    assert found == [(1, "smc_core"), (3, "smc_core.launch.process"), (4, "smc_core.errors")]
    assert not allowed("smc_core.launch.process", test=False)
    assert not allowed("smc_core.testing", test=False) and allowed("smc_core.testing.netns", test=True)


def test_every_public_name_resolves() -> None:
    for name in smc_core.__all__:
        assert getattr(smc_core, name) is not None, name
