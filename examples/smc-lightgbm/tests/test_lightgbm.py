"""Real LightGBM jobs through ``train`` with smc-lightgbm pinned: one host, two ranks, two hosts."""

import socket

import pytest
from smc_lightgbm.plugin import MODEL_FILE, SWITCH

from smc_core.testing import free_port

# A script as a LightGBM user writes it: argparse that knows only its own options, its part of the
# data by rank, LightGBM's network parameters from the adapter.
TRAIN_PY = """
import argparse, os
import lightgbm as lgb
import numpy as np
from smc_lightgbm import network_params, rank

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=5)
args = parser.parse_args()
if str(rank()) == os.environ.get("FAIL_RANK"):
    raise SystemExit(f"rank {rank()} gives up")
rng = np.random.default_rng(rank())
X = rng.normal(size=(400, 4))
y = X @ np.array([1.0, 2.0, 3.0, 4.0])
params = {"objective": "regression", "verbose": -1, "num_threads": 1, **network_params()}
booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=args.rounds)
booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], f"model-{rank()}.txt"))
print("rank", rank(), "of", params.get("num_machines", 1), "trained", booster.num_trees(), "trees")
"""


def two_free_ports() -> int:
    """A port that is free with the one after it (two ranks on this host listen on both)."""
    while True:
        port = free_port()
        try:
            with socket.create_server(("127.0.0.1", port + 1)):
                return port
        except OSError:
            continue


def trees(model_file) -> str:
    """The model's trees, without the parameters each rank was given (its own listen port)."""
    return model_file.read_text().split("\nparameters:")[0]


def test_without_the_switch_lightgbm_trains_alone(smc_job):
    outcome = smc_job(code={"train.py": TRAIN_PY}, entry_point="train.py", hyperparameters={"rounds": 3})
    outcome.assert_success()
    assert "rank 0 of 1 trained 3 trees" in outcome.stdout


def test_two_ranks_on_one_host_train_one_model(smc_job):
    # algo-1 need not resolve here; the time-out is the adapter's hyperparameter, never the script's
    outcome = smc_job(
        code={"train.py": TRAIN_PY},
        entry_point="train.py",
        hyperparameters={SWITCH: True, "rounds": 4, "lightgbm_time_out": 1},
        env={"SMC_LIGHTGBM_PROCESSES_PER_HOST": "2", "SMC_LIGHTGBM_PORT": str(two_free_ports())},
    )
    outcome.assert_success()
    assert "[algo-1 rank 1]: rank 1 of 2 trained 4 trees" in outcome.stdout
    # data-parallel: one model, trained on both ranks' data
    assert trees(outcome.model_dir / "model-0.txt") == trees(outcome.model_dir / "model-1.txt")


def test_the_rank_that_failed_is_named_not_the_one_left_waiting(smc_job):
    outcome = smc_job(
        code={"train.py": TRAIN_PY},
        entry_point="train.py",
        hyperparameters={SWITCH: True},
        env={
            "SMC_LIGHTGBM_PROCESSES_PER_HOST": "2",
            "SMC_LIGHTGBM_PORT": str(two_free_ports()),
            "FAIL_RANK": "1",
        },
    )
    failure = outcome.assert_failure(1, reason="rank 1 on host algo-1 failed with exit code 1")
    assert "rank 1 gives up" in failure


def test_a_bad_time_out_fails_at_start(smc_job):
    outcome = smc_job(
        code={"train.py": TRAIN_PY},
        entry_point="train.py",
        hyperparameters={SWITCH: True, "lightgbm_time_out": "soon"},
    )
    outcome.assert_failure(2, reason="'lightgbm_time_out' is 'soon'")


def test_function_mode_saves_the_returned_booster(smc_job):
    fit = (
        "import lightgbm as lgb, numpy as np\n"
        "def train(rounds):\n"
        "    X = np.arange(200.0).reshape(100, 2)\n"
        "    return lgb.train({'verbose': -1}, lgb.Dataset(X, X.sum(axis=1)), num_boost_round=rounds)\n"
    )
    outcome = smc_job(
        code={"fit.py": fit},
        entry_point="fit.py",
        hyperparameters={"rounds": 2},
        env={"SMC_FUNCTION_MODE": "1"},
    )
    outcome.assert_success()
    assert "Tree=1" in (outcome.model_dir / MODEL_FILE).read_text()


@pytest.mark.netns
def test_two_hosts_train_one_model(smc_job, netns_hosts):
    cluster = netns_hosts(2, interface="net0")
    outcomes = smc_job.on_cluster(
        cluster, code={"train.py": TRAIN_PY}, entry_point="train.py", hyperparameters={SWITCH: True}
    )
    for outcome in outcomes:
        outcome.assert_success()
    assert "rank 1 of 2 trained 5 trees" in outcomes[1].logs
    assert (outcomes[0].model_dir / "model-0.txt").read_text() == (
        outcomes[1].model_dir / "model-1.txt"
    ).read_text()
