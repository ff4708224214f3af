"""The guide "Overriding one hook" runs as written: its files are written, its commands run, its outputs seen.

A new user copies the guide's files (literal includes and captioned code blocks) into a folder and
runs its ``console`` commands there one by one; each command must succeed and print the lines the
guide shows under it. Installs go into a folder of their own (``PIP_TARGET``), so this environment
is left as it was.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDE = DOCS / "override-a-hook.md"

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def guide_steps(text: str) -> list[tuple[str, object]]:
    """The guide's blocks in order: ("file", (path, text)) or ("command", (command, expected lines))."""
    steps: list[tuple[str, object]] = []
    for match in FENCE.finditer(text):
        info, body = match["info"].strip(), match["body"]
        options = dict(re.findall(r"^:(\w[\w-]*):[ \t]*(.*)$", body, re.MULTILINE))
        content = re.sub(r"\A(?::\w[\w-]*:[^\n]*\n)+\n?", "", body)
        if info.startswith("{literalinclude}") and "caption" in options:
            source = (GUIDE.parent / info.split(None, 1)[1]).resolve()
            steps.append(("file", (options["caption"], source.read_text())))
        elif info.startswith("{code-block}") and "caption" in options:
            steps.append(("file", (options["caption"], content)))
        elif info == "console":
            for chunk in re.split(r"^\$ ", content, flags=re.MULTILINE)[1:]:
                command, *expected = chunk.rstrip("\n").split("\n")
                steps.append(("command", (command, [line for line in expected if line.strip()])))
    return steps


def test_the_guide_has_files_and_commands():
    kinds = [kind for kind, _ in guide_steps(GUIDE.read_text())]
    assert kinds.count("file") >= 3 and kinds.count("command") >= 5


def test_following_the_override_guide(tmp_path):
    work, site = tmp_path / "work", tmp_path / "site"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_", "PIP_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(site),
        PIP_TARGET=str(site),
        PIP_NO_DEPS="1",
        PIP_NO_INDEX="1",
        PIP_NO_BUILD_ISOLATION="0",  # pip reads this inverted: "0" turns build isolation off
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # This environment may hold several adapters; a user's would hold one (or pin it).
        SMC_ADAPTER="pytorch",
        PYTEST_ADDOPTS="-p no:cacheprovider -o smc_adapter=pytorch",
    )
    ran = []
    for kind, step in guide_steps(GUIDE.read_text()):
        if kind == "file":
            path, text = step  # type: ignore[misc]
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
            continue
        command, expected = step  # type: ignore[misc]
        proc = subprocess.run(
            ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=280
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"`{command}` failed ({proc.returncode}):\n{output[-4000:]}"
        for line in expected:
            assert line in output, f"`{command}` did not print {line!r}:\n{output[-4000:]}"
        ran.append(command)
    assert any(c.startswith("pip install") for c in ran)
    assert (site / "smc_code_from_dir.py").exists()
    assert (work / "job" / "output" / "success").exists()
    assert (work / "job" / "code" / "train.py").read_text() == (work / "mounted" / "train.py").read_text()
