"""pip's own configuration, read as pip reads it, and handed on to uv option by option.

A job written for SageMaker installs its ``requirements.txt`` with pip, configured by the image's and
the user's ``pip.conf`` files and ``PIP_*`` variables: a company CA (``cert``), a private index, extra
indexes, find-links, constraints. When smc installs with uv instead, each of those options must mean
to uv what it means to pip. :func:`pip_options` reads them (files in pip's order, ``[global]`` then
``[install]``, then ``PIP_*`` variables, each value with where it came from), and :func:`uv_translation`
maps every one onto uv: an option of ``uv pip install``, or a variable of uv's environment (index
URLs, which may hold credentials, and certificates never reach a command line). uv's defaults differ
from pip's where it matters too: uv takes a package only from the first index that has it, pip the
best version across all of them, so uv always gets ``--index-strategy unsafe-best-match``.

An option that uv has no equivalent for (``prefer-binary``, ``user``, ``upgrade-strategy = eager``,
an option smc does not know ...) makes the job install with pip, and the log names the option and
where it was set (:attr:`UvTranslation.fallback`). Options that change neither what is installed nor
how the index is reached (verbosity, progress bars, pip's own cache) are left out (:data:`IGNORED`).
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from smc_core.base.log import logger
from smc_core.job.hyperparameters import is_true

__all__ = [
    "IGNORED",
    "PipOption",
    "PipSettings",
    "UvTranslation",
    "config_files",
    "pip_options",
    "pip_settings",
    "uv_translation",
]


@dataclass(frozen=True)
class PipOption:
    """One pip option as pip's configuration gives it: its value and where it was set."""

    name: str
    value: str
    origin: str
    """The file (``/etc/pip.conf [global]``) or variable (``PIP_CERT``) that set it."""

    @property
    def words(self) -> list[str]:
        """The value split as pip splits list options (whitespace and newlines)."""
        return self.value.split()

    @property
    def flag(self) -> bool:
        """The value as pip reads a switch (``true``, ``yes``, ``1``, ``on``)."""
        return is_true(self.value) or self.value.strip().lower() == "on"


def config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, in the order pip loads them (later ones win); none when
    ``PIP_CONFIG_FILE`` is ``os.devnull``."""
    explicit = environ.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:
        return []
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    xdg_dirs = (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":")
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs] + [Path("/etc/pip.conf")]
    files += [
        home / ".pip" / "pip.conf",
        Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf",
    ]
    files.append(Path(sys.prefix) / "pip.conf")
    if explicit:
        files.append(Path(explicit))
    return files


def _normalise(key: str) -> str:
    key = key.strip().lower().replace("_", "-")
    return "timeout" if key == "default-timeout" else key


def pip_options(environ: Mapping[str, str] | None = None) -> dict[str, PipOption]:
    """Every option pip's configuration sets for ``pip install``, by name (``index-url``, ``cert``).

    As pip merges them: ``[global]`` of every file, then ``[install]`` of every file (a later file
    wins within a section; ``[install]`` wins over ``[global]``), then ``PIP_<NAME>`` variables (an
    empty one counts as unset). ``default-timeout`` is named ``timeout``.
    """
    environ = os.environ if environ is None else environ
    sections: dict[str, dict[str, PipOption]] = {"global": {}, "install": {}}
    for path in config_files(environ):
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path)
        except configparser.Error as exc:
            logger.warning("Ignoring pip configuration %s: %s", path, exc)
            continue
        for section, found in sections.items():
            if parser.has_section(section):
                for key, value in parser.items(section):
                    name = _normalise(key)
                    found[name] = PipOption(name, value, f"{path} [{section}]")
    options = {**sections["global"], **sections["install"]}
    for variable, value in environ.items():
        if variable.startswith("PIP_") and value and variable != "PIP_CONFIG_FILE":
            name = _normalise(variable[4:])
            options[name] = PipOption(name, value, variable)
    return options


@dataclass
class PipSettings:
    """The pip options that say where packages come from, as pip's configuration gives them."""

    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    no_index: bool = False


def pip_settings(environ: Mapping[str, str] | None = None) -> PipSettings:
    """Where pip's configuration says packages come from (see :func:`pip_options`)."""
    options = pip_options(environ)

    def words(name: str) -> list[str]:
        return options[name].words if name in options else []

    return PipSettings(
        index_url=options["index-url"].value.strip() if "index-url" in options else None,
        extra_index_urls=words("extra-index-url"),
        find_links=words("find-links"),
        constraints=words("constraint"),
        trusted_hosts=words("trusted-host"),
        no_index=options["no-index"].flag if "no-index" in options else False,
    )


IGNORED = frozenset(
    {
        # how pip talks and logs, and its own bookkeeping: nothing installed changes
        "verbose",
        "quiet",
        "log",
        "log-file",
        "no-input",
        "disable-pip-version-check",
        "no-color",
        "progress-bar",
        "root-user-action",
        "no-warn-script-location",
        "no-warn-conflicts",
        "exists-action",
        "cache-dir",
        "compile",
        "no-compile",
        "no-python-version-warning",
        "require-virtualenv",
        "isolated",
        "no-clean",
        "src",
        "yes",
        "resume-retries",
        # options of other pip commands that a [global] section may hold
        "format",
        "exclude-editable",
        "not-required",
        "outdated",
        "uptodate",
    }
)
"""pip options that change neither what is installed nor how the index is reached: left out."""

_SWITCHES = {
    "no-index": ["--no-index"],
    "pre": ["--prerelease", "allow"],
    "no-deps": ["--no-deps"],
    "require-hashes": ["--require-hashes"],
    "no-build-isolation": ["--no-build-isolation"],
    "force-reinstall": ["--reinstall"],
    "upgrade": ["--upgrade"],
    "break-system-packages": ["--break-system-packages"],
    "no-cache-dir": ["--no-cache"],
}
"""pip switches and the ``uv pip install`` options that mean the same when they are on."""
_REPEATED = {
    "find-links": "--find-links",
    "constraint": "--constraint",
    "trusted-host": "--allow-insecure-host",
    "config-settings": "--config-setting",
}
"""pip list options and the uv option given once per value."""
_ENVIRONMENT = {
    "index-url": ("UV_INDEX_URL",),
    "cert": ("SSL_CERT_FILE",),
    "client-cert": ("SSL_CLIENT_CERT",),
    "proxy": ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"),
    "timeout": ("UV_HTTP_TIMEOUT",),
    "retries": ("UV_HTTP_RETRIES",),
}
"""pip options and the variables of uv's environment that carry the same value."""


@dataclass
class UvTranslation:
    """pip's configuration as uv options and variables, or the reason uv cannot honour it."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    fallback: str | None = None
    """Why the job must install with pip (the option and where it was set), or None."""
    mapped: list[str] = field(default_factory=list)
    """The pip options handed on (``cert (/etc/pip.conf [global])``), for the log."""


def _binary_values(option: PipOption) -> list[str]:
    return [v for word in option.words for v in word.split(",") if v]


def uv_translation(options: Mapping[str, PipOption]) -> UvTranslation:
    """Map every one of ``options`` (:func:`pip_options`) onto ``uv pip install`` (see the module
    docstring); the first option that uv cannot honour sets :attr:`UvTranslation.fallback`."""
    done = UvTranslation(args=["--index-strategy", "unsafe-best-match"])
    for name, option in sorted(options.items()):
        if name in IGNORED:
            continue
        where = f"{name} ({option.origin})"
        if name in _SWITCHES:
            if option.flag:
                done.args += _SWITCHES[name]
                done.mapped.append(where)
        elif name in _REPEATED:
            for value in option.words:
                done.args += [_REPEATED[name], value]
            done.mapped.append(where)
        elif name in _ENVIRONMENT:
            for variable in _ENVIRONMENT[name]:
                done.env[variable] = option.value.strip()
            done.mapped.append(where)
        elif name == "extra-index-url":
            done.env["UV_EXTRA_INDEX_URL"] = " ".join(option.words)
            done.mapped.append(where)
        elif name in ("only-binary", "no-binary"):
            for value in _binary_values(option):
                done.args += [f"--{name}", value]
            done.mapped.append(where)
        elif name in ("target", "prefix"):
            done.args += [f"--{name}", option.value.strip()]
            done.mapped.append(where)
        elif name == "upgrade-strategy" and option.value.strip() == "only-if-needed":
            continue  # pip's default, and what uv does
        elif name == "keyring-provider" and option.value.strip() in ("subprocess", "disabled"):
            done.args += ["--keyring-provider", option.value.strip()]
            done.mapped.append(where)
        elif (name == "use-pep517" and option.flag) or (name == "no-use-pep517" and not option.flag):
            continue  # uv always builds through PEP 517, as pip does unless told otherwise
        else:
            done.fallback = f"pip's configuration sets {name} = {option.value.strip()!r} ({option.origin})"
            break
    return done
