"""The user-code steps composed: fetch the code, install what it needs, import it, call ``train``.

The original design's ``training_from_fn(uri, hyperparameters)``, in smc's steps, each public and
usable alone: :func:`~smc_core.usercode.fetch.fetch_source`,
:func:`~smc_core.usercode.install.install_package` / :func:`~smc_core.usercode.install.install_requirements`,
:func:`~smc_core.launch.functions.import_user_module` and
:func:`~smc_core.launch.functions.call_with_hyperparameters`. A framework's own container (or a
notebook) that wants the pipeline without the runner calls :func:`train_from_source`; one that wants
to replace a step composes the others itself. The default plugins are the same steps, one per hook.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core.errors import ConfigError
from smc_core.launch.functions import call_with_hyperparameters, import_user_module
from smc_core.usercode.describe import import_name, is_package
from smc_core.usercode.fetch import fetch_source
from smc_core.usercode.install import install_package, install_requirements

__all__ = ["train_from_source"]


def train_from_source(
    source: str | os.PathLike[str] | None,
    hyperparameters: Mapping[str, Any],
    *,
    code_dir: Path | str,
    entry_point: str = "train.py",
    function_name: str = "train",
    fields: Mapping[str, Any] | None = None,
    installer: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """Fetch ``source`` into ``code_dir``, install what it needs, import ``entry_point`` and call its
    ``function_name`` with the hyperparameters its signature names; return what it returns.

    1. :func:`~smc_core.usercode.fetch.fetch_source` (``s3://``, ``file://``, a directory or an
       archive; None: the code already in ``code_dir``);
    2. the package in ``code_dir`` with :func:`~smc_core.usercode.install.install_package` when it
       holds one, else its ``requirements.txt`` (if any) with
       :func:`~smc_core.usercode.install.install_requirements`, into this interpreter;
    3. :func:`~smc_core.launch.functions.import_user_module` of ``entry_point``'s import name
       (``pkg.train`` for ``pkg/train.py``);
    4. :func:`~smc_core.launch.functions.call_with_hyperparameters`, with ``fields`` offered too.

    It runs in this process, with this process's working directory and environment (the runner's
    function mode also sets those up as the job's).

    :param environ: where the fetch and the installer read their settings (the S3 endpoint,
        ``PIP_INDEX_URL`` ...) and the installer runs with (default: this process's environment).
    :param installer: ``"uv"``, ``"pip"``, or None for uv when found, else pip.
    :raises FetchError: the source cannot be fetched.
    :raises InstallError: the install failed.
    :raises ConfigError: no such module or function, or the hyperparameters do not fit its signature.

    Example::

        from smc_core import train_from_source

        model = train_from_source(
            "s3://my-bucket/my-job/source/sourcedir.tar.gz",
            {"epochs": 3, "lr": 0.01},
            code_dir="/tmp/code",
            entry_point="train.py",
        )
    """
    code_dir = Path(code_dir)
    if source is not None:
        fetch_source(source, code_dir, environ=environ)
    if is_package(code_dir):
        install_package(code_dir, environ=environ, installer=installer)
    else:
        install_requirements(code_dir, environ=environ, installer=installer)
    module_name = import_name(entry_point)
    assert module_name is not None  # entry_point is a str
    module = import_user_module(code_dir, module_name)
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise ConfigError(
            f"{getattr(module, '__file__', module_name)} defines no function {function_name}(): define "
            f"def {function_name}(...) in it, or name the function that trains (function_name=...)."
        )
    return call_with_hyperparameters(fn, hyperparameters, fields)
