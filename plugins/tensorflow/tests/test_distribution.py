"""The adapter's plain functions: launch styles, TF_CONFIG, variables, model_dir, hints, the failure relay."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from smc_tensorflow import distribution
from smc_tensorflow.distribution import (
    SETTINGS,
    LaunchStyle,
    launch_style,
    process_variables,
    ps_tf_config,
    tuned_model_dir,
    with_tuning_model_dir,
    worker_tf_config,
)
from smc_tensorflow.hints import with_hints, without_log_noise
from smc_tensorflow.peers import MasterChannel, PeerChannel, failure

from smc_core import ChannelLink, ChannelMaster, Setting, Settings, create_environment, settings_table
from smc_core.testing import make_job_dir

HOSTS = ["algo-1", "algo-2", "algo-3"]
PS_CLUSTER = {
    "master": ["algo-1:2222"],
    "ps": ["algo-1:2223", "algo-2:2223", "algo-3:2223"],
    "worker": ["algo-2:2222", "algo-3:2222"],
}


def env_for(tmp_path, hyperparameters, current_host="algo-1", hosts=HOSTS, environ=None):
    base = make_job_dir(
        tmp_path / current_host,
        hyperparameters=hyperparameters,
        resource_config={"current_host": current_host, "hosts": list(hosts), "network_interface_name": "lo"},
    )
    environ = environ or {}
    return create_environment(base, environ, settings=Settings(SETTINGS, environ))


@pytest.mark.parametrize(
    ("host", "task", "ps_task"),
    [
        ("algo-1", {"index": 0, "type": "master"}, {"index": 0, "type": "ps"}),
        ("algo-2", {"index": 0, "type": "worker"}, {"index": 1, "type": "ps"}),
        ("algo-3", {"index": 1, "type": "worker"}, {"index": 2, "type": "ps"}),
    ],
)
def test_parameter_server_tf_config_is_the_contracts(tmp_path, host, task, ps_task):
    training_env = env_for(tmp_path, {"sagemaker_parameter_server_enabled": True}, host)
    assert launch_style(training_env) is LaunchStyle.PARAMETER_SERVER
    expected = {"cluster": PS_CLUSTER, "environment": "cloud", "task": task}
    assert worker_tf_config(training_env, LaunchStyle.PARAMETER_SERVER) == expected
    assert ps_tf_config(training_env) == {**expected, "task": ps_task}
    variables = process_variables(training_env, LaunchStyle.PARAMETER_SERVER)
    assert json.loads(variables["TF_CONFIG"]) == expected


def test_multi_worker_tf_config_is_the_contracts(tmp_path):
    training_env = env_for(tmp_path, {"sagemaker_multi_worker_mirrored_strategy_enabled": "true"}, "algo-3")
    assert launch_style(training_env) is LaunchStyle.MULTI_WORKER
    assert json.loads(process_variables(training_env, LaunchStyle.MULTI_WORKER)["TF_CONFIG"]) == {
        "cluster": {"worker": ["algo-1:8890", "algo-2:8890", "algo-3:8890"]},
        "environment": "cloud",
        "task": {"index": 2, "type": "worker"},
    }


def test_one_host_parameter_server_and_no_switch_run_one_process(tmp_path):
    assert launch_style(env_for(tmp_path, {})) is LaunchStyle.ONE_PROCESS
    one_host = env_for(tmp_path, {"sagemaker_parameter_server_enabled": True}, hosts=["algo-1"])
    assert launch_style(one_host) is LaunchStyle.ONE_PROCESS
    assert "TF_CONFIG" not in process_variables(one_host, LaunchStyle.ONE_PROCESS)


def test_tensorflow_variables_keep_the_jobs_own(tmp_path):
    training_env = env_for(tmp_path, {"sagemaker_region": "eu-west-1"})
    assert process_variables(training_env, LaunchStyle.ONE_PROCESS) == {
        "TF_CPP_MIN_LOG_LEVEL": "1",
        "S3_USE_HTTPS": "1",
        "S3_REGION": "eu-west-1",
    }
    own = env_for(tmp_path, {}, environ={"TF_CPP_MIN_LOG_LEVEL": "0", "S3_USE_HTTPS": "0"})
    assert process_variables(own, LaunchStyle.ONE_PROCESS) == {}


def test_tuning_model_dir(tmp_path):
    assert tuned_model_dir("s3://b/p/", "tune-1") == "s3://b/p/tune-1/model"
    assert tuned_model_dir("/opt/ml/model", "tune-1") is None
    assert tuned_model_dir("file:///tmp/m", "tune-1") is None
    assert tuned_model_dir(None, "tune-1") is None
    hps = {"model_dir": "s3://b/p", "_tuning_objective_metric": "loss", "lr": 0.1}
    tuned = with_tuning_model_dir(env_for(tmp_path, hps, environ={"TRAINING_JOB_NAME": "tune-2"}))
    assert dict(tuned.hyperparameters) == {"model_dir": "s3://b/p/tune-2/model", "lr": 0.1}
    with pytest.raises(TypeError):
        tuned.hyperparameters["lr"] = 1  # still read-only
    plain = env_for(tmp_path, {"model_dir": "s3://b/p"})
    assert with_tuning_model_dir(plain) is plain


def test_hints_and_log_noise():
    noisy = (
        "I0000 00:00:1795845365.801802   26355 port.cc:153] oneDNN custom operations are on.\n"
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "E0000 00:00:1795844134.449130   31492 cuda_platform.cc:52] failed call to cuInit\n"
        "ValueError: Attempt to convert a value (PerReplica:{\n"
    )
    text = with_hints(noisy)
    assert text.splitlines()[0].startswith("E0000") and "oneDNN" not in text
    assert text.splitlines()[-1].startswith("smc hint: Keras 3's model.fit fails under MultiWorker")
    assert with_hints(text) == text  # once
    assert without_log_noise("ValueError: x") == "ValueError: x" and with_hints(None) is None


def test_settings_are_registered_and_the_readme_table_is_the_registry():
    from smc_tensorflow import plugin

    assert [s.name for s in plugin.register_settings()] == [
        "SMC_TF_PS_WAIT_TIMEOUT",
        "SMC_TF_PEER_WAIT_TIMEOUT",
    ]
    assert all(isinstance(s, Setting) and s.owner == "smc-tensorflow" and s.policy for s in SETTINGS)
    readme = (Path(distribution.__file__).parents[1] / "README.md").read_text()
    match = re.search(r"<!-- settings table:[^\n]*-->\n(.*?)<!-- end of settings table -->", readme, re.S)
    assert match, "plugins/tensorflow/README.md lost its settings-table markers"
    assert match.group(1) == settings_table(SETTINGS), (
        "plugins/tensorflow/README.md's settings table differs from smc_tensorflow.distribution.SETTINGS: "
        "replace it with smc_core.settings_table(SETTINGS)"
    )


def relay(peers):
    """The failure relay over a real job channel on 127.0.0.1: the master's side and each peer's."""
    end = ChannelMaster("algo-1", peers, port=0, address="127.0.0.1", resolve=lambda _: "127.0.0.1").start()
    links = [ChannelLink.connect("127.0.0.1", end.port, peer, timeout=10) for peer in peers]
    return end, MasterChannel(end, peers), [PeerChannel(link) for link in links]


def test_the_relay_passes_the_first_failure_on():
    end, master, (a, b) = relay(["peer-a", "peer-b"])
    try:
        root = a.report_end(failure("peer-a", "worker", 3, "Traceback ...\nValueError: boom"))
        assert root.host == "peer-a" and root.exit_code == 3
        for _ in range(50):
            if b.remote_failure:
                break
            b.wait_changed(0.1)
        assert b.remote_failure == root and master.remote_failure == root
        # a later failure (a worker stopped because of the first) does not replace the root cause
        assert master.report_end(failure("algo-1", "worker", 143, "")) == root
        assert b.report_end(failure("peer-b", "worker", 143, "")) == root
    finally:
        end.close()


def test_the_relay_says_done_and_tells_a_lost_master():
    end, master, (peer,) = relay(["peer-a"])
    assert peer.report_end(None) is None
    master.finish(succeeded=True, timeout=5)  # the peer has ended: returns at once
    for _ in range(50):
        if peer.done:
            break
        peer.wait_changed(0.1)
    assert peer.done and peer.lost is None
    end.close()

    end, master, (peer,) = relay(["peer-a"])
    end.peers["peer-a"].connection.close()  # the master's smc ends without a word
    for _ in range(50):
        if peer.lost:
            break
        peer.wait_changed(0.1)
    assert "lost contact with the master host algo-1" in (peer.lost or "")
    end.close()


def test_a_lost_peer_is_the_jobs_failure():
    end, master, (peer,) = relay(["peer-a"])
    try:
        peer.link.connection.close()  # its smc died: no goodbye, no tf.ended
        for _ in range(50):
            if master.root:
                break
            master.wait_changed(0.1)
        assert master.root is not None and (master.root.host, master.root.process) == ("peer-a", "smc")
        assert "lost contact with the master host algo-1" in master.root.tail
    finally:
        end.close()


def test_plugins_lists_the_adapter_and_its_hooks():
    smc = str(Path(sys.executable).parent / "smc")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_"))}
    done = subprocess.run(
        [smc, "plugins"],
        env={**env, "SMC_ADAPTER": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "adapter: tensorflow (smc-tensorflow" in done.stdout
    for hook in ("register_settings: tensorflow", "claim_switches: tensorflow", "prepare_training:"):
        assert hook in done.stdout
    assert "invoke_train: tensorflow (wrapper)" in done.stdout
    assert "load_environment: tensorflow (wrapper)" in done.stdout


def test_loading_the_adapter_does_not_import_tensorflow():
    code = "import sys, smc_tensorflow.plugin; assert 'tensorflow' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_failure_reason_keeps_the_exception_line_and_names_hosts():
    from smc_tensorflow.launch import failure_reason

    repr_lines = "\n".join(f"  [{i}., {i}., {i}.]," for i in range(200))
    tail = (
        'Traceback (most recent call last):\n  File "train.py", line 3\n'
        f"ValueError: Attempt to convert a value (PerReplica:{{\n{repr_lines}\n"
        "}) with an unsupported type (<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor."
    )
    root = failure("algo-2", "worker", 1, tail)
    reason = failure_reason(root, "algo-1")
    lines = reason.splitlines()
    assert lines[0] == (
        "the worker on host algo-2 failed with exit code 1; algo-1 stopped its own processes because of it:"
    )
    assert lines[1:5] == [
        "Traceback (most recent call last):",
        "  ...",
        "ValueError: Attempt to convert a value (PerReplica:{",
        "[...]",
    ]
    assert lines[-1].startswith("smc hint: Keras 3's model.fit fails under MultiWorkerMirroredStrategy")
    assert len(reason) < 1024 - 200
    also = failure_reason(root, "algo-1", also=failure("algo-1", "worker", 1, ""))
    assert "; the worker on host algo-1 failed with exit code 1 after it:" in also
    assert failure_reason(root, "algo-2").count("algo-2") == 1  # its own host: no "stopped" clause


def test_the_switches_declared_in_the_metadata_are_those_claimed():
    """pyproject.toml's smc.switches entry points (read by smc when this adapter is not loaded) name
    exactly what claim_switches returns."""
    from importlib import metadata

    from smc_tensorflow.plugin import claim_switches

    declared = {
        ep.name for ep in metadata.entry_points(group="smc.switches") if ep.value == "smc_tensorflow.plugin"
    }
    assert declared == set(claim_switches())
