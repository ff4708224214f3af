"""Every job in these tests runs through smc's ``smc_job`` fixture with smc-lightgbm pinned."""

import pytest


@pytest.fixture
def smc_adapter():
    """``smc_job`` sets ``SMC_ADAPTER=lightgbm``."""
    return "lightgbm"
