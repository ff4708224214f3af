"""Conformance: bad job configuration gives an error naming the file, key, value and what was expected,
an ``output/failure`` file and exit code 2, and the user's script never runs."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from .conftest import PROBE

CONFIG = Path("input") / "config"


def write(base: Path, name: str, content: object) -> None:
    path = base / CONFIG / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))


CASES = {
    "malformed hyperparameters": (
        "hyperparameters.json",
        '{"epochs": "10",',
        ["hyperparameters.json", "is not valid JSON", "line 1"],
    ),
    "malformed resourceconfig": (
        "resourceconfig.json",
        "{'hosts': ['algo-1']}",
        ["resourceconfig.json", "is not valid JSON"],
    ),
    "malformed inputdataconfig": (
        "inputdataconfig.json",
        '{"train": }',
        ["inputdataconfig.json", "is not valid JSON"],
    ),
    "hyperparameters not an object": (
        "hyperparameters.json",
        ["epochs", "10"],
        ["hyperparameters.json", "holds a list", '["epochs", "10"]', "expected a JSON object"],
    ),
    "hosts not a list": (
        "resourceconfig.json",
        {"current_host": "algo-1", "hosts": "algo-1"},
        ["resourceconfig.json", "'hosts'", '"algo-1"', "a string", "expected a non-empty list of host names"],
    ),
    "current_host not among hosts": (
        "resourceconfig.json",
        {"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]},
        ["resourceconfig.json", "'current_host'", '"algo-3"', '["algo-1", "algo-2"]', "expected one of them"],
    ),
    "no current_host": (
        "resourceconfig.json",
        {"hosts": ["algo-1"]},
        ["resourceconfig.json", '"current_host"', '["algo-1"]'],
    ),
    "instance group of an unknown host": (
        "resourceconfig.json",
        {
            "current_host": "algo-1",
            "hosts": ["algo-1"],
            "instance_groups": [{"instance_group_name": "g", "hosts": ["algo-9"]}],
        },
        ["resourceconfig.json", "instance_groups[0].hosts", '"algo-9"', "not among 'hosts'"],
    ),
    "channel not an object": (
        "inputdataconfig.json",
        {"train": "File"},
        ["inputdataconfig.json", "'train'", '"File"', "expected an object"],
    ),
    "channel name with a slash": (
        "inputdataconfig.json",
        {"../etc": {"TrainingInputMode": "File"}},
        ["inputdataconfig.json", '"../etc"', "not a plain directory name"],
    ),
    "channel directory missing": (
        "inputdataconfig.json",
        {"train": {"TrainingInputMode": "File"}, "tesst": {"TrainingInputMode": "File"}},
        ["inputdataconfig.json", "'tesst'", "input/data/tesst", "create it", '["train"]'],
    ),
    "program not a string": (
        "hyperparameters.json",
        {"sagemaker_program": "42"},
        ["hyperparameters.json", "'sagemaker_program'", "42", "expected a JSON string"],
    ),
    "log level not a level": (
        "hyperparameters.json",
        {"sagemaker_container_log_level": '"loud"'},
        [
            "hyperparameters.json",
            "'sagemaker_container_log_level'",
            '"loud"',
            "expected a Python logging level",
        ],
    ),
    "distribution group unknown": (
        "hyperparameters.json",
        {"sagemaker_distribution_instance_groups": '["trian"]', "sagemaker_program": '"train.py"'},
        [
            "hyperparameters.json",
            "sagemaker_distribution_instance_groups",
            "'trian'",
            "Did you mean 'train'?",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_with_a_named_error(case: str, job_dir, run_train) -> None:
    name, content, expected = CASES[case]
    base = job_dir(
        code={"train.py": PROBE},
        entry_point="train.py",
        channels=["train"],
        resource_config={
            "current_host": "algo-1",
            "hosts": ["algo-1"],
            "instance_groups": [
                {"instance_group_name": "train", "instance_type": "ml.m5.xlarge", "hosts": ["algo-1"]}
            ],
        },
    )
    write(base, name, content)
    run = run_train(base)
    assert run.code == 2, run.stderr
    assert run.record is None, "the script ran despite the bad configuration"
    assert run.failure is not None
    assert run.failure.startswith("ConfigError: ")
    assert "ExitCode 2" in run.failure
    for fragment in expected:
        assert fragment in run.failure, (fragment, run.failure)
        assert fragment in run.stderr
    assert not (base / "output" / "success").exists()


def test_missing_config_files_mean_empty_and_this_machine(job_dir, run_train) -> None:
    base = job_dir(code={"train.py": PROBE}, entry_point="train.py")
    for name in ("hyperparameters.json", "resourceconfig.json", "inputdataconfig.json"):
        (base / CONFIG / name).unlink()
    run = run_train(base, env={"SAGEMAKER_PROGRAM": "train.py"})
    assert run.code == 0, run.stderr
    assert run.argv == []
    assert run.env["SM_HPS"] == "{}"
    assert run.env["SM_CHANNELS"] == "[]"
    hostname = socket.gethostname()
    assert run.env["SM_HOSTS"] == json.dumps([hostname])
    assert run.env["SM_CURRENT_HOST"] == hostname
    assert run.env["SM_RESOURCE_CONFIG"] == json.dumps(
        {"current_host": hostname, "hosts": [hostname]}, separators=(",", ":")
    )


def test_pipe_mode_channels_have_no_directory(job_dir, run_train) -> None:
    base = job_dir(code={"train.py": PROBE}, entry_point="train.py")
    write(base, "inputdataconfig.json", {"stream": {"TrainingInputMode": "Pipe"}})
    run = run_train(base)
    assert run.code == 0, run.stderr
    assert run.env["SM_CHANNEL_STREAM"] == str(base / "input" / "data" / "stream")
