"""The fault catalogue, case by case, through the real ``train`` and ``smc`` (see ``catalogue.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smc_core.testing.s3 import MotoServer
from tests.faults.catalogue import CASES, NONE, Case, render
from tests.faults.kit import Kit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, tmp_path: Path, request: pytest.FixtureRequest, s3_server: MotoServer) -> None:
    # s3_server (session-wide) is named here so that it starts before the test's process check does.
    outcome = case.run(Kit(tmp_path, request))
    report = (
        f"{case.id}: exit {outcome.exit_code}\nfailure:\n{outcome.failure}\nstderr:\n{outcome.stderr[-4000:]}"
    )
    assert outcome.exit_code == case.exit_code, report
    if case.first_line == NONE:
        if case.exit_code == 0 and outcome.base is not None:
            assert outcome.failure == "", report
    else:
        assert outcome.first_line.startswith(case.first_line), report
    if case.first_line not in (NONE, "my reason"):
        assert outcome.failure.split("\n")[1] == f"ExitCode {case.exit_code}", report


def test_catalogue_has_at_least_60_cases_with_unique_ids() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def test_docs_faults_md_is_the_catalogue() -> None:
    assert (ROOT / "docs" / "faults.md").read_text() == render(), (
        "docs/faults.md is out of date: python -m tests.faults.catalogue > docs/faults.md"
    )
