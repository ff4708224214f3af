"""Installing what the user's code needs: ``requirements.txt``, or the code dir as a package.

Installer: ``uv pip install`` when uv is available (next to the interpreter or on ``PATH``), else
``python -m pip install``; ``SMC_INSTALLER=pip`` or ``SMC_INSTALLER=uv`` forces one. Packages go
into the interpreter that runs the user's code (``sys.executable`` unless told otherwise).

The user's pip configuration is honoured either way: pip reads its own ``pip.conf`` files and
``PIP_*`` variables; for uv, :mod:`smc_core.usercode.pipconfig` reads the same and hands every option
on (index URLs, extra indexes with pip's best-match across them, find-links, constraints, trusted
hosts, ``cert``, ``client-cert``, proxy, timeout, retries, ``pre``, ``only-binary`` ...), index URLs
and certificates through uv's environment so that credentials never reach a command line. An option
uv has no equivalent for makes the job install with pip, and the log says which option it was.

Private index: with ``CA_REPOSITORY_ARN=arn:aws:codeartifact:REGION:ACCOUNT:repository/DOMAIN/REPO``
(as in the reference toolkit), an AWS CodeArtifact authorization token is fetched (boto3) and the
repository becomes the index URL.

An install is bounded by ``SMC_INSTALL_TIMEOUT`` (default 1800 s; the ``timeout`` argument). A
package index that cannot be reached is named in the error's first line. A failed install raises
:class:`~smc_core.errors.InstallError` (exit code 5) whose message ends with the tail of the installer's
error output; the runner puts it in the failure file.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlparse

from smc_core.base.log import logger
from smc_core.base.messages import summary_line
from smc_core.base.settings import INSTALLER
from smc_core.base.stopping import raise_if_stopped
from smc_core.errors import ConfigError, InstallError
from smc_core.launch.process import start_process
from smc_core.usercode.pipconfig import PipSettings, pip_options, pip_settings, uv_translation

__all__ = [
    "PipSettings",
    "codeartifact_index_url",
    "find_uv",
    "install_package",
    "install_requirements",
    "installer_command",
    "parse_codeartifact_arn",
    "pip_settings",
]

INSTALL_TAIL_LINES = 15


def find_uv(environ: Mapping[str, str] | None = None) -> str | None:
    """The uv executable beside the interpreter, on ``PATH``, or from the ``uv`` Python package; or None.

    :param environ: the environment whose ``PATH`` is searched (default: this process's).
    """
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("uv", path=(os.environ if environ is None else environ).get("PATH"))
    if found:
        return found
    try:
        import uv  # the PyPI distribution of uv ships its binary and this finder

        return str(uv.find_uv_bin())
    except Exception:
        return None


def _installer(
    installer: str | None, environ: Mapping[str, str], fallback: str | None
) -> tuple[str, str | None]:
    if installer not in (None, "uv", "pip"):
        raise ConfigError(
            f"The installer is {installer!r}; give uv, pip, or None to choose "
            f"(SMC_INSTALLER: {INSTALLER.accepted})."
        )
    uv = find_uv(environ) if installer in (None, "uv") else None
    if installer == "uv" and uv is None:
        raise ConfigError(
            "SMC_INSTALLER=uv, but uv is not installed: `pip install uv`, or set SMC_INSTALLER=pip."
        )
    if uv and fallback:
        if installer == "uv":
            raise ConfigError(
                f"SMC_INSTALLER=uv, but {fallback}, which uv has no equivalent for: set SMC_INSTALLER=pip "
                "(or leave it unset: smc then installs with pip), or remove that option."
            )
        logger.info("Installing with pip, not uv: %s, which uv has no equivalent for.", fallback)
        return ("pip", None)
    return ("uv", uv) if uv else ("pip", None)


def parse_codeartifact_arn(arn: str) -> dict[str, str]:
    """The parts of a CodeArtifact repository ARN: partition, region, account, domain, repository."""
    match = re.match(
        r"^arn:(?P<partition>[^:]+):codeartifact:(?P<region>[^:]+):(?P<account>\d+):"
        r"repository/(?P<domain>[^/]+)/(?P<repository>[^/]+)$",
        arn.strip(),
    )
    if not match:
        raise ConfigError(
            f"CA_REPOSITORY_ARN is {arn!r}; expected "
            "arn:aws:codeartifact:REGION:ACCOUNT:repository/DOMAIN/REPO."
        )
    return match.groupdict()


def codeartifact_index_url(endpoint: str, token: str) -> str:
    """The pip index URL for a CodeArtifact PyPI ``endpoint`` with an authorization ``token``."""
    parsed = urlparse(endpoint)
    path = parsed.path.rstrip("/") + "/simple/"
    return f"{parsed.scheme}://aws:{quote(token, safe='')}@{parsed.netloc}{path}"


def _codeartifact_index(environ: Mapping[str, str]) -> str | None:
    arn = environ.get("CA_REPOSITORY_ARN")
    if not arn:
        return None
    parts = parse_codeartifact_arn(arn)
    import boto3  # only for CodeArtifact: smc's start must not import boto3

    client = boto3.session.Session().client("codeartifact", region_name=parts["region"])
    try:
        token = client.get_authorization_token(domain=parts["domain"], domainOwner=parts["account"])
        endpoint = client.get_repository_endpoint(
            domain=parts["domain"],
            domainOwner=parts["account"],
            repository=parts["repository"],
            format="pypi",
        )
    except Exception as exc:
        raise InstallError(
            f"CodeArtifact repository {arn}: cannot get an index URL ({type(exc).__name__}: {exc}). Give the "
            "job's role codeartifact:GetAuthorizationToken, codeartifact:GetRepositoryEndpoint, "
            "codeartifact:ReadFromRepository and sts:GetServiceBearerToken."
        ) from exc
    logger.info("Installing from the CodeArtifact repository %s.", arn)
    return codeartifact_index_url(endpoint["repositoryEndpoint"], token["authorizationToken"])


def installer_command(
    targets: Sequence[str],
    *,
    python: str | None = None,
    environ: Mapping[str, str] | None = None,
    installer: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The install command for ``targets`` (pip/uv arguments, e.g. ``["-r", "requirements.txt"]``)
    and the environment to run it with.

    :param installer: ``"uv"``, ``"pip"``, or None for uv when found, else pip (the default hook
        passes ``training_env.settings[INSTALLER]``, the job's ``SMC_INSTALLER``).
    """
    environ = dict(os.environ if environ is None else environ)
    python = python or sys.executable
    private_index = _codeartifact_index(environ)
    if private_index:  # the CodeArtifact repository is the index, for pip and for uv alike
        environ["PIP_INDEX_URL"] = private_index
    translation = uv_translation(pip_options(environ)) if installer != "pip" else None
    name, uv = _installer(installer, environ, translation.fallback if translation else None)
    if name == "pip":
        command = [python, "-m", "pip", "install", "--disable-pip-version-check", *targets]
        return command, environ
    assert uv is not None and translation is not None
    if translation.mapped:
        logger.info("pip's configuration handed on to uv: %s.", "; ".join(translation.mapped))
    environ.update(translation.env)
    return [uv, "pip", "install", "--python", python, *translation.args, *targets], environ


_UNREACHABLE = re.compile(
    r"Failed to establish a new connection|Connection refused|NewConnectionError|Max retries exceeded|"
    r"Network is unreachable|Name or service not known|Temporary failure in name resolution|"
    r"ReadTimeoutError|Read timed out|ConnectTimeoutError|Failed to fetch|error sending request|"
    r"operation timed out|dns error|tcp connect error",
    re.IGNORECASE,
)


def index_urls(environ: Mapping[str, str]) -> list[str]:
    """The package indexes the installer asks (pip's configuration; PyPI when none is set)."""
    settings = pip_settings(environ)
    if settings.no_index:
        return list(settings.find_links)
    return [settings.index_url or "https://pypi.org/simple", *settings.extra_index_urls]


def unreachable_indexes(urls: Sequence[str], timeout: float = 5.0) -> list[str]:
    """Those of ``urls`` (http/https) whose host does not accept a connection within ``timeout`` s."""
    failed = []
    for url in urls:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            continue
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout).close()
        except OSError:
            failed.append(url)
    return failed


def _redacted(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def _run_installer(
    what: str,
    targets: Sequence[str],
    code_dir: Path,
    python: str | None,
    environ: Mapping[str, str] | None,
    installer: str | None = None,
    timeout: float | None = None,
) -> None:
    command, env = installer_command(targets, python=python, environ=environ, installer=installer)
    tool = "uv" if command[1:3] == ["pip", "install"] else "pip"
    logger.info("Installing %s with %s%s.", what, tool, f" (at most {timeout:g} s)" if timeout else "")
    process = start_process(command, env=env, cwd=code_dir, tail_lines=INSTALL_TAIL_LINES)
    try:
        result = process.wait(timeout)
    except subprocess.TimeoutExpired:
        result = process.stop(10)
        raise_if_stopped(result.details)
        raise InstallError(
            f"Installing {what} with {tool} did not finish within {timeout:g} s (SMC_INSTALL_TIMEOUT): "
            f"stopped. Check that the package index ({', '.join(_redacted(u) for u in index_urls(env))}) "
            "answers, or raise SMC_INSTALL_TIMEOUT for large installs.\n"
            f"{(result.failure or '').rstrip()}"
        ) from None
    raise_if_stopped(result.details)
    if result.succeeded:
        return
    tail = (result.failure or "").rstrip()
    errors = [line.strip() for line in tail.splitlines() if re.match(r"^\s*(ERROR|error|\u00d7)", line)]
    headline = errors[-1] if errors else (summary_line(tail) or f"exit code {result.exit_code}")
    unreachable = unreachable_indexes(index_urls(env)) if _UNREACHABLE.search(tail) or errors else []
    if unreachable:
        urls = ", ".join(_redacted(u) for u in unreachable)
        headline = f"the package index could not be reached ({urls}); the installer said: {headline}"
    raise InstallError(
        f"Installing {what} with {tool} failed (exit code {result.exit_code}): {headline}\n"
        f"{tail}\n"
        f"Command: {' '.join(command)}\n"
        "Check the names and versions required, and the package index settings (PIP_INDEX_URL, "
        "PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, pip.conf, CA_REPOSITORY_ARN)."
    )


def install_requirements(
    code_dir: Path | str,
    *,
    python: str | None = None,
    environ: Mapping[str, str] | None = None,
    installer: str | None = None,
    timeout: float | None = None,
    requirements: str = "requirements.txt",
) -> bool:
    """Install ``code_dir/requirements.txt`` into ``python``'s environment, if the file exists.

    :param code_dir: the directory holding ``requirements.txt`` (also the installer's working
        directory, so relative paths in the file are relative to it).
    :param requirements: the requirements file, relative to ``code_dir`` (a ModelTrainer job's
        ``SourceCode.requirements``).
    :param python: the interpreter to install into (default: this one).
    :param environ: the environment to read the index settings (``PIP_*``, ``CA_REPOSITORY_ARN``) from
        and run the installer with (default: this process's).
    :param installer: ``"uv"``, ``"pip"``, or None for uv when found, else pip.
    :param timeout: seconds the install may take before it is stopped (None: no bound).
    :return: True when something was installed, False when there is no ``requirements.txt``.
    :raises InstallError: the installer failed; the message ends with its error output.

    Example::

        from smc_core import install_requirements

        install_requirements("/opt/ml/code", environ={"PIP_INDEX_URL": "https://pypi.example/simple"})
    """
    code_dir = Path(code_dir)
    if not (code_dir / requirements).is_file():
        return False
    _run_installer(
        f"{code_dir / requirements}",
        ["-r", requirements],
        code_dir,
        python,
        environ,
        installer,
        timeout,
    )
    return True


def install_package(
    code_dir: Path | str,
    *,
    python: str | None = None,
    environ: Mapping[str, str] | None = None,
    installer: str | None = None,
    timeout: float | None = None,
) -> None:
    """Install the package in ``code_dir`` (``setup.py`` / ``pyproject.toml``), with its
    ``requirements.txt`` when there is one, into ``python``'s environment.

    Arguments as for :func:`install_requirements`.

    :raises InstallError: the installer failed; the message ends with its error output.

    Example::

        from smc_core import install_package

        install_package("/opt/ml/code", installer="pip", timeout=600)
    """
    code_dir = Path(code_dir)
    targets = ["."]
    if (code_dir / "requirements.txt").is_file():
        targets += ["-r", "requirements.txt"]
    _run_installer(f"the package in {code_dir}", targets, code_dir, python, environ, installer, timeout)
