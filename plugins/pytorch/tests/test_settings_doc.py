"""smc-pytorch's settings: declared through register_settings, documented from the declarations."""

from __future__ import annotations

import re
from pathlib import Path

from smc_pytorch import plugin
from smc_pytorch.distribution import SETTINGS

from smc_core import Setting, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_declared_through_the_hook() -> None:
    declared = plugin.register_settings()
    assert [s.name for s in declared] == [
        "SMC_PYTORCH_PROCESSES_PER_HOST",
        "SMC_PYTORCH_MASTER_PORT",
        "SMC_PYTORCH_RENDEZVOUS_TIMEOUT",
        "RUN_NEURON_PARALLEL_COMPILE",
    ]
    assert all(isinstance(s, Setting) and s.owner == "smc-pytorch" for s in declared)


def test_the_readme_table_is_the_registry() -> None:
    match = re.search(
        r"<!-- settings table:[^\n]*-->\n(.*?)<!-- end of settings table -->", README.read_text(), re.S
    )
    assert match, "plugins/pytorch/README.md lost its settings-table markers"
    assert match.group(1) == settings_table(SETTINGS), (
        "plugins/pytorch/README.md's settings table differs from smc_pytorch.distribution.SETTINGS: "
        "replace it with smc_core.settings_table(SETTINGS)"
    )
