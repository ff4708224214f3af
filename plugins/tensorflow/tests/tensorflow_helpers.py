"""Helpers for the TensorFlow adapter's tests: the user scripts they run (jobs run through ``smc_job``)."""

from __future__ import annotations

KERAS_SCRIPT = r"""
import argparse, os
import numpy as np
import tensorflow as tf

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--save-as", default="export")
parser.add_argument("--model_dir")
args, _ = parser.parse_known_args()
model_dir = os.environ["SM_MODEL_DIR"]
with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "seen.txt"), "w") as f:
    f.write(f"{args.model_dir}\n{os.environ.get('TF_CPP_MIN_LOG_LEVEL')}\n{os.environ.get('SM_HP_MODEL_DIR')}\n")
rng = np.random.default_rng(0)
x = rng.random((64, 4), dtype=np.float32)
y = x.sum(axis=1, keepdims=True)
model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.fit(x, y, epochs=args.epochs, batch_size=16, verbose=0)
if args.save_as == "export":
    model.export(os.path.join(model_dir, "000000001"))
else:
    model.save(os.path.join(model_dir, "my_model.keras"))
print("trained", flush=True)
"""

MWMS_SCRIPT = r"""
import argparse, json, os, sys
import numpy as np
import tensorflow as tf

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--fail-host", default="")
parser.add_argument("--keras-fit", type=int, default=0)
args, _ = parser.parse_known_args()
host = os.environ["SM_CURRENT_HOST"]
model_dir = os.environ["SM_MODEL_DIR"]
tf_config = json.loads(os.environ["TF_CONFIG"])
index = tf_config["task"]["index"]
with open(os.path.join(model_dir, f"tf_config-{index}.json"), "w") as f:
    f.write(os.environ["TF_CONFIG"])
strategy = tf.distribute.MultiWorkerMirroredStrategy()
if args.keras_fit:  # the upstream failure under Keras 3 (keras-team/keras#20585)
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensor_slices((tf.ones((32, 4)), tf.ones((32, 1)))).repeat().batch(8)
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    sys.exit(0)
total = strategy.reduce(
    tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(float(index + 1))), axis=None
)
with strategy.scope():
    w = tf.Variable(tf.zeros((4, 1)))
rng = np.random.default_rng(index)  # different data on every worker; the all-reduce keeps w equal

@tf.function
def step(x, y):
    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((tf.matmul(x, w) - y) ** 2)
        grad = tape.gradient(loss, w)
        grad = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, grad)
        w.assign_sub(0.1 * grad)
    strategy.run(replica_step, args=(x, y))

for i in range(args.steps):
    if host == args.fail_host and i == 1:
        raise ValueError(f"boom on {host}")
    x = rng.random((8, 4), dtype=np.float32)
    step(tf.constant(x), tf.constant(x.sum(axis=1, keepdims=True)))
np.save(os.path.join(model_dir, f"weights-{index}.npy"), w.numpy())
with open(os.path.join(model_dir, f"allreduce-{index}.txt"), "w") as f:
    f.write(str(float(total)))
if index == 0:
    module = tf.Module()
    module.w = w
    tf.saved_model.save(module, os.path.join(model_dir, "1"))
print(f"worker {index} done: all-reduce {float(total)}", flush=True)
"""


PS_SCRIPT = r"""
import json, os, socket, time
import tensorflow as tf

host = os.environ["SM_CURRENT_HOST"]
model_dir = os.environ["SM_MODEL_DIR"]
tf_config = json.loads(os.environ["TF_CONFIG"])
with open(os.path.join(model_dir, f"tf_config-{host}.json"), "w") as f:
    f.write(os.environ["TF_CONFIG"])
cluster, task = tf_config["cluster"], tf_config["task"]

def listening(address):
    name, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((name, int(port))) == 0

# TF2's ParameterServerStrategy calls SageMaker's "master" the "chief" (the coordinator).
spec = tf.train.ClusterSpec({"chief": cluster["master"], "worker": cluster["worker"], "ps": cluster["ps"]})
if task["type"] == "worker":  # a TF2 worker serves until the job is done
    server = tf.distribute.Server(spec, job_name="worker", task_index=task["index"], protocol="grpc")
    print(f"worker {task['index']} serving on {host}", flush=True)
    server.join()
else:
    with open(os.path.join(model_dir, "ps-listening.json"), "w") as f:
        json.dump({address: listening(address) for address in cluster["ps"]}, f)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type="chief", task_id=0, rpc_layer="grpc"
    )
    strategy = tf.distribute.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        a = tf.Variable(0.0)
        b = tf.Variable(0.0)

    @tf.function
    def step():
        a.assign_add(1.0)
        b.assign_add(2.0)
        return a.read_value()

    for _ in range(int(os.environ.get("SM_HP_STEPS", "5"))):
        coordinator.schedule(step)
    coordinator.join()
    with open(os.path.join(model_dir, "result.json"), "w") as f:
        json.dump({"a": float(a.numpy()), "b": float(b.numpy()), "devices": [a.device, b.device]}, f)
    print(f"coordinator done: a={a.numpy()} on {a.device}, b={b.numpy()} on {b.device}", flush=True)
"""

PS_LIFECYCLE_SCRIPT = r"""
import json, os, signal, socket, sys, time
import psutil

host = os.environ["SM_CURRENT_HOST"]
action = os.environ.get("SM_HP_ACTION", "")
if host == "algo-2" and action == "kill-ps":
    smc = psutil.Process(os.getppid())
    ps = [p for p in smc.children() if "smc_tensorflow.ps_server" in " ".join(p.cmdline())]
    print(f"killing the parameter server {ps[0].pid}", flush=True)
    ps[0].send_signal(signal.SIGKILL)
    time.sleep(120)
if host == "algo-1":
    time.sleep(float(os.environ.get("SM_HP_MASTER_SECONDS", "0")))
    with socket.socket() as s:
        s.settimeout(2)
        listening = s.connect_ex(("algo-2", 2223)) == 0
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "ps2-listening.json"), "w") as f:
        json.dump(listening, f)
print(f"{host} worker done", flush=True)
"""
