"""Installing requirements and packages, with pip and with uv, offline (a local wheel directory)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from smc_core.errors import ConfigError
from smc_core.usercode.install import (
    codeartifact_index_url,
    find_uv,
    installer_command,
    parse_codeartifact_arn,
    pip_settings,
)

from ..helpers import IN_TREE_BACKEND, PACKAGE_PYPROJECT, failure_text, make_wheel, run_train

INSTALLERS = [
    "pip",
    pytest.param("uv", marks=pytest.mark.skipif(find_uv() is None, reason="uv is not installed")),
]

USES_TINYDEP = "import tinydep\nprint('TINYDEP', tinydep.VALUE)\n"


def imports_in(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


@pytest.mark.parametrize("installer", INSTALLERS)
def test_requirements_are_installed_before_the_run(
    installer: str,
    job_dir: Callable[..., Path],
    tmp_path: Path,
    scratch_python: str,
    offline_pip_env: Callable[[Path], dict[str, str]],
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinydep", "1.0", "VALUE = 'from the wheel'\n")
    base = job_dir(
        entry_point="train.py", code={"train.py": USES_TINYDEP, "requirements.txt": "tinydep==1.0\n"}
    )
    assert not imports_in(scratch_python, "tinydep")
    env = {**offline_pip_env(wheels), "SMC_INSTALLER": installer}
    done = run_train(base, env=env, python=scratch_python)
    assert done.returncode == 0, done.stderr
    assert "TINYDEP from the wheel" in done.stdout
    assert f"with {installer}" in done.stderr
    assert imports_in(scratch_python, "tinydep")


@pytest.mark.parametrize("installer", INSTALLERS)
def test_constraints_from_pip_conf_are_honoured(
    installer: str,
    job_dir: Callable[..., Path],
    tmp_path: Path,
    scratch_python: str,
    offline_pip_env: Callable[[Path], dict[str, str]],
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinydep", "1.0", "VALUE = 'one'\n")
    make_wheel(wheels, "tinydep", "2.0", "VALUE = 'two'\n")
    (tmp_path / "constraints.txt").write_text("tinydep==1.0\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nno-index = true\nfind-links = {wheels}\n\n"
        f"[install]\nconstraint = {tmp_path / 'constraints.txt'}\n"
    )
    base = job_dir(entry_point="train.py", code={"train.py": USES_TINYDEP, "requirements.txt": "tinydep\n"})
    env = {**offline_pip_env(wheels), "PIP_CONFIG_FILE": str(conf), "SMC_INSTALLER": installer}
    del env["PIP_NO_INDEX"]  # no-index, find-links and the constraint come from pip.conf alone
    done = run_train(base, env={**env, "PIP_FIND_LINKS": ""}, python=scratch_python)
    assert done.returncode == 0, done.stderr
    assert "TINYDEP one" in done.stdout


@pytest.mark.parametrize("installer", INSTALLERS)
def test_failed_install_puts_the_installer_error_in_the_failure_file(
    installer: str,
    job_dir: Callable[..., Path],
    tmp_path: Path,
    scratch_python: str,
    offline_pip_env: Callable[[Path], dict[str, str]],
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    base = job_dir(
        entry_point="train.py",
        code={"train.py": "print('never')\n", "requirements.txt": "no-such-dist==9.9\n"},
    )
    done = run_train(base, env={**offline_pip_env(wheels), "SMC_INSTALLER": installer}, python=scratch_python)
    assert done.returncode == 5
    assert "never" not in done.stdout
    text = failure_text(base)
    first, second = text.splitlines()[:2]
    assert first.startswith("InstallError: Installing ") and f"with {installer} failed" in first
    assert second == "ExitCode 5"
    assert "no-such-dist" in text[:1024]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_package_is_installed_and_run_as_a_module(
    installer: str,
    job_dir: Callable[..., Path],
    tmp_path: Path,
    scratch_python: str,
    offline_pip_env: Callable[[Path], dict[str, str]],
) -> None:
    code = {
        "pyproject.toml": PACKAGE_PYPROJECT,
        "backend.py": IN_TREE_BACKEND,
        "userpkg/__init__.py": "",
        "userpkg/train.py": "import sys\nprint('MODULE', __name__, sys.argv[1:])\n",
    }
    base = job_dir(entry_point="userpkg/train.py", hyperparameters={"lr": 0.1}, code=code)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    done = run_train(base, env={**offline_pip_env(wheels), "SMC_INSTALLER": installer}, python=scratch_python)
    assert done.returncode == 0, done.stderr
    assert "MODULE __main__" in done.stdout and "['--lr', '0.1']" in done.stdout
    check = subprocess.run(
        [scratch_python, "-c", "import importlib.metadata as m; print(m.version('userpkg'))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert check.stdout.strip() == "0.1"


def test_pyproject_with_only_tool_settings_is_not_a_package(job_dir: Callable[..., Path]) -> None:
    code = {"pyproject.toml": "[tool.ruff]\nline-length = 100\n", "train.py": "print('SCRIPT')\n"}
    done = run_train(job_dir(entry_point="train.py", code=code))
    assert done.returncode == 0, done.stderr
    assert "SCRIPT" in done.stdout


# --- settings -----------------------------------------------------------------------------------


def test_pip_settings_from_files_and_variables(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://conf.example/simple\nextra-index-url =\n  https://a.example/simple\n"
        "  https://b.example/simple\ntrusted-host = a.example\n[install]\nconstraint = /c.txt\n"
    )
    env = {
        "PIP_CONFIG_FILE": str(conf),
        "HOME": str(tmp_path),
        "XDG_CONFIG_DIRS": str(tmp_path / "none"),
        "PIP_FIND_LINKS": "/w1 /w2",
        "PIP_INDEX_URL": "https://env.example/simple",
    }
    settings = pip_settings(env)
    assert settings.index_url == "https://env.example/simple"
    assert settings.extra_index_urls == ["https://a.example/simple", "https://b.example/simple"]
    assert settings.find_links == ["/w1", "/w2"]
    assert settings.constraints == ["/c.txt"]
    assert settings.trusted_hosts == ["a.example"]
    assert not settings.no_index
    assert pip_settings({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}).no_index


@pytest.mark.skipif(find_uv() is None, reason="uv is not installed")
def test_uv_gets_index_urls_through_its_environment_not_the_command_line(tmp_path: Path) -> None:
    env = {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "https://user:secret@private.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://x.example/simple",
        "PIP_FIND_LINKS": "/wheels",
    }
    command, run_env = installer_command(
        ["-r", "requirements.txt"], python="/py", environ=env, installer="uv"
    )
    assert "secret" not in json.dumps(command)
    assert run_env["UV_INDEX_URL"] == "https://user:secret@private.example/simple"
    assert run_env["UV_EXTRA_INDEX_URL"] == "https://x.example/simple"
    assert command[1:5] == ["pip", "install", "--python", "/py"] and "--find-links" in command


def test_unknown_installer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="installer is 'conda'"):
        installer_command(["x"], environ={}, installer="conda")


def test_the_installer_setting_is_not_read_behind_the_callers_back() -> None:
    # SMC_INSTALLER reaches installer_command only through its parameter (the default hook passes
    # training_env.settings[INSTALLER]); the environ given is for the index settings.
    command, _ = installer_command(["x"], python="/py", environ={"SMC_INSTALLER": "conda"}, installer="pip")
    assert command[:4] == ["/py", "-m", "pip", "install"]


def test_codeartifact_arn_and_index_url() -> None:
    parts = parse_codeartifact_arn("arn:aws:codeartifact:us-west-2:123456789012:repository/my-domain/my-repo")
    assert parts == {
        "partition": "aws",
        "region": "us-west-2",
        "account": "123456789012",
        "domain": "my-domain",
        "repository": "my-repo",
    }
    url = codeartifact_index_url(
        "https://my-domain-123456789012.d.codeartifact.us-west-2.amazonaws.com/pypi/my-repo/", "tok/en+="
    )
    assert (
        url
        == "https://aws:tok%2Fen%2B%3D@my-domain-123456789012.d.codeartifact.us-west-2.amazonaws.com/pypi/my-repo/simple/"
    )
    with pytest.raises(ConfigError, match="CA_REPOSITORY_ARN"):
        parse_codeartifact_arn("arn:aws:s3:::bucket")
