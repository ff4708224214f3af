"""The command line that runs the user's entry point (:func:`entry_command`), by its kind.

Entry kinds (:class:`~smc_core.usercode.describe.EntryKind`): a Python script runs as ``python FILE args``; a
package's module as ``python -m MODULE args``; a shell script as ``./FILE args`` (``$0`` is ``./train.sh``,
as in the reference toolkit) through the interpreter its ``#!`` line names, else ``/bin/sh``; anything
else as an executable (in the code dir, else on ``PATH``).
Never through a shell: each argument reaches the program exactly. The default ``invoke_train``
(:mod:`smc_core.defaults.invoke`) and the adapters' launchers run what :func:`entry_command` gives.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from smc_core.base.messages import did_you_mean
from smc_core.errors import ConfigError
from smc_core.job.environment import TrainingEnv
from smc_core.launch.process import python_executable
from smc_core.usercode.describe import EntryKind, UserCode

_NO_ENTRY = (
    "No entry point: the job names none. Set the hyperparameter sagemaker_program "
    '(e.g. "train.py") or the environment variable SAGEMAKER_PROGRAM.'
)


def shebang_command(path: Path) -> list[str] | None:
    """The interpreter command from ``path``'s ``#!`` line (``["/usr/bin/env", "bash"]``), or None.

    As the kernel does, everything after the interpreter is one argument.
    """
    try:
        with open(path, "rb") as file:
            first = file.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    line = first[2:].decode("utf-8", "replace").strip()
    if not line:
        return None
    interpreter, _, argument = line.partition(" ")
    return [interpreter, argument.strip()] if argument.strip() else [interpreter]


def no_entry_error(training_env: TrainingEnv | None = None) -> ConfigError:
    """The error for a job that names no entry point, naming a missing config file or directory."""
    if training_env is not None:
        paths = training_env.paths
        for missing in (paths.input_config_dir, paths.hyperparameters_file):
            if not missing.exists():
                return ConfigError(
                    f"No entry point: {missing} does not exist, so the job names none. Check the job "
                    f"directory ({paths.base_dir}, SAGEMAKER_BASE_DIR); the platform writes "
                    "input/config/hyperparameters.json with sagemaker_program, or set SAGEMAKER_PROGRAM."
                )
    return ConfigError(_NO_ENTRY)


def _check_inside(code_dir: Path, entry: str) -> None:
    """Refuse an entry point that is not a path inside the code dir (through a symbolic link
    either), or whose name begins with ``-`` (the interpreter would take it as an option)."""
    if entry.startswith("-"):
        raise ConfigError(
            f"The entry point {entry!r} (sagemaker_program) begins with '-', so python (or the shell) "
            "would read it as an option, not a file: rename the script (e.g. train.py)."
        )
    if Path(entry).is_absolute() or ".." in Path(entry).parts:
        raise ConfigError(
            f"The entry point {entry!r} (sagemaker_program) is outside the code dir {code_dir}: it must "
            "name a file inside it, relative to it (e.g. train.py or scripts/train.py)."
        )
    path = code_dir / entry
    real, root = os.path.realpath(path), os.path.realpath(code_dir)
    if path.exists() and real != root and not real.startswith(root + os.sep):
        raise ConfigError(
            f"The entry point {entry!r} (sagemaker_program) is a symbolic link to {real}, outside the code "
            f"dir {code_dir}: it must be a file inside it. Put the script itself in the code."
        )
    if (code_dir / entry).is_dir():
        raise ConfigError(
            f"The entry point {entry!r} (sagemaker_program) is a directory in the code dir {code_dir}, not "
            f"a file: name the script inside it (e.g. {entry}/train.py), or a module with SMC_FUNCTION_MODE."
        )


def _missing_entry(code_dir: Path, entry: str) -> ConfigError:
    try:
        names = sorted(n for n in os.listdir(code_dir) if not n.startswith(".smc-staging-"))
    except OSError:
        names = []
    hint = did_you_mean(entry, names)
    shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "nothing"
    return ConfigError(
        f"The entry point {entry!r} (sagemaker_program) is not in the code dir {code_dir}, which holds: "
        f"{shown}.{hint} Check sagemaker_program and the code archive (sagemaker_submit_directory)."
    )


def entry_command(
    user_code: UserCode, args: list[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """The command line that runs ``user_code``'s entry point with ``args`` (see the module docstring)."""
    entry = user_code.entry_point
    if not entry:
        raise ConfigError(_NO_ENTRY)
    code_dir = user_code.code_dir
    if user_code.kind is not EntryKind.MODULE:
        _check_inside(code_dir, entry)
    path = code_dir / entry
    if user_code.kind is EntryKind.MODULE:
        module = user_code.module_name or entry
        if module.startswith("-"):
            _check_inside(code_dir, module)
        return [python_executable(), "-m", module, *args]
    if user_code.kind is EntryKind.PYTHON:
        if not path.is_file():
            raise _missing_entry(code_dir, entry)
        return [python_executable(), entry, *args]
    if user_code.kind is EntryKind.SHELL:
        if not path.is_file():
            raise _missing_entry(code_dir, entry)
        script = entry if os.path.isabs(entry) else f"./{entry}"
        return [*(shebang_command(path) or ["/bin/sh"]), script, *args]
    if path.is_file():
        if os.access(path, os.X_OK):
            return [str(path), *args]
        interpreter = shebang_command(path)
        if interpreter:
            return [*interpreter, str(path), *args]
        raise ConfigError(
            f"The entry point {path} is not executable and has no #! line. Make it executable "
            "(chmod +x before packing the code), or name it .py or .sh."
        )
    found = shutil.which(entry, path=(environ or os.environ).get("PATH"))
    if found:
        return [found, *args]
    raise _missing_entry(code_dir, entry)
