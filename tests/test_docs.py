"""The docs build with warnings as errors, and every hook and setting is documented from the code."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _extension():
    spec = importlib.util.spec_from_file_location("smc_docs", DOCS / "_ext" / "smc_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(built_docs: Path) -> Path:
    """The HTML docs, built with ``sphinx-build -W`` from smc's wheels in a fresh virtualenv outside
    the repository (``built_docs`` in conftest.py; ``make docs`` builds them from the checkout)."""
    return built_docs


def test_every_hookspec_documents_its_arguments_and_result():
    specs = _extension().hook_specs()
    assert set(specs) >= {"load_environment", "fetch_user_code", "prepare_training", "invoke_train"}
    for name, func in specs.items():
        doc = inspect.getdoc(func) or ""
        assert len(doc.splitlines()[0]) > 20, f"{name}: no summary line"
        for param in inspect.signature(func).parameters:
            assert f":param {param}:" in doc, f"hookspecs.{name} does not document its argument {param!r}"
        assert ":return:" in doc, f"hookspecs.{name} does not say what it returns"
        assert "Example" in doc, f"hookspecs.{name} has no example"


def test_every_hook_is_in_the_hook_reference(built):
    page = (built / "hooks.html").read_text()
    for name in _extension().hook_specs():
        assert f'id="smc_core.hookspecs.{name}"' in page, f"hook {name} is missing from hooks.html"


def test_every_setting_is_described_and_in_the_settings_reference(built):
    page = re.sub(r"<[^>]+>", "", (built / "settings.html").read_text())
    settings = _extension().collect_settings()
    owners = {s.owner for s in settings}
    assert {"smc-core", "smc-pytorch"} <= owners  # the installed adapter's register_settings counts
    for setting in settings:
        assert len(setting.description) > 10, f"{setting.name} has no description"
        assert setting.name in page, f"{setting.name} is missing from settings.html"


def test_every_exit_code_is_in_the_exit_codes_page(built):
    from smc_core import errors

    page = re.sub(r"<[^>]+>", "", (built / "exit-codes.html").read_text())
    for name in errors.__all__:
        assert name in page, f"{name} is missing from exit-codes.html"


def test_every_public_name_is_in_the_api_page(built):
    import smc_core

    page = (built / "api.html").read_text()
    for name in smc_core.__all__:
        if name != "__version__":
            # under its public path (the anchor autodoc writes), never an internal module's
            assert f'id="smc_core.{name}"' in page, f"smc_core.{name} is not documented as smc_core.{name}"
    internal = sorted(set(re.findall(r'id="(smc_core\.(?:base|job|launch|usercode|host)\.[\w.]+)"', page)))
    assert not internal, f"api.html documents internal paths: {internal}"


def test_code_like_text_is_rendered_as_typed(built):
    page = (built / "testing.html").read_text()
    assert "--strict-markers" in page and "\u2013strict-markers" not in page  # no en dash for "--"
    assert "\u201c" not in page and "\u201d" not in page  # no curly quotes


def _is_fixture(value: object) -> bool:
    # pytest 8.4+ wraps fixtures in FixtureFunctionDefinition; earlier versions mark the function.
    return type(value).__name__ == "FixtureFunctionDefinition" or hasattr(value, "_pytestfixturefunction")


def test_every_kit_fixture_is_in_the_testing_guide():
    import smc_core.testing as kit

    guide = (DOCS / "testing.md").read_text()
    fixtures = [name for name in dir(kit) if _is_fixture(getattr(kit, name))]
    assert {"smc_job", "smc_adapter", "netns_hosts", "s3_server"} <= set(fixtures)
    for name in fixtures:
        assert f"`{name}`" in guide, f"the fixture {name} is not in docs/testing.md"


def test_readme_links_the_docs():
    assert "docs/" in (ROOT / "README.md").read_text()


def test_readme_shows_the_example_plugin_as_it_is():
    example = (ROOT / "examples" / "smc-code-from-dir" / "smc_code_from_dir.py").read_text()
    code = example.split('"""', 2)[2].strip()
    assert code in (ROOT / "README.md").read_text(), "README's plugin example differs from the module"
