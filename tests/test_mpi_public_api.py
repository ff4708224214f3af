"""The MPI launch (``smc_core/mpi/``) is built on smc's public API alone, as any plugin would be: every
name it takes from the rest of ``smc_core`` is one ``smc_core.__all__`` exports, imported from the module
that defines it (a plugin outside the package would import the same name through ``smc_core``). Imports
are read with ``ast``, so a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import smc_core

PACKAGE = Path(smc_core.__file__).parent / "mpi"
OWN = "smc_core.mpi"


def reaches_past_the_api(path: Path) -> list[str]:
    """Each import of ``path`` that takes a name the public API does not export (or takes it from
    elsewhere than its defining module), as ``line N: what``."""
    wrong = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("smc_core") and not alias.name.startswith(OWN):
                    wrong.append(f"line {node.lineno}: import {alias.name}")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("smc_core")
        ):
            module = str(node.module)
            if module == OWN or module.startswith(OWN + "."):
                continue
            for alias in node.names:
                if module == "smc_core":
                    if alias.name not in smc_core.__all__:
                        wrong.append(f"line {node.lineno}: smc_core.{alias.name} is not public")
                elif smc_core._EXPORTS.get(alias.name) != module:
                    wrong.append(f"line {node.lineno}: {module}.{alias.name} is not a public name")
        elif isinstance(node, ast.ImportFrom) and node.level:
            wrong.append(f"line {node.lineno}: a relative import (import from smc_core.mpi by name)")
    return wrong


def test_the_mpi_launch_uses_only_the_public_api() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert {f.name for f in files} >= {"plugin.py", "launch.py", "rank.py", "sshd.py"}
    found = {str(f.relative_to(PACKAGE.parent)): reaches_past_the_api(f) for f in files}
    assert all(not wrong for wrong in found.values()), (
        f"smc_core/mpi reaches past the public API: {found}. Use a name smc_core exports (from the "
        "module that defines it), or make the name public in smc_core/__init__.py (_EXPORTS) if a plugin "
        "needs it too."
    )


def test_the_check_catches_an_internal_name(tmp_path: Path) -> None:
    sample = tmp_path / "plugin.py"
    sample.write_text(
        "from smc_core import hookimpl, logger\n"
        "from smc_core.cluster.channel import ChannelMaster\n"
        "from smc_core.launch.process import SupervisedProcess, _children\n"
        "from smc_core.host.runner import run_training\n"
        "from smc_core.mpi.sshd import JobKeys\n"
        "def f():\n    import smc_core.launch.leftovers\n"
    )
    assert reaches_past_the_api(sample) == [
        "line 3: smc_core.launch.process._children is not a public name",
        "line 4: smc_core.host.runner.run_training is not a public name",
        "line 7: import smc_core.launch.leftovers",
    ]
