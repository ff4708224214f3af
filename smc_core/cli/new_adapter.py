"""``smc new-adapter NAME``: render the adapter template into a new package.

The template ships inside smc-core (``smc_core/cli/adapter_template``, package data), so the command
works wherever smc-core is installed: from a wheel as from a source checkout.

The template is a folder of files; ``${name}``-style placeholders in file names and contents are
filled in with :class:`string.Template` (``$$`` is a literal dollar), and a ``.tmpl`` suffix is dropped.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path

from smc_core.errors import ConfigError

TEMPLATE_DIR = Path(__file__).resolve().with_name("adapter_template")
"""The template, installed with smc-core as package data."""

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def template_values(name: str) -> dict[str, str]:
    """The placeholders' values for the framework ``name`` (the adapter's entry-point name)."""
    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"The adapter name {name!r} is not a lower-case Python identifier: give the framework's "
            "name as smc users will pin it with SMC_ADAPTER, e.g. `smc new-adapter jax`."
        )
    return {
        "name": name,
        "dist": "smc-" + name.replace("_", "-"),
        "module": f"smc_{name}",
        "upper": name.upper(),
        "switch": f"sagemaker_{name}_distributed_enabled",
    }


def render_template(template: Path, target: Path, values: Mapping[str, str]) -> list[Path]:
    """Copy ``template`` into ``target`` (which must not exist), filling in ``values``.

    :return: the files written.
    :raises ConfigError: ``target`` exists, or a file uses a placeholder ``values`` lacks.
    """
    if target.exists():
        raise ConfigError(f"{target} already exists: choose another --dir, or remove it first.")
    written: list[Path] = []
    for source in sorted(p for p in template.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        relative = source.relative_to(template).as_posix()
        try:
            relative = string.Template(relative).substitute(values)
            text = string.Template(source.read_text()).substitute(values)
        except (KeyError, ValueError) as error:
            raise ConfigError(
                f"The template file {source} uses the placeholder {error}, which is not one of "
                f"{sorted(values)}: fix the template (write $$ for a literal $)."
            ) from None
        path = target / relative.removesuffix(".tmpl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def new_adapter(name: str, directory: Path | None = None, *, template: Path = TEMPLATE_DIR) -> Path:
    """Render the adapter template for framework ``name`` into ``directory/smc-<name>``.

    :return: the new package's folder.
    """
    values = template_values(name)
    if not template.is_dir():
        raise ConfigError(
            f"The adapter template is not at {template}: this smc-core installation is incomplete. "
            "Reinstall it (pip install --force-reinstall smc-core)."
        )
    target = (directory or Path.cwd()) / values["dist"]
    render_template(template, target, values)
    return target
