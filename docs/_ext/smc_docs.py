"""A small Sphinx extension: smc's references generated from the code, so they cannot drift.

Directives (used from the MyST pages inside ``{eval-rst}`` blocks):

* ``smc-hooks``: every hook specification in :mod:`smc_core.hookspecs`, its docstring (autodoc) and
  how its results combine (first result wins, or every plugin contributes).
* ``smc-settings``: every declared setting: the core's :data:`~smc_core.base.settings.CORE_SETTINGS`
  and the ``register_settings`` declarations of every installed adapter and plugin (entry-point
  groups ``smc.adapters`` and ``smc.plugins``).
* ``smc-exit-codes``: the exit code of every error class in :mod:`smc_core.errors`.
* ``smc-public-api``: every name ``smc_core`` exports, documented with autodoc.
* ``smc-switches``: the well-known distribution switches and what provides each
  (:data:`~smc_core.host.switches.WELL_KNOWN_SWITCHES`).

The functions :func:`hook_specs` and :func:`collect_settings` are what ``tests/test_docs.py`` checks.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def hook_specs() -> dict[str, Callable[..., Any]]:
    """Every hook specification, by name, in the order ``hookspecs.py`` defines them."""
    from smc_core import hookspecs

    specs = {
        name: func
        for name, func in vars(hookspecs).items()
        if inspect.isfunction(func) and hasattr(func, f"{hookspecs.PROJECT_NAME}_spec")
    }
    return dict(sorted(specs.items(), key=lambda item: item[1].__code__.co_firstlineno))


def collect_settings() -> list[Any]:
    """Every declared setting: the core's first, then each installed adapter's and plugin's, by owner."""
    from smc_core.base.settings import CORE_SETTINGS
    from smc_core.host.entrypoints import find_entry_points
    from smc_core.host.plugins import ADAPTER_GROUP, PLUGIN_GROUP, get_plugin_manager

    found = find_entry_points(ADAPTER_GROUP, PLUGIN_GROUP)
    modules = {ep.value: ep.load() for group in (ADAPTER_GROUP, PLUGIN_GROUP) for ep in found[group]}
    pm = get_plugin_manager(environ={}, load_entrypoints=False, plugins=list(modules.values()))
    settings: dict[str, Any] = {setting.name: setting for setting in CORE_SETTINGS}
    for contribution in pm.hook.register_settings():
        for setting in contribution or ():
            settings.setdefault(setting.name, setting)
    owners = sorted({s.owner for s in settings.values()}, key=lambda owner: (owner != "smc-core", owner))
    return [s for owner in owners for s in settings.values() if s.owner == owner]


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("`", "\\`")


def _list_table(header: list[str], rows: list[list[str]], widths: str) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines


class _GeneratedRst(SphinxDirective):
    """Renders the reStructuredText lines that :meth:`lines` returns."""

    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        source = self.get_source_info()[0] or "<smc_docs>"
        content = StringList(self.lines(), source=source)
        self.state.nested_parse(content, self.content_offset, container)
        return container.children


class HooksDirective(_GeneratedRst):
    """``.. smc-hooks::``: the hook reference."""

    def lines(self) -> list[str]:
        from smc_core.hookspecs import PROJECT_NAME

        out: list[str] = []
        for name, func in hook_specs().items():
            opts = getattr(func, f"{PROJECT_NAME}_spec")
            combine = (
                "**First result wins**: the first implementation that returns something other than "
                "None answers; the defaults answer last."
                if opts.get("firstresult")
                else "**Every plugin contributes**: each implementation is called and every non-None "
                "result is used."
            )
            out += [f".. autofunction:: smc_core.hookspecs.{name}", "", f"   {combine}", ""]
        return out


class SettingsDirective(_GeneratedRst):
    """``.. smc-settings::``: every declared setting as one table."""

    def lines(self) -> list[str]:
        rows = [
            [
                f"``{s.name}``",
                f"``{s.default_text}``",
                _escape(s.accepted),
                _escape(s.description),
                s.owner,
            ]
            for s in collect_settings()
        ]
        return _list_table(
            ["variable", "default", "accepts", "what it does", "declared by"], rows, "22 8 18 40 12"
        )


class ExitCodesDirective(_GeneratedRst):
    """``.. smc-exit-codes::``: each error class and its exit code."""

    def lines(self) -> list[str]:
        from smc_core import errors

        rows = [["``0``", "—", "the training job succeeded"]]
        for name in sorted(errors.__all__, key=lambda n: (getattr(errors, n).exit_code, n)):
            cls = getattr(errors, name)
            summary = (inspect.getdoc(cls) or "").splitlines()[0]
            rows.append([f"``{cls.exit_code}``", f":class:`~smc_core.{name}`", _escape(summary)])
        return _list_table(["exit code", "error", "meaning"], rows, "10 20 70")


class PublicApiDirective(_GeneratedRst):
    """``.. smc-public-api::``: every name in ``smc_core.__all__``, documented under its public path
    (``smc_core.NAME``, never the internal module that defines it)."""

    def lines(self) -> list[str]:
        import smc_core

        out: list[str] = []
        for name in ["hookimpl", *smc_core._EXPORTS]:
            value = getattr(smc_core, name)
            if inspect.isclass(value):
                out += [f".. autoclass:: smc_core.{name}", "   :members:", ""]
            elif inspect.isfunction(value):
                out += [f".. autofunction:: smc_core.{name}", ""]
            else:
                text = data_description(name, value, smc_core._EXPORTS.get(name, "smc_core"))
                out += [f".. py:data:: smc_core.{name}", f"   :type: {type(value).__name__}", ""]
                out += [f"   {line}" if line else "" for line in text.splitlines()] + [""]
        return out


class SwitchesDirective(_GeneratedRst):
    """``.. smc-switches::``: the well-known switches, what each launches and what provides it."""

    def lines(self) -> list[str]:
        from smc_core.host.switches import WELL_KNOWN_SWITCHES

        rows = [
            [f"``{switch}``", _escape(known.launches), ", ".join(f"``{dist}``" for dist in known.install)]
            for switch, known in WELL_KNOWN_SWITCHES.items()
        ]
        return _list_table(["switch", "launches", "pip install"], rows, "40 35 25")


def data_description(name: str, value: object, module: str) -> str:
    """What a public value (not a class or function) is: a setting's own declaration, else the
    attribute docstring beside its assignment in ``module``.

    :raises ValueError: the value has neither (a public name must say what it is).
    """
    from smc_core.base.settings import Setting

    if isinstance(value, Setting):
        return (
            f"The setting ``{value.name}``: {value.description} (accepts {value.accepted}; default "
            f"``{value.default_text}``). A hook reads the job's value as "
            f"``training_env.settings[{name}]``."
        )
    from sphinx.pycode import ModuleAnalyzer

    docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    lines = docs.get(("", name))
    if not lines:
        raise ValueError(f"smc_core.{name} ({module}) has no docstring below its assignment: write one.")
    return "\n".join(lines).strip()


def attributes_section(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Turn a docstring's ``Attributes:`` section (``name: text`` items, indented) into ``:ivar:`` fields.

    smc's docstrings are reST with field lists; a few dataclasses list their fields this way.
    """
    out: list[str] = []
    in_section = False
    for line in lines:
        if line.strip() == "Attributes:":
            in_section = True
            continue
        if in_section:
            stripped = line.strip()
            if not stripped:
                out.append("")
                continue
            indent = len(line) - len(line.lstrip())
            if indent == 0:
                in_section = False
            elif ":" in stripped and indent <= 4 and " " not in stripped.split(":", 1)[0]:
                field, text = stripped.split(":", 1)
                out.append(f":ivar {field}: {text.strip()}")
                continue
            else:
                out.append("   " + stripped)
                continue
        out.append(line)
    lines[:] = out


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives and the docstring filter."""
    importlib.import_module("smc_core")
    app.connect("autodoc-process-docstring", attributes_section)
    app.add_directive("smc-hooks", HooksDirective)
    app.add_directive("smc-settings", SettingsDirective)
    app.add_directive("smc-exit-codes", ExitCodesDirective)
    app.add_directive("smc-public-api", PublicApiDirective)
    app.add_directive("smc-switches", SwitchesDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
