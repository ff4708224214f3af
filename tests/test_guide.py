"""The guides run as written, as a framework team meets them: smc from its wheels, a fresh venv, no checkout.

smc-core and smc-pytorch are built into wheels once per session (from a copy of this checkout) and
installed into one fresh virtualenv outside the repository, with the docs' requirements. In a folder
outside the repository, each guide's files (literal includes and captioned code blocks) are written
and its ``console`` commands run one by one; each must succeed and print the lines the guide shows
under it. ``smc plugins`` must print exactly what the guide shows. The docs build with ``-W`` there too.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .helpers import outside_env

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OVERRIDE_GUIDE = DOCS / "override-a-hook.md"
ADAPTER_GUIDE = DOCS / "writing-an-adapter.md"

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
EXACT_OUTPUT = ("smc plugins",)
"""Commands whose whole output the guide shows: it must be the real output, line for line."""


def guide_steps(guide: Path) -> list[tuple[str, object]]:
    """The guide's blocks in order: ("file", (path, text)) or ("command", (command, expected lines))."""
    steps: list[tuple[str, object]] = []
    for match in FENCE.finditer(guide.read_text()):
        info, body = match["info"].strip(), match["body"]
        options = dict(re.findall(r"^:(\w[\w-]*):[ \t]*(.*)$", body, re.MULTILINE))
        content = re.sub(r"\A(?::\w[\w-]*:[^\n]*\n)+\n?", "", body)
        if info.startswith("{literalinclude}") and "caption" in options:
            source = (guide.parent / info.split(None, 1)[1]).resolve()
            steps.append(("file", (options["caption"], source.read_text())))
        elif info.startswith("{code-block}") and "caption" in options:
            steps.append(("file", (options["caption"], content)))
        elif info == "console":
            for chunk in re.split(r"^\$ ", content, flags=re.MULTILINE)[1:]:
                command, *expected = chunk.rstrip("\n").split("\n")
                steps.append(("command", (command, [line for line in expected if line.strip()])))
    return steps


def test_the_guides_have_files_and_commands():
    kinds = [kind for kind, _ in guide_steps(OVERRIDE_GUIDE)]
    assert kinds.count("file") >= 3 and kinds.count("command") >= 5
    commands = [step[0] for kind, step in guide_steps(ADAPTER_GUIDE) if kind == "command"]  # type: ignore[index]
    assert any(c.startswith("smc new-adapter") for c in commands)


def follow(guide: Path, work: Path, env: dict[str, str]) -> list[str]:
    """Write the guide's files under ``work`` and run its commands there; the commands run."""
    ran = []
    for kind, step in guide_steps(guide):
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
        if command in EXACT_OUTPUT:
            assert proc.stdout.rstrip("\n").split("\n") == expected, (
                f"`{command}` prints, where {guide.name} shows something else:\n{proc.stdout}"
            )
        for line in expected:
            if os.geteuid() != 0:  # without root the multi-host test skips, saying why
                line = re.sub(r"^(\d+) passed$", lambda m: f"{int(m[1]) - 1} passed, 1 skipped", line)
            assert line in output, f"`{command}` did not print {line!r}:\n{output[-4000:]}"
        ran.append(command)
    return ran


def test_following_the_override_guide(fresh_venv, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    ran = follow(OVERRIDE_GUIDE, work, outside_env(fresh_venv))
    assert any(c.startswith("pip install") for c in ran)
    assert (work / "job" / "output" / "success").exists()
    assert (work / "job" / "code" / "train.py").read_text() == (work / "mounted" / "train.py").read_text()
    assert (work / "job" / "model").is_dir()  # made by smc: the guide's job dir has none


def test_following_the_adapter_guide_new_adapter_from_the_wheel(fresh_venv, tmp_path):
    # `smc new-adapter` from smc-core's wheel: the template ships in it; the package installs and its
    # tests (real jobs through the kit, one on two network-namespace hosts) pass as generated.
    work = tmp_path / "work"
    work.mkdir()
    ran = follow(ADAPTER_GUIDE, work, outside_env(fresh_venv))
    assert any(c.startswith("smc new-adapter") for c in ran)
    assert (work / "smc-myfw" / "smc_myfw" / "plugin.py").exists()


def test_the_docs_build_outside_the_repository(built_docs):
    # built_docs (tests/conftest.py): sphinx-build -W from the fresh venv, in a folder outside the
    # repository, smc-pytorch installed beside as a user's would be; test_docs.py checks its pages.
    assert "SMC_PYTORCH_PROCESSES_PER_HOST" in (built_docs / "settings.html").read_text()


def test_the_lightgbm_adapter_written_from_the_guide_passes_its_tests(fresh_venv, tmp_path):
    # examples/smc-lightgbm: the second adapter written from smc-core's wheel by following the adapter
    # guide alone. It goes into a folder of its own on PYTHONPATH, with LightGBM, so that the venv the
    # guides use keeps no adapter; its tests run real LightGBM jobs (two ranks on one host, two hosts).
    import sys

    site = tmp_path / "site"
    uv = Path(sys.executable).with_name("uv")
    example = ROOT / "examples" / "smc-lightgbm"
    install = [
        str(uv),
        "pip",
        "install",
        "-q",
        "--python",
        str(fresh_venv / "bin" / "python"),
        "--target",
        str(site),
    ]
    subprocess.run([*install, "lightgbm", "numpy"], check=True, timeout=280)
    subprocess.run([*install, "--no-deps", str(example)], check=True, timeout=280)  # smc-core: the venv's
    env = outside_env(fresh_venv)
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [str(fresh_venv / "bin" / "python"), "-m", "pytest", "-q", str(example / "tests")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    expected = "6 passed" if os.geteuid() == 0 else "5 passed, 1 skipped"
    assert proc.returncode == 0 and expected in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
