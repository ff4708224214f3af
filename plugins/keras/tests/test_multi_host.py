"""Two hosts, each a Linux network namespace running ``train``: Keras on JAX, data parallel across hosts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from keras_helpers import needs

pytestmark = [pytest.mark.netns, needs("jax")]

INTERFACE = "net0"

# The one call a multi-host JAX script makes: keras.distribution.initialize() reads smc's variables.
JAX_DATA_PARALLEL = """
import json, os
import keras, numpy as np

keras.distribution.initialize()
keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
import jax

rank = jax.process_index()
keras.utils.set_random_seed(0)  # the same initial weights on every host
x = np.random.default_rng(rank).random((32, 4)).astype("float32")  # different data per host
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.fit(x, y, epochs=2, batch_size=8, verbose=0)
names = ["KERAS_BACKEND", "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
         "KERAS_DISTRIBUTION_PROCESS_ID"]
with open(os.path.join(os.environ["SM_MODEL_DIR"], f"host-{rank}.json"), "w") as f:
    json.dump({"weights": [np.asarray(w).tolist() for w in model.get_weights()],
               "processes": jax.process_count(), "env": {n: os.environ.get(n) for n in names}}, f)
print(f"process {rank} of {jax.process_count()} done", flush=True)
"""


def test_two_hosts_train_together_on_jax(smc_job, netns_hosts):
    runs = smc_job.on_cluster(
        netns_hosts(2, interface=INTERFACE),
        hyperparameters={
            "sagemaker_keras_jax_distributed_enabled": True,
            "sagemaker_keras_backend": "jax",
        },
        code={"train.py": JAX_DATA_PARALLEL},
        entry_point="train.py",
        env={"SMC_HOST_WAIT_TIMEOUT": "60"},
        timeout=240,
    )
    for run in runs:
        run.assert_success()
    one, two = (
        json.loads((run.model_dir / f"host-{rank}.json").read_text()) for rank, run in enumerate(runs)
    )
    # Different data on each host, identical weights at the end: the gradients were averaged across hosts.
    for w1, w2 in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_array_equal(np.array(w1), np.array(w2))
    assert one["processes"] == two["processes"] == 2
    assert one["env"]["KERAS_DISTRIBUTION_JOB_ADDRESSES"] == "algo-1:7777,algo-2:7777"
    assert two["env"] == {**one["env"], "KERAS_DISTRIBUTION_PROCESS_ID": "1"}
    assert one["env"]["KERAS_DISTRIBUTION_PROCESS_ID"] == "0" and one["env"]["KERAS_BACKEND"] == "jax"
