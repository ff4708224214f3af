"""Every switch reader reads a switch the same way: ``{"enabled": false}`` (as the SDK's ``distribution=``
sends some switches) is off, whatever form the value takes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smc_core import create_environment, is_true
from smc_core.host.switches import switches_on
from smc_core.usercode.describe import function_mode

from .helpers import failure_text, run_train

OFF: list[Any] = [
    False,
    "false",
    "False",
    "0",
    "no",
    "",
    None,
    0,
    {"enabled": False},
    {"enabled": "false"},
    {},
]
ON: list[Any] = [True, "true", "TRUE", "1", "yes", 1, {"enabled": True}, {"enabled": "true"}]
SWITCH = "sagemaker_multi_worker_mirrored_strategy_enabled"


@pytest.mark.parametrize("value", OFF, ids=repr)
def test_off(value: Any) -> None:
    assert not is_true(value)
    assert switches_on({SWITCH: value}) == []


@pytest.mark.parametrize("value", ON, ids=repr)
def test_on(value: Any) -> None:
    assert is_true(value)
    assert switches_on({SWITCH: value}) == [SWITCH]


@pytest.mark.parametrize(("value", "on"), [({"enabled": False}, False), ({"enabled": True}, True)])
def test_function_mode_hyperparameter(job_dir: Callable[..., Path], value: Any, on: bool) -> None:
    training_env = create_environment(job_dir(hyperparameters={"sagemaker_function_mode": value}), {})
    assert function_mode(training_env) is on


@pytest.mark.parametrize(("value", "code"), [({"enabled": False}, 0), ({"enabled": True}, 2)])
def test_an_off_switch_in_a_mapping_runs_and_an_on_one_needs_its_adapter(
    job_dir: Callable[..., Path], value: Any, code: int
) -> None:
    base = job_dir(
        entry_point="train.py", hyperparameters={SWITCH: value}, code={"train.py": "print('RAN')\n"}
    )
    done = run_train(base)
    assert done.returncode == code, done.stderr
    if code:
        assert f"{SWITCH} is on, but no loaded adapter handles it" in failure_text(base)
    else:
        assert "RAN" in done.stdout
