"""Every step of the user-code pipeline is a public function that works alone, and so is their
composition (the original design's first principle): each used here from ``smc_core`` only, with real
parts (moto's S3 server, a package index on 127.0.0.1, a scratch interpreter)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from smc_core import (
    ConfigError,
    FetchError,
    call_with_hyperparameters,
    extract_archive,
    fetch_source,
    import_user_module,
    install_package,
    install_requirements,
    intersect_fn_parameters,
)
from smc_core.testing.s3 import FAKE_CREDENTIALS, MotoServer

from ..helpers import IN_TREE_BACKEND, PACKAGE_PYPROJECT, make_wheel, tar_bytes
from .test_install import INSTALLERS, imports_in


def index_env(tmp_path: Path, index_url: str) -> dict[str, str]:
    """The environment an installer gets: the loopback index as its only index, no pip.conf."""
    return {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": index_url,
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_NO_CONFIG": "1",
    }


# --- fetching a source into a directory --------------------------------------------------------


def test_fetch_source_puts_an_s3_archive_into_a_directory(
    tmp_path: Path, s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in FAKE_CREDENTIALS.items():  # boto3's own credential chain
        monkeypatch.setenv(name, value)
    bucket = s3_server.bucket()
    files = {"train.py": "print('hi')\n", "lib/util.py": "X = 1\n"}
    s3_server.client().put_object(Bucket=bucket, Key="src/sourcedir.tar.gz", Body=tar_bytes(files))
    dest = fetch_source(f"s3://{bucket}/src/sourcedir.tar.gz", tmp_path / "code", environ=s3_server.env)
    assert dest == tmp_path / "code"
    assert (dest / "train.py").read_text() == "print('hi')\n" and (dest / "lib" / "util.py").is_file()
    with pytest.raises(FetchError, match=f"s3://{bucket}/missing.tar.gz"):
        fetch_source(f"s3://{bucket}/missing.tar.gz", tmp_path / "other", environ=s3_server.env)


@pytest.mark.parametrize("form", ["directory", "file-uri", "tarball"])
def test_fetch_source_takes_local_sources(tmp_path: Path, form: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('local')\n")
    given: str | Path = source
    if form == "file-uri":
        given = f"file://{source}"
    elif form == "tarball":
        given = tmp_path / "code.tar.gz"
        given.write_bytes(tar_bytes({"train.py": "print('local')\n"}))
    dest = fetch_source(given, tmp_path / "code")
    assert (dest / "train.py").read_text() == "print('local')\n"


def test_fetch_source_refuses_what_it_cannot_fetch(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="unsupported code source"):
        fetch_source("git://example.com/repo", tmp_path / "code")
    with pytest.raises(FetchError, match="no such file or directory"):
        fetch_source(tmp_path / "nothing-here", tmp_path / "code")


# --- extracting an archive safely --------------------------------------------------------------


def test_extract_archive_extracts_a_tarball_and_refuses_a_member_outside(tmp_path: Path) -> None:
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(tar_bytes({"pkg/": "", "pkg/train.py": "print(1)\n", "README": "r\n"}))
    names = extract_archive(archive, tmp_path / "out")
    assert sorted(names) == ["README", "pkg", "pkg/train.py"]
    assert (tmp_path / "out" / "pkg" / "train.py").read_text() == "print(1)\n"

    hostile = io.BytesIO()
    with tarfile.open(fileobj=hostile, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    (tmp_path / "hostile.tar.gz").write_bytes(hostile.getvalue())
    with pytest.raises(FetchError, match=r"\.\./escaped\.txt"):
        extract_archive(tmp_path / "hostile.tar.gz", tmp_path / "out2")
    assert not (tmp_path / "escaped.txt").exists()


# --- installing a requirements file, and a package ----------------------------------------------


@pytest.mark.parametrize("installer", INSTALLERS)
def test_install_requirements_from_a_loopback_index(
    installer: str, tmp_path: Path, scratch_python: str, loopback_index: Callable[[Path], str]
) -> None:
    make_wheel(tmp_path / "wheels", "tinydep", "1.0", "VALUE = 'from the index'\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "requirements.txt").write_text("tinydep==1.0\n")
    environ = index_env(tmp_path, loopback_index(tmp_path / "wheels"))
    assert not imports_in(scratch_python, "tinydep")
    assert install_requirements(
        code, python=scratch_python, environ=environ, installer=installer, timeout=120
    )
    assert imports_in(scratch_python, "tinydep")
    assert not install_requirements(tmp_path, python=scratch_python, environ=environ)  # none: nothing to do


def test_install_package_installs_the_code_dir(
    tmp_path: Path, scratch_python: str, loopback_index: Callable[[Path], str]
) -> None:
    code = tmp_path / "code"
    (code / "userpkg").mkdir(parents=True)
    (code / "pyproject.toml").write_text(PACKAGE_PYPROJECT)
    (code / "backend.py").write_text(IN_TREE_BACKEND)
    (code / "userpkg" / "__init__.py").write_text("NAME = 'userpkg'\n")
    (tmp_path / "wheels").mkdir()
    environ = index_env(tmp_path, loopback_index(tmp_path / "wheels"))
    install_package(code, python=scratch_python, environ=environ, timeout=120)
    done = subprocess.run(
        [scratch_python, "-c", "import userpkg; print(userpkg.NAME)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == "userpkg", done.stderr


# --- importing the user's module from a directory ----------------------------------------------


def test_import_user_module_from_a_directory(tmp_path: Path) -> None:
    name = f"user_train_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def train(epochs):\n    return epochs * 2\n")
    (tmp_path / name / "sub").mkdir(parents=True)
    (tmp_path / name / "sub" / "__init__.py").write_text("")
    module = import_user_module(tmp_path, name)
    assert module.train(epochs=2) == 4 and module.__file__ == str(tmp_path / f"{name}.py")
    with pytest.raises(ConfigError, match=f"No module '{name}_nope' in {tmp_path}"):
        import_user_module(tmp_path, f"{name}_nope")
    (tmp_path / f"{name}_broken.py").write_text("import no_such_dependency_xyz\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):  # the module's own error, as is
        import_user_module(tmp_path, f"{name}_broken")


# --- calling a function with the hyperparameters its signature names -------------------------------


def test_call_with_hyperparameters_passes_what_the_signature_names() -> None:
    def train(epochs: int, lr: float = 0.1, model_dir: str = "unset") -> tuple[int, float, str]:
        return epochs, lr, model_dir

    assert call_with_hyperparameters(train, {"epochs": "3", "lr": 0.5}) == (3, 0.5, "unset")
    assert call_with_hyperparameters(train, {"epochs": 1}, {"model_dir": "/m", "hosts": ["a"]}) == (
        1,
        0.1,
        "/m",
    )
    with pytest.raises(ConfigError, match=r"'batch' is not a parameter of .*train.*Fix the name"):
        call_with_hyperparameters(train, {"epochs": 1, "batch": 64})
    with pytest.raises(ConfigError, match="requires the parameter 'epochs'"):
        call_with_hyperparameters(train, {"lr": 0.1})
    lenient = intersect_fn_parameters(train, {"epochs": 2, "batch": 64})
    assert lenient == {"epochs": 2} and train(**lenient) == (2, 0.1, "unset")


# --- their composition ------------------------------------------------------------------------------

COMPOSED = """
import json, os, sys
from smc_core import train_from_source
model = train_from_source(
    sys.argv[1], {"epochs": "2", "scale": 1.5}, code_dir=sys.argv[2], entry_point="train.py",
    environ=dict(os.environ),
)
print("MODEL", json.dumps(model))
"""

TRAIN = """
import tinydep

def train(epochs: int, scale: float):
    return {"value": tinydep.VALUE, "epochs": epochs, "product": epochs * scale}
"""


def test_train_from_source_fetches_installs_imports_and_calls(
    tmp_path: Path, s3_server: MotoServer, scratch_python: str, loopback_index: Callable[[Path], str]
) -> None:
    make_wheel(tmp_path / "wheels", "tinydep", "1.0", "VALUE = 'installed'\n")
    bucket = s3_server.bucket()
    archive = tar_bytes({"train.py": TRAIN, "requirements.txt": "tinydep==1.0\n"})
    s3_server.client().put_object(Bucket=bucket, Key="sourcedir.tar.gz", Body=archive)
    environ = {**index_env(tmp_path, loopback_index(tmp_path / "wheels")), **s3_server.env}
    done = subprocess.run(  # a scratch interpreter: the install must not reach the test's own venv
        [scratch_python, "-c", COMPOSED, f"s3://{bucket}/sourcedir.tar.gz", str(tmp_path / "code")],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout.split("MODEL ", 1)[1])
    assert model == {"value": "installed", "epochs": 2, "product": 3.0}
