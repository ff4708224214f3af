"""Catalogue cases: the job's configuration and the job directory (exit 2), through ``train``."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import signal
import time
from pathlib import Path

from tests.faults.kit import Kit, Outcome, tmpfs, wait_for

OK = "print('trained')\n"


def hp_json_malformed(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK})
    (base / "input/config/hyperparameters.json").write_text("{not json")
    return kit.train(base)


def hp_json_missing(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK})
    (base / "input/config/hyperparameters.json").unlink()
    done = kit.train(base)
    assert "hyperparameters.json" in done.first_line
    return done


def input_config_missing(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK})
    shutil.rmtree(base / "input" / "config")
    done = kit.train(base)
    assert "input/config" in done.first_line
    return done


def base_dir_missing(kit: Kit) -> Outcome:
    missing = kit.tmp / "no-such-job"
    done = kit.train(missing)
    assert not missing.exists(), "nothing may be created under a base dir that does not exist"
    assert f"The job directory {missing} does not exist" in done.stderr
    return done


def output_is_a_file(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "open('ran', 'w').close()\n"})
    shutil.rmtree(base / "output")
    (base / "output").write_text("not a directory")
    done = kit.train(base)
    assert f"{base / 'output'} is a regular file" in done.stderr
    assert not (base / "code" / "ran").exists()
    assert "Traceback" not in done.stderr
    return done


def job_dir_read_only(kit: Kit) -> Outcome:
    def fill(path):  # type: ignore[no-untyped-def]
        kit.job({"train.py": "open('ran', 'w').close()\n"}, name="ro-src")
        shutil.copytree(kit.tmp / "ro-src", path, dirs_exist_ok=True)

    with tmpfs(kit.tmp / "ro", read_only_after=fill) as base:
        done = kit.train(base)
        assert "cannot be written" in done.stderr and str(base / "output") in done.stderr
        assert "Traceback" not in done.stderr
        return done


def current_host_unknown(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, hosts=("algo-1",), current_host="algo-9")
    return kit.train(base)


def program_not_a_string(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, entry=None, raw_hyperparameters={"sagemaker_program": "5"})
    return kit.train(base)


def program_empty(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, entry="")
    done = kit.train(base)
    assert "'sagemaker_program' is empty" in done.first_line
    return done


def program_missing(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, entry="tran.py")
    done = kit.train(base)
    assert "Did you mean 'train.py'" in done.failure
    return done


def program_is_a_directory(kit: Kit) -> Outcome:
    base = kit.job({"scripts/train.py": OK}, entry="scripts")
    done = kit.train(base)
    assert "Did you mean" not in done.failure
    return done


def program_climbs_out(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, entry="../../x.py")
    (kit.tmp / "x.py").write_text("open('/tmp/should-not-run', 'w')\n")
    return kit.train(base)


def program_absolute(kit: Kit) -> Outcome:
    outside = kit.tmp / "outside.py"
    outside.write_text(f"open({str(kit.tmp / 'outside-ran')!r}, 'w').close()\n")
    base = kit.job({"train.py": OK}, entry=str(outside))
    done = kit.train(base)
    assert not (kit.tmp / "outside-ran").exists()
    return done


def grace_period_negative(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": OK}), env={"SMC_GRACE_PERIOD": "-5"})


def grace_period_not_a_number(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": OK}), env={"SMC_GRACE_PERIOD": "abc"})


def s3_timeout_zero(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": OK}), env={"SMC_S3_TIMEOUT": "0"})


def s3_retries_negative(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": OK}), env={"SMC_S3_RETRIES": "-1"})


def install_timeout_bad(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": OK}), env={"SMC_INSTALL_TIMEOUT": "soon"})


def leftover_grace_negative(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": OK}), env={"SMC_LEFTOVER_GRACE": "-1"})


def existing_code_bogus(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": OK}), env={"SMC_EXISTING_CODE": "overwrite"})


def hyperparameter_10mb(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "open('ran', 'w').close()\n"}, hyperparameters={"blob": "x" * 10_000_000})
    done = kit.train(base)
    assert "'blob'" in done.first_line and "file in an input channel" in done.failure
    assert not (base / "code" / "ran").exists()
    return done


def hyperparameter_over_one_argument(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, hyperparameters={"vocab": "w" * 200_000, "epochs": 1})
    done = kit.train(base)
    assert "'vocab'" in done.first_line and "'epochs'" not in done.first_line
    return done


def unclaimed_switch(kit: Kit) -> Outcome:
    base = kit.job(
        {"train.py": OK}, raw_hyperparameters={"sagemaker_pytorch_xla_multi_worker_enabled": "true"}
    )
    return kit.train(base)


def _model_trainer_job(kit: Kit, distributed: object, **source_code: object) -> Path:
    """A SageMaker SDK v3 ModelTrainer job: the ``code`` and ``sm_drivers`` channels, no sagemaker_program."""
    base = kit.job(None, entry=None, channels=["code", "sm_drivers"])
    (base / "input/data/code/train.py").write_text("open('ran', 'w').close()\n")
    drivers = base / "input/data/sm_drivers"
    code = {"source_dir": "src", "requirements": None, "entry_script": "train.py", **source_code}
    (drivers / "sourcecode.json").write_text(json.dumps(code))
    (drivers / "distributed.json").write_text(json.dumps(distributed))
    return base


def model_trainer_config_unknown(kit: Kit) -> Outcome:
    done = kit.train(_model_trainer_job(kit, {"nodes": 2, "driver": "mine"}))
    assert "distributed.json: holds" in done.first_line
    assert "none of the DistributedConfigs" in done.first_line
    assert not done.exists("input/data/code/ran")
    return done


def model_trainer_requirements_missing(kit: Kit) -> Outcome:
    done = kit.train(_model_trainer_job(kit, {}, requirements="reqs/missing.txt"))
    assert "'requirements' is 'reqs/missing.txt', which is not a file in the code dir" in done.first_line
    assert not done.exists("input/data/code/ran")
    return done


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def model_trainer_launch_unclaimed(kit: Kit) -> Outcome:
    base = _model_trainer_job(kit, {"process_count_per_node": 2, "smp": None})
    done = kit.train(base, env={"SMC_DISABLE_PLUGINS": "pytorch"})
    assert "distributed.json asks for Torchrun (smc launches it as sagemaker_torch_distributed_enabled)" in (
        done.first_line
    )
    if _installed("smc-pytorch"):  # blocked: the message names it from its smc.switches declaration
        assert "smc-pytorch" in done.first_line
        assert "SMC_DISABLE_PLUGINS blocks: unblock it" in done.first_line
    else:  # not installed (the core's suite on other Pythons): the well-known table names what to install
        assert "which no installed plugin declares: pip install smc-pytorch" in done.first_line
    assert not done.exists("input/data/code/ran")
    return done


def channel_dir_missing(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, channels=["train"])
    shutil.rmtree(base / "input" / "data" / "train")
    return kit.train(base)


def second_job_on_busy_dir(kit: Kit) -> Outcome:
    first_code = "import time, pathlib\npathlib.Path('started').touch()\ntime.sleep(4)\nprint('first')\n"
    base = kit.job({"train.py": first_code})
    first = kit.start(base)
    try:
        assert wait_for(lambda: (base / "code" / "started").exists())
        (kit.tmp / "other").mkdir()
        (kit.tmp / "other" / "train.py").write_text("print('second')\n")
        hps = json.loads((base / "input/config/hyperparameters.json").read_text())
        second = kit.train(base, env={"SAGEMAKER_PROGRAM": "train.py"})
        assert "Another job is running in the job directory" in second.stderr
        assert hps == json.loads((base / "input/config/hyperparameters.json").read_text())
        assert (base / "code" / "train.py").read_text() == first_code
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()
    return second


def smc_env_without_job_dir(kit: Kit) -> Outcome:
    done = kit.smc("env", base=kit.tmp / "nowhere")
    assert done.stdout == "" and "does not exist" in done.stderr
    return done


def smc_exec_error_names_the_command(kit: Kit) -> Outcome:
    done = kit.smc("exec", "--", "true", base=kit.tmp / "nowhere")
    assert done.stderr.startswith("smc exec: "), done.stderr
    return done


def local_job_name_climbs_out(kit: Kit) -> Outcome:
    (kit.tmp / "src").mkdir()
    (kit.tmp / "src" / "train.py").write_text(OK)
    done = kit.smc("local", "src", "--entry-point", "train.py", "--job-name", "../../../escaped")
    assert not (kit.tmp / "escaped").exists() and not (kit.tmp.parent / "escaped").exists()
    assert "--job-name" in done.stderr
    return done


def local_job_name_absolute(kit: Kit) -> Outcome:
    (kit.tmp / "src").mkdir()
    (kit.tmp / "src" / "train.py").write_text(OK)
    target = kit.tmp / "abs-job"
    done = kit.smc("local", "src", "--entry-point", "train.py", "--job-name", str(target))
    assert not target.exists()
    return done


def local_job_name_dotdot(kit: Kit) -> Outcome:
    (kit.tmp / "src").mkdir()
    (kit.tmp / "src" / "train.py").write_text(OK)
    return kit.smc("local", "src", "--entry-point", "train.py", "--job-name", "..")


def sigterm_while_loading(kit: Kit) -> Outcome:
    (kit.tmp / "slowload.py").write_text(
        "import time, pathlib\nfrom smc_core import hookimpl\n"
        "@hookimpl(tryfirst=True)\ndef load_environment(base_dir, environ, settings):\n"
        "    (base_dir / 'loading').touch()\n    time.sleep(30)\n"
    )
    base = kit.job({"train.py": "open('ran', 'w').close()\n"})
    done = kit.signal_when(
        base,
        lambda: (base / "loading").exists(),
        env={"SMC_PLUGINS": "slowload", "PYTHONPATH": str(kit.tmp)},
    )
    assert not (base / "code" / "ran").exists()
    assert done.seconds < 20
    return done


def sigint_while_loading(kit: Kit) -> Outcome:
    (kit.tmp / "slowload2.py").write_text(
        "import time\nfrom smc_core import hookimpl\n"
        "@hookimpl(tryfirst=True)\ndef load_environment(base_dir, environ, settings):\n"
        "    (base_dir / 'loading').touch()\n    time.sleep(30)\n"
    )
    base = kit.job({"train.py": OK})
    return kit.signal_when(
        base,
        lambda: (base / "loading").exists(),
        sig=signal.SIGINT,
        env={"SMC_PLUGINS": "slowload2", "PYTHONPATH": str(kit.tmp)},
    )


def plugin_missing(kit: Kit) -> Outcome:
    return kit.train(kit.job({"train.py": OK}), env={"SMC_PLUGINS": "no_such_plugin_module"})


def plugin_crashes(kit: Kit) -> Outcome:
    (kit.tmp / "crashing.py").write_text(
        "from smc_core import hookimpl\n"
        "@hookimpl(tryfirst=True)\ndef fetch_user_code(training_env):\n    raise RuntimeError('plugin bug')\n"
    )
    base = kit.job({"train.py": OK})
    done = kit.train(base, env={"SMC_PLUGINS": "crashing", "PYTHONPATH": str(kit.tmp)})
    assert "RuntimeError: plugin bug" in done.first_line
    return done


def internal_error(kit: Kit) -> Outcome:
    (kit.tmp / "bogus_result.py").write_text(
        "from smc_core import hookimpl\n"
        "@hookimpl(tryfirst=True)\ndef fetch_user_code(training_env):\n    return 42\n"
    )
    base = kit.job({"train.py": OK})
    done = kit.train(base, env={"SMC_PLUGINS": "bogus_result", "PYTHONPATH": str(kit.tmp)})
    assert "Traceback" in done.stderr
    return done


_ = time  # (kept for cases that time themselves)


def mpi_worker_without_sshd(kit: Kit) -> Outcome:
    # A worker of a 2-host MPI job in an image without OpenSSH's server: exit 2 at once, naming the
    # package, not after waiting SMC_MPI_WAIT_TIMEOUT for a master that may never come.
    base = kit.job(
        {"train.py": "open('ran', 'w').close()\n"},
        hyperparameters={"sagemaker_mpi_enabled": True},
        hosts=("algo-1", "algo-2"),
        current_host="algo-2",
    )
    done = kit.train(base, env={"SMC_MPI_SSHD": "/nonexistent/sshd", "SMC_MPI_WAIT_TIMEOUT": "600"})
    assert "apt-get install -y openssh-server" in done.first_line
    assert done.seconds < 30 and not (base / "code" / "ran").exists()
    return done
