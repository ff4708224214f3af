"""The adapter's settings are declared (register_settings): a bad value fails any job at start."""

from __future__ import annotations

from smc_pytorch.distribution import SETTINGS


def test_every_setting_is_owned_and_described():
    assert {s.name for s in SETTINGS} == {
        "SMC_PYTORCH_PROCESSES_PER_HOST",
        "SMC_PYTORCH_MASTER_PORT",
        "SMC_PYTORCH_RENDEZVOUS_TIMEOUT",
        "RUN_NEURON_PARALLEL_COMPILE",
    }
    assert all(s.owner == "smc-pytorch" and len(s.description) > 20 for s in SETTINGS)


def test_a_bad_value_fails_the_job_before_the_code_runs(smc_job):
    outcome = smc_job(
        code={"train.py": "print('the script ran')\n"},
        entry_point="train.py",
        env={"SMC_PYTORCH_MASTER_PORT": "70000"},
    )
    failure = outcome.assert_failure(2, reason="SMC_PYTORCH_MASTER_PORT is '70000'")
    assert "a whole number from 1 to 65535" in failure
    assert "the script ran" not in outcome.stdout
