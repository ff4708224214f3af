"""Helpers for the conformance suite: run real user scripts through ``train`` and read what they saw.

A probe script (the user's ``train.py``) records its argv, working directory and environment into
the file named by ``$PROBE_OUT``; the tests compare that record with the container contract.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

PROBE = """\
import json, os, sys
record = {"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), "sys_path": sys.path}
with open(os.environ["PROBE_OUT"], "w") as f:
    json.dump(record, f)
"""

# Variables a developer's shell may hold that would change what the job sees.
CLEAN = (
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
    "TF_CONFIG",
    "TRAINING_JOB_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def console_script(name: str) -> str:
    """The path of one of this environment's console scripts (``train``, ``smc``)."""
    return str(Path(sys.executable).parent / name)


def installed_adapters() -> list[str]:
    """Names of the installed framework adapters (``smc.adapters`` entry points)."""
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group="smc.adapters")})


def clean_environ(extra: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without SM_*/SMC_*/SAGEMAKER_* and :data:`CLEAN`, plus ``extra``.

    Installed adapters are disabled: the suite checks what the core alone gives a script (an adapter
    may add variables, or wait for peer hosts that do not exist here).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SM_", "SMC_", "SAGEMAKER_")) and k not in CLEAN and k not in drop
    }
    env["SMC_DISABLE_PLUGINS"] = ",".join(installed_adapters())
    if "PYTHONPATH" not in (extra or {}):  # a test that sets PYTHONPATH itself checks it exactly
        # environment_only.py claims the distribution switches: these jobs check the environment,
        # not the launch
        env["SMC_PLUGINS"] = "environment_only"
        env["PYTHONPATH"] = str(Path(__file__).parent)
    env.update(extra or {})
    return env


class Run:
    """One ``train`` run: its exit code, output, the probe record and the failure file."""

    def __init__(self, base: Path, completed: subprocess.CompletedProcess[str], probe_out: Path) -> None:
        self.base = base
        self.code = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.record: dict[str, Any] | None = json.loads(probe_out.read_text()) if probe_out.exists() else None
        failure = base / "output" / "failure"
        self.failure = failure.read_text() if failure.exists() else None

    @property
    def env(self) -> dict[str, str]:
        assert self.record is not None, f"the script did not run:\n{self.stderr}"
        return self.record["env"]

    @property
    def argv(self) -> list[str]:
        assert self.record is not None, f"the script did not run:\n{self.stderr}"
        return self.record["argv"]

    def sm(self) -> dict[str, str]:
        """Every SM_* variable the script saw."""
        return {k: v for k, v in self.env.items() if k.startswith("SM_")}


@pytest.fixture
def run_train(tmp_path: Path) -> Callable[..., Run]:
    """``run_train(base, env={...})``: run ``train`` on the job directory ``base`` as the platform would."""

    def run(base: Path, env: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> Run:
        probe_out = tmp_path / f"probe-{base.name}.json"
        full_env = clean_environ(
            {"SAGEMAKER_BASE_DIR": str(base), "PROBE_OUT": str(probe_out), **(env or {})}, drop
        )
        completed = subprocess.run(
            [console_script("train")], env=full_env, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        return Run(base, completed, probe_out)

    return run
