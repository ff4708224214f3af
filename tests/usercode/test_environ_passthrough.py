"""The default hooks read their settings from the environ given to the runner, not from ``os.environ``.

Each test runs a whole job in-process with ``run_training(pm, base=..., environ={...})``, puts the
setting only in that environ, and puts the opposite setting in ``os.environ`` to show it is ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smc_core.errors import ConfigError
from smc_core.host.plugins import get_plugin_manager
from smc_core.host.runner import run_training
from smc_core.job.environment import module_name
from smc_core.usercode.describe import EntryKind, import_name

ENTRY = "passthrough_train.py"
MODULE = "passthrough_train"

# In function mode train() returns where it ran; run as a script it writes a marker file instead.
TRAIN = (
    "import os\n"
    "WHO = {who!r}\n"
    "def train(epochs):\n"
    "    return {{'who': WHO, 'epochs': epochs, 'pid': os.getpid()}}\n"
    "if __name__ == '__main__':\n"
    "    open('ran-as-script', 'w').write(WHO)\n"
)


@pytest.fixture(autouse=True)
def _forget_the_module() -> Iterator[None]:
    yield
    sys.modules.pop(MODULE, None)


def _environ(base: Path, **settings: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "SAGEMAKER_BASE_DIR": str(base), **settings}


def _run(base: Path, environ: dict[str, str]):  # type: ignore[no-untyped-def]
    pm = get_plugin_manager(environ={}, load_entrypoints=False)
    return run_training(pm, base=base, environ=environ)


def test_function_mode_from_the_given_environ(
    job_dir: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = job_dir(entry_point=ENTRY, hyperparameters={"epochs": 3}, code={ENTRY: TRAIN.format(who="code")})
    monkeypatch.delenv("SMC_FUNCTION_MODE", raising=False)
    result = _run(base, _environ(base, SMC_FUNCTION_MODE="1"))
    assert result.exit_code == 0, result.failure
    assert result.model is not None and result.model["who"] == "code" and result.model["epochs"] == 3
    assert not (base / "code" / "ran-as-script").exists()


def test_function_mode_in_os_environ_only_is_ignored(
    job_dir: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = job_dir(entry_point=ENTRY, hyperparameters={"epochs": 3}, code={ENTRY: TRAIN.format(who="code")})
    monkeypatch.setenv("SMC_FUNCTION_MODE", "1")
    result = _run(base, _environ(base))
    assert result.exit_code == 0, result.failure
    assert result.model is None  # run as a script, in its own process
    assert (base / "code" / "ran-as-script").read_text() == "code"


def _job_with_code_in_the_way(job_dir: Callable[..., Path], tmp_path: Path) -> Path:
    """A job whose code dir already holds other code than its (local) sagemaker_submit_directory."""
    source = tmp_path / "source"
    source.mkdir()
    (source / ENTRY).write_text(TRAIN.format(who="source"))
    return job_dir(
        entry_point=ENTRY,
        hyperparameters={"epochs": 1, "sagemaker_submit_directory": str(source)},
        code={ENTRY: TRAIN.format(who="already there")},
    )


def test_existing_code_policy_from_the_given_environ(
    job_dir: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = _job_with_code_in_the_way(job_dir, tmp_path)
    monkeypatch.setenv("SMC_EXISTING_CODE", "error")  # would stop the job if it were read
    result = _run(base, _environ(base, SMC_EXISTING_CODE="keep", SMC_FUNCTION_MODE="1"))
    assert result.exit_code == 0, result.failure
    assert result.model is not None and result.model["who"] == "already there"


def test_existing_code_policy_error_from_the_given_environ(
    job_dir: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smc_core.errors import FetchError

    base = _job_with_code_in_the_way(job_dir, tmp_path)
    monkeypatch.setenv("SMC_EXISTING_CODE", "keep")
    with pytest.raises(FetchError, match="already holds code not fetched from it"):
        _run(base, _environ(base, SMC_EXISTING_CODE="error", SMC_FUNCTION_MODE="1"))


def test_installer_setting_from_the_given_environ(
    job_dir: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bad setting stops the job before any installer runs: nothing is installed into this venv.
    base = job_dir(entry_point=ENTRY, code={ENTRY: TRAIN.format(who="code"), "requirements.txt": "x\n"})
    monkeypatch.delenv("SMC_INSTALLER", raising=False)
    with pytest.raises(ConfigError, match="SMC_INSTALLER is 'bogus'"):
        _run(base, _environ(base, SMC_INSTALLER="bogus"))


def test_codeartifact_arn_from_the_given_environ(
    job_dir: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = job_dir(entry_point=ENTRY, code={ENTRY: TRAIN.format(who="code"), "requirements.txt": "x\n"})
    monkeypatch.delenv("CA_REPOSITORY_ARN", raising=False)
    with pytest.raises(ConfigError, match="CA_REPOSITORY_ARN is 'not-an-arn'"):
        _run(base, _environ(base, SMC_INSTALLER="pip", CA_REPOSITORY_ARN="not-an-arn"))


@pytest.mark.parametrize(
    ("entry", "sm_module_name", "importable"),
    [
        ("train.py", "train", "train"),
        ("pkg/train.py", "pkg/train", "pkg.train"),
        ("run.sh", "run.sh", "run.sh"),
        ("train", "train", "train"),
        (None, None, None),
    ],
)
def test_module_name_rules(entry: str | None, sm_module_name: str | None, importable: str | None) -> None:
    assert module_name(entry) == sm_module_name
    assert import_name(entry) == importable


def test_the_module_names_agree(job_dir: Callable[..., Path]) -> None:
    from smc_core.job.environment import create_environment
    from smc_core.job.exports import env_vars
    from smc_core.usercode.describe import describe_user_code

    base = job_dir(entry_point="pkg/train.py", code={"pkg/__init__.py": "", "pkg/train.py": ""})
    env = create_environment(base, environ={"PATH": "/usr/bin:/bin"})
    user_code = describe_user_code(env)
    assert user_code.kind is EntryKind.PYTHON
    assert env.module_name == env_vars(env, user_code)["SM_MODULE_NAME"] == "pkg/train"
    assert user_code.module_name == "pkg.train"
