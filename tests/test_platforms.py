"""Platform readers: each platform's variables alone select it and map to the TrainingEnv as documented
(docs/platforms/); SMC_PLATFORM wins; a pinned platform without its variables, or an argument given to
`train` on SageMaker, is exit 2; off SageMaker the container's arguments reach the script as given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smc_core.base.settings import SettingsRegistry
from smc_core.host.plugins import get_plugin_manager
from smc_core.host.runner import load_settings, main
from smc_core.job.exports import exported_vars
from smc_core.job.platforms import kubeflow
from smc_core.job.platforms.common import decode_script_args, gcs_path

TRAIN = str(Path(sys.executable).with_name("train"))

TRAINER = {
    "PET_NNODES": "2",
    "PET_NPROC_PER_NODE": "2",
    "PET_NODE_RANK": "1",
    "PET_MASTER_ADDR": "llm-node-0-0.llm",
    "PET_MASTER_PORT": "29500",
}
PYTORCHJOB = {
    "MASTER_ADDR": "llm-master-0",
    "MASTER_PORT": "23456",
    "WORLD_SIZE": "4",
    "RANK": "1",
    "PET_NNODES": "2",
    "PET_NODE_RANK": "1",
    "PET_NPROC_PER_NODE": "2",
}
CLUSTER_SPEC = {
    "cluster": {
        "workerpool0": ["workerpool0-abc-0:2222"],
        "workerpool1": ["workerpool1-abc-0:2222", "workerpool1-abc-1:2222"],
    },
    "environment": "cloud",
    "task": {"type": "workerpool1", "index": 1},
}
TF_CONFIG = {
    "cluster": {"chief": ["llm-chief-0:2222"], "worker": ["llm-worker-0:2222"]},
    "task": {"type": "worker", "index": 0},
}


def load(base: Path, environ: dict[str, str]):
    """What load_environment answers for ``environ`` with the core's default plugins."""
    registry = SettingsRegistry(environ)
    pm = get_plugin_manager(registry=registry, load_entrypoints=False)
    settings = load_settings(pm, registry)
    return pm.hook.load_environment(base_dir=base, environ=environ, settings=settings)


def args(*arguments: str) -> dict[str, str]:
    return {"SMC_SCRIPT_ARGS": json.dumps(list(arguments))}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--epochs", "3", "--lr", "0.1"], {"epochs": 3, "lr": 0.1}),
        (
            ["--epochs=3", "--name", "resnet", "--layers", "[64, 32]"],
            {"epochs": 3, "name": "resnet", "layers": [64, 32]},
        ),
        (["--use-amp", "--shift", "-1", "-b", "8"], {"use-amp": True, "shift": -1, "b": 8}),
        (["data.csv", "--flag"], {"flag": True}),
        (["--opt", '{"name": "adam"}'], {"opt": {"name": "adam"}}),
    ],
)
def test_the_scripts_arguments_decode_into_hyperparameters(arguments, expected):
    assert decode_script_args(arguments) == expected


def test_gs_uris_are_their_cloud_storage_fuse_paths():
    assert gcs_path("gs://b/run/model/", "AIP_MODEL_DIR") == Path("/gcs/b/run/model")
    with pytest.raises(Exception, match="AIP_MODEL_DIR is 's3://b/m'"):
        gcs_path("s3://b/m", "AIP_MODEL_DIR")


def test_trainer_v2_variables_alone_select_kubeflow(tmp_path, monkeypatch):
    workspace = tmp_path / "workspace"
    (workspace / "dataset").mkdir(parents=True)
    monkeypatch.setattr(kubeflow, "WORKSPACE", workspace)
    base = tmp_path / "ml"
    env = load(base, {**TRAINER, **args("--epochs", "2", "--lr=0.5", "extra")})
    assert env.platform == "kubeflow"
    assert env.hosts == ("llm-node-0-0.llm", "llm-node-0-1.llm")
    assert env.current_host == "llm-node-0-1.llm" and env.master_hostname == "llm-node-0-0.llm"
    assert env.current_host_rank == 1 and env.master_port == 29500 and env.processes_per_host == 2
    assert env.distributed_by == "Kubeflow Trainer's PET_* variables"
    assert env.job_name == "llm"
    assert env.hyperparameters == {"epochs": 2, "lr": 0.5}
    assert env.model_dir == workspace / "model" and env.model_dir.is_dir()
    assert dict(env.channel_input_dirs) == {"training": workspace / "dataset"}
    exported = exported_vars(env)
    assert json.loads(exported["SM_USER_ARGS"]) == ["--epochs", "2", "--lr=0.5", "extra"]
    assert exported["SM_HP_EPOCHS"] == "2" and json.loads(exported["SM_HPS"]) == {"epochs": 2, "lr": 0.5}
    assert exported["SM_CHANNEL_TRAINING"] == str(workspace / "dataset")
    for name in ("SM_INPUT_CONFIG_DIR", "SM_OUTPUT_DATA_DIR", "SM_OUTPUT_INTERMEDIATE_DIR", "SM_MODEL_DIR"):
        assert Path(exported[name]).is_dir(), name
    assert (base / "code").is_dir()


def test_trainer_v2_auto_processes_are_the_gpus_else_one(tmp_path):
    env = load(tmp_path, {**TRAINER, "PET_NPROC_PER_NODE": "auto"})
    assert env.processes_per_host == (env.num_gpus or 1)


def test_smc_model_dir_and_channels_replace_the_platforms(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = load(
        tmp_path / "ml",
        {**TRAINER, "SMC_MODEL_DIR": str(tmp_path / "out"), "SMC_CHANNELS": f"train={data}"},
    )
    assert env.model_dir == tmp_path / "out" and env.model_dir.is_dir()
    assert dict(env.channel_input_dirs)["train"] == data


def test_pytorchjob_variables_alone_select_kubeflow(tmp_path):
    env = load(tmp_path, PYTORCHJOB)
    assert env.platform == "kubeflow" and env.current_instance_type == "kubeflow-pytorchjob"
    assert env.hosts == ("llm-master-0", "llm-worker-0") and env.current_host == "llm-worker-0"
    assert env.master_port == 23456 and env.processes_per_host == 2
    assert env.model_dir == tmp_path / "model"


def test_an_older_pytorchjob_counts_pods_in_world_size(tmp_path):
    environ = {"MASTER_ADDR": "llm-master-0", "WORLD_SIZE": "3", "RANK": "2"}
    env = load(tmp_path, environ)
    assert env.hosts == ("llm-master-0", "llm-worker-0", "llm-worker-1")
    assert env.current_host == "llm-worker-1" and env.master_port == 23456 and env.processes_per_host is None


def test_tf_config_alone_selects_kubeflow_tfjob(tmp_path):
    env = load(tmp_path, {"TF_CONFIG": json.dumps(TF_CONFIG)})
    assert env.platform == "kubeflow" and env.current_instance_type == "kubeflow-tfjob"
    assert env.hosts == ("llm-chief-0", "llm-worker-0") and env.current_host == "llm-worker-0"
    assert env.distributed_by is None


def test_trainer_v2_jax_variables_alone_select_kubeflow(tmp_path):
    environ = {
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "0",
        "JAX_COORDINATOR_ADDRESS": "llm-node-0-0.llm:6666",
    }
    env = load(tmp_path, environ)
    assert env.platform == "kubeflow" and env.hosts == ("llm-node-0-0.llm", "llm-node-0-1.llm")
    assert env.current_host == "llm-node-0-0.llm" and env.master_port == 6666 and env.distributed_by is None


def test_vertex_variables_alone_select_vertex(tmp_path):
    model, checkpoints = tmp_path / "model", tmp_path / "ckpt"
    environ = {
        "CLUSTER_SPEC": json.dumps(CLUSTER_SPEC),
        "TF_CONFIG": json.dumps(TF_CONFIG),  # Vertex sets one too: CLUSTER_SPEC decides
        "AIP_MODEL_DIR": str(model),
        "AIP_CHECKPOINT_DIR": str(checkpoints),
        "AIP_TRAINING_DATA_URI": "gs://b/data/training-*",
        "AIP_TEST_DATA_URI": "gs://b/data/test/",
        **args("--epochs", "3"),
    }
    env = load(tmp_path / "ml", environ)
    assert env.platform == "vertex"
    assert env.hosts == ("workerpool0-abc-0", "workerpool1-abc-0", "workerpool1-abc-1")
    assert env.current_host == "workerpool1-abc-1" and env.master_hostname == "workerpool0-abc-0"
    assert env.master_port == 2222 and env.current_instance_group == "workerpool1"
    assert env.distributed_by and "CLUSTER_SPEC" in env.distributed_by
    assert env.model_dir == model and model.is_dir()
    assert env.checkpoint_config == {"LocalPath": str(checkpoints)}
    assert dict(env.channel_input_dirs) == {"training": Path("/gcs/b/data"), "test": Path("/gcs/b/data/test")}
    assert env.hyperparameters == {"epochs": 3}


def test_vertex_parameter_servers_take_no_part_in_the_launch(tmp_path):
    spec = {**CLUSTER_SPEC, "cluster": {**CLUSTER_SPEC["cluster"], "workerpool2": ["workerpool2-abc-0:2222"]}}
    env = load(tmp_path, {"CLUSTER_SPEC": json.dumps(spec)})
    assert env.distribution_hosts == ("workerpool0-abc-0", "workerpool1-abc-0", "workerpool1-abc-1")
    assert "workerpool2-abc-0" in env.hosts


def test_the_sagemaker_job_dir_alone_selects_sagemaker(job_dir):
    base = job_dir(hyperparameters={"epochs": 2})
    env = load(base, {})
    assert env.platform == "sagemaker" and env.hyperparameters == {"epochs": 2} and env.script_args is None


def test_nothing_at_all_is_sagemaker_the_default(tmp_path):
    assert load(tmp_path, {}).platform == "sagemaker"


def test_smc_platform_wins(job_dir):
    base = job_dir(hyperparameters={"epochs": 2})
    assert load(base, {**TRAINER, "SMC_PLATFORM": "kubeflow"}).platform == "kubeflow"
    environ = {**TRAINER, "CLUSTER_SPEC": json.dumps(CLUSTER_SPEC)}
    assert load(base, {**environ, "SMC_PLATFORM": "kubeflow"}).platform == "kubeflow"
    assert load(base.parent / "other", environ).platform == "vertex"


@pytest.mark.parametrize(
    ("platform", "named"),
    [("kubeflow", "PET_NNODES"), ("vertex", "CLUSTER_SPEC"), ("sagemaker", "hyperparameters.json")],
)
def test_a_pinned_platform_without_its_variables_is_exit_2_naming_them(tmp_path, platform, named):
    code = main(
        get_plugin_manager(environ={}, load_entrypoints=False),
        base=tmp_path,
        environ={"SMC_PLATFORM": platform},
    )
    assert code == 2
    assert named in (tmp_path / "output" / "failure").read_text()


def test_a_missing_kubeflow_variable_is_exit_2_naming_it(tmp_path):
    environ = {key: value for key, value in TRAINER.items() if key != "PET_NODE_RANK"}
    code = main(get_plugin_manager(environ={}, load_entrypoints=False), base=tmp_path, environ=environ)
    assert code == 2
    assert "PET_NODE_RANK is not set" in (tmp_path / "output" / "failure").read_text()


SHOW_ARGS = (
    "import json, os, sys\nprint('ARGS', json.dumps(sys.argv[1:]), os.environ['SM_HPS'], flush=True)\n"
)


def run_train(*arguments: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    env.update(environ)
    return subprocess.run(
        [TRAIN, *arguments], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_train_refuses_an_unknown_argument_on_sagemaker(job_dir):
    base = job_dir(code={"train.py": SHOW_ARGS}, entry_point="train.py")
    run = run_train("--bogus", SAGEMAKER_BASE_DIR=str(base))
    assert run.returncode == 2, run.stderr
    failure = (base / "output" / "failure").read_text()
    assert "'--bogus'" in failure and "hyperparameters.json" in failure
    assert "ARGS" not in run.stdout


@pytest.mark.parametrize(
    ("arguments", "script_args"),
    [
        (["--epochs", "3", "--lr", "0.1"], ["--epochs", "3", "--lr", "0.1"]),
        (["--", "-h", "--epochs", "3"], ["-h", "--epochs", "3"]),
    ],
)
def test_off_sagemaker_the_containers_arguments_reach_the_script_as_given(tmp_path, arguments, script_args):
    code = tmp_path / "src"
    code.mkdir()
    (code / "train.py").write_text(SHOW_ARGS)
    spec = {"cluster": {"workerpool0": ["localhost:2222"]}, "task": {"type": "workerpool0", "index": 0}}
    run = run_train(
        *arguments,
        SAGEMAKER_BASE_DIR=str(tmp_path / "ml"),  # /opt/ml on the platform
        CLUSTER_SPEC=json.dumps(spec),
        SAGEMAKER_PROGRAM="train.py",
        SAGEMAKER_SUBMIT_DIRECTORY=str(code),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("ARGS "))
    given, hps = line[len("ARGS ") :].split("] ", 1)
    assert json.loads(given + "]") == script_args
    assert json.loads(hps)["epochs"] == 3
    assert "Platform: Vertex AI (CLUSTER_SPEC set)" in run.stderr + run.stdout


def test_train_help_describes_the_scripts_arguments():
    run = run_train("--help")
    assert run.returncode == 0 and "usage: train [--] [SCRIPT ARGUMENT ...]" in run.stdout


FUNCTION = """
def train(epochs: int, lr: float, model_dir):
    print("TRAIN", epochs * 10, lr, model_dir, flush=True)
"""


def test_function_mode_gets_the_decoded_arguments(tmp_path):
    code = tmp_path / "ml" / "code"  # baked into the image's code dir
    code.mkdir(parents=True)
    (code / "train.py").write_text(FUNCTION)
    spec = {"cluster": {"workerpool0": ["localhost:2222"]}, "task": {"type": "workerpool0", "index": 0}}
    run = run_train(
        "--epochs",
        "3",
        "--lr=0.5",
        SAGEMAKER_BASE_DIR=str(tmp_path / "ml"),
        CLUSTER_SPEC=json.dumps(spec),
        SAGEMAKER_PROGRAM="train.py",
        SMC_FUNCTION_MODE="1",
        SMC_MODEL_DIR=str(tmp_path / "out"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"TRAIN 30 0.5 {tmp_path / 'out'}" in run.stdout
