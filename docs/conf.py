"""Sphinx configuration for smc's documentation: ``sphinx-build -W docs OUT`` (from any directory).

Pages are MyST Markdown; the hook reference, the settings reference, the exit codes and the public API
are generated from the code by the local extension ``_ext/smc_docs.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import smc_core

project = "smc"
author = "the smc authors"
copyright = "the smc authors, Apache-2.0"
release = version = smc_core.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "smc_docs"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "requirements.txt"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
# Code-like text stays as typed: no "--flag" turned into an en dash, no curly quotes.
smartquotes = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True


html_theme = "alabaster"
html_title = f"smc {release}"
html_static_path: list[str] = []
