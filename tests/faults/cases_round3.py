"""Catalogue cases of the third round: secrets, hang-ups and stray signals, odd job dirs, planted
symlinks, sources that cannot be code, wrong answers at the end, input checks."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.faults.kit import Kit, Outcome, pid_gone, wait_for

OK = "print('trained')\n"
READY = "import pathlib, time\npathlib.Path('ready').touch()\ntime.sleep(60)\n"
LONG_SECRET = "s3cr3t-Value-0123456789"
SHORT_SECRET = "pw1"


def _ready(base: Path) -> bool:
    return (base / "code" / "ready").exists()


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert LONG_SECRET not in text, text[-3000:]
        assert f"--db_password {SHORT_SECRET}" not in text and f"={SHORT_SECRET}" not in text, text[-3000:]


# --- secrets --------------------------------------------------------------------------------------
def secret_in_failure_command(kit: Kit) -> Outcome:
    script = "import sys\nprint('ValueError: no', file=sys.stderr)\nsys.exit(3)\n"
    base = kit.job(
        {"train.py": script}, hyperparameters={"api_key": LONG_SECRET, "db_password": SHORT_SECRET}
    )
    done = kit.train(base)
    assert "Command " in done.failure and "--db_password <redacted>" in done.failure, done.failure
    _no_secret(done.failure, done.stderr)
    return done


def secret_in_local_summary(kit: Kit) -> Outcome:
    (kit.tmp / "src").mkdir()
    (kit.tmp / "src" / "train.py").write_text("import sys\nsys.exit(3)\n")
    done = kit.smc(
        "local",
        "src",
        "--entry-point",
        "train.py",
        "--job-name",
        "secret",
        "--hyperparameter",
        f"api_key={LONG_SECRET}",
        "--hyperparameter",
        f"db_password={SHORT_SECRET}",
    )
    done.base = kit.tmp / ".smc" / "jobs" / "secret"
    done.failure = (done.base / "output" / "failure").read_text()
    assert "failure: UserCodeError" in done.stdout, done.stdout
    _no_secret(done.stdout, done.stderr, done.failure)
    return done


# --- hang-ups and stray signals ---------------------------------------------------------------------
def sighup_while_running(kit: Kit) -> Outcome:
    script = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path('got-term').touch(), sys.exit(143)))\n"
        "pathlib.Path('ready').touch()\ntime.sleep(60)\n"
    )
    base = kit.job({"train.py": script})
    done = kit.signal_when(base, lambda: _ready(base), sig=signal.SIGHUP)
    assert (base / "code" / "got-term").exists(), "SIGHUP must reach the script as SIGTERM"
    assert not (base / "output" / ".smc-failure-reserve").exists()
    return done


def sighup_while_loading(kit: Kit) -> Outcome:
    (kit.tmp / "slowload3.py").write_text(
        "import time\nfrom smc_core import hookimpl\n"
        "@hookimpl(tryfirst=True)\ndef load_environment(base_dir, environ, settings):\n"
        "    (base_dir / 'loading').touch()\n    time.sleep(30)\n"
    )
    base = kit.job({"train.py": "open('ran', 'w').close()\n"})
    done = kit.signal_when(
        base,
        lambda: (base / "loading").exists(),
        sig=signal.SIGHUP,
        env={"SMC_PLUGINS": "slowload3", "PYTHONPATH": str(kit.tmp)},
    )
    assert not (base / "code" / "ran").exists()
    assert not (base / "output" / ".smc-failure-reserve").exists()
    return done


def sigquit_while_running(kit: Kit) -> Outcome:
    base = kit.job({"train.py": READY})
    return kit.signal_when(base, lambda: _ready(base), sig=signal.SIGQUIT)


def sigusr1_ignored(kit: Kit) -> Outcome:
    script = (
        "import pathlib, time\npathlib.Path('ready').touch()\n"
        "while not pathlib.Path('go').exists():\n    time.sleep(0.05)\n"
    )
    base = kit.job({"train.py": script})
    process = kit.start(base)
    try:
        assert wait_for(lambda: _ready(base), 60)
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
            process.send_signal(sig)
        time.sleep(0.5)
        assert process.poll() is None, "a stray signal ended train"
        (base / "code" / "go").touch()
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return Outcome(process.returncode, out, err, base, 0.0)


def local_sighup(kit: Kit) -> Outcome:
    (kit.tmp / "src").mkdir()
    (kit.tmp / "src" / "train.py").write_text(
        "import os, pathlib, time\npathlib.Path(os.environ['SM_OUTPUT_DATA_DIR'], 'pid').write_text("
        "str(os.getpid()))\ntime.sleep(60)\n"
    )
    process = kit.start(None, None, "smc", "local", "src", "--entry-point", "train.py", "--job-name", "hup")
    base = kit.tmp / ".smc" / "jobs" / "hup"
    pid_file = base / "output" / "data" / "pid"
    try:
        assert wait_for(pid_file.exists, 60), "the script never started"
        time.sleep(0.2)
        process.send_signal(signal.SIGHUP)  # the terminal smc local ran in was closed
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert pid_gone(int(pid_file.read_text())), "the script outlived smc local"
    return Outcome(process.returncode, out, err, base, 0.0)


# --- job dirs in odd states --------------------------------------------------------------------------
def success_is_a_directory(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "open('ran', 'w').close()\n"})
    (base / "output" / "success").mkdir(parents=True)
    done = kit.train(base)
    assert str(base / "output" / "success") in done.first_line
    assert not (base / "code" / "ran").exists() and "Traceback" not in done.stderr
    return done


def failure_is_a_directory(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "open('ran', 'w').close()\n"})
    (base / "output" / "failure").mkdir(parents=True)
    done = kit.train(base)
    assert f"{base / 'output' / 'failure'} is a directory" in done.stderr
    assert not (base / "code" / "ran").exists() and "Traceback" not in done.stderr
    return done


def code_is_a_file(kit: Kit) -> Outcome:
    base = kit.job(None, entry="train.py")
    (base / "code").rmdir()
    (base / "code").write_text("not a directory")
    done = kit.train(base)
    assert "must be a directory" in done.first_line and "Traceback" not in done.stderr
    return done


def intermediate_is_a_file(kit: Kit) -> Outcome:
    base = kit.job(
        {"train.py": "open('ran', 'w').close()\n"}, hyperparameters={"sagemaker_s3_output": "s3://b/p"}
    )
    (base / "output" / "intermediate").parent.mkdir(parents=True, exist_ok=True)
    (base / "output" / "intermediate").write_text("not a directory")
    done = kit.train(base, env={"TRAINING_JOB_NAME": "j"})
    assert "output/intermediate is a regular file" in done.first_line
    assert not (base / "code" / "ran").exists()
    return done


def local_job_dir_is_a_file(kit: Kit) -> Outcome:
    (kit.tmp / "src").mkdir()
    (kit.tmp / "src" / "train.py").write_text(OK)
    (kit.tmp / "afile").write_text("keep me")
    done = kit.smc("local", "src", "--entry-point", "train.py", "--job-dir", "afile")
    assert "is a file, not a directory" in done.stderr and "Traceback" not in done.stderr
    assert (kit.tmp / "afile").read_text() == "keep me"
    return done


# --- local sources ------------------------------------------------------------------------------------
def source_name_not_utf8(kit: Kit) -> Outcome:
    src = kit.tmp / "src"
    src.mkdir()
    (src / "train.py").write_text("import os\nassert os.path.exists(b'data-\\xff.txt')\n")
    with open(os.path.join(os.fsencode(src), b"data-\xff.txt"), "w") as f:
        f.write("x")
    base = kit.job(None, entry="train.py", source=str(src))
    return kit.train(base)


def source_is_a_named_pipe(kit: Kit) -> Outcome:
    fifo = kit.tmp / "code.fifo"
    os.mkfifo(fifo)
    base = kit.job(None, entry="train.py", source=str(fifo))
    done = kit.train(base, timeout=60)
    assert "named pipe" in done.first_line
    return done


def source_holds_a_named_pipe(kit: Kit) -> Outcome:
    src = kit.tmp / "src"
    src.mkdir()
    (src / "train.py").write_text(OK)
    os.mkfifo(src / "queue")
    base = kit.job(None, entry="train.py", source=str(src))
    done = kit.train(base, timeout=60)
    assert "Not copying" in done.stderr and not (base / "code" / "queue").exists()
    return done


def local_source_is_root(kit: Kit) -> Outcome:
    started = time.monotonic()
    done = kit.smc("local", "/", "--entry-point", "train.py", "--job-name", "root")
    assert "the whole file system" in done.stderr
    assert time.monotonic() - started < 30 and not (kit.tmp / ".smc" / "jobs" / "root").exists()
    return done


# --- wrong answers at the end --------------------------------------------------------------------------
def plugin_calls_sys_exit(kit: Kit) -> Outcome:
    (kit.tmp / "exits.py").write_text(
        "import sys\nfrom smc_core import hookimpl\n"
        "@hookimpl\ndef prepare_training(training_env, user_code):\n    sys.exit(0)\n"
    )
    base = kit.job({"train.py": "open('ran', 'w').close()\n"})
    done = kit.train(base, env={"SMC_PLUGINS": "exits", "PYTHONPATH": str(kit.tmp)})
    assert "sys.exit(0)" in done.first_line and not (base / "code" / "ran").exists()
    assert not (base / "output" / ".smc-failure-reserve").exists()
    return done


def function_leaves_a_thread(kit: Kit) -> Outcome:
    script = (
        "import threading, time\ndef train():\n    threading.Thread(target=time.sleep, args=(600,)).start()\n"
    )
    base = kit.job({"train.py": script})
    done = kit.train(base, env={"SMC_FUNCTION_MODE": "1", "SMC_LEFTOVER_GRACE": "1"}, timeout=60)
    assert "left 1 thread(s) running" in done.stderr
    assert done.seconds < 30 and (base / "output" / "success").exists()
    return done


def function_os_exit(kit: Kit) -> Outcome:
    base = kit.job({"train.py": "import os\ndef train():\n    os._exit(7)\n"})
    done = kit.train(base, env={"SMC_FUNCTION_MODE": "1"})
    assert "os._exit(7)" in done.first_line
    assert not (base / "output" / ".smc-failure-reserve").exists()
    return done


def success_then_exit_1(kit: Kit) -> Outcome:
    script = (
        "import os, sys\nopen(os.path.join(os.environ['SM_OUTPUT_DIR'], 'success'), 'w').close()\n"
        "sys.exit(1)\n"
    )
    base = kit.job({"train.py": script})
    done = kit.train(base)
    assert not (base / "output" / "success").exists(), "a failed job has one outcome"
    return done


def respawns_when_signalled(kit: Kit) -> Outcome:
    child = (
        "import os, signal, sys, time\n"
        "def again(*a):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        open('respawned.pid', 'w').write(str(os.getpid()))\n        time.sleep(300)\n"
        "    os._exit(0)\n"
        "signal.signal(signal.SIGTERM, again)\nopen('child.pid', 'w').write(str(os.getpid()))\n"
        "time.sleep(300)\n"
    )
    script = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}], start_new_session=True)\ntime.sleep(1)\n"
    )
    base = kit.job({"train.py": script})
    done = kit.train(base, env={"SMC_LEFTOVER_GRACE": "2"}, timeout=90)
    code = base / "code"
    assert pid_gone(int((code / "child.pid").read_text()))
    if (code / "respawned.pid").exists():
        assert wait_for(lambda: pid_gone(int((code / "respawned.pid").read_text())), 5), (
            "the re-spawn survived"
        )
    return done


# --- planted symlinks --------------------------------------------------------------------------------
def _victim(kit: Kit) -> Path:
    victim = kit.tmp / "victim.txt"
    victim.write_text("precious")
    return victim


def lock_and_reserve_symlinks(kit: Kit) -> Outcome:
    victim, other = _victim(kit), kit.tmp / "other.txt"
    other.write_text("precious too")
    base = kit.job({"train.py": "import sys\nsys.exit(3)\n"})
    (base / ".smc-job.lock").symlink_to(victim)
    (base / "output").mkdir(exist_ok=True)
    (base / "output" / ".smc-failure-reserve").symlink_to(other)
    (base / "output" / "success").symlink_to(victim)
    done = kit.train(base)
    assert victim.read_text() == "precious" and other.read_text() == "precious too"
    return done


def success_symlink(kit: Kit) -> Outcome:
    victim = _victim(kit)
    script = f"import os\nos.symlink({str(victim)!r}, os.path.join(os.environ['SM_OUTPUT_DIR'], 'success'))\n"
    base = kit.job({"train.py": script})
    done = kit.train(base)
    assert victim.read_text() == "precious" and not (base / "output" / "success").is_symlink()
    return done


def code_dir_symlink_replaced(kit: Kit) -> Outcome:
    project = kit.tmp / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    src = kit.tmp / "src"
    src.mkdir()
    (src / "train.py").write_text(OK)
    base = kit.job(None, entry="train.py", source=str(src))
    (base / "code").rmdir()
    (base / "code").symlink_to(project)
    done = kit.train(base)
    assert (project / "notes.txt").read_text() == "mine" and not (project / "train.py").exists()
    assert not (base / "code").is_symlink() and (base / "code" / "train.py").exists()
    return done


# --- input checks ------------------------------------------------------------------------------------
def channel_name_with_equals(kit: Kit) -> Outcome:
    base = kit.job({"train.py": OK}, channels={"a=b": {"TrainingInputMode": "File"}})
    done = kit.train(base)
    assert "contains '='" in done.first_line
    return done


def entry_begins_with_dash(kit: Kit) -> Outcome:
    base = kit.job({"-m.py": "open('ran', 'w').close()\n"}, entry="-m.py")
    done = kit.train(base)
    assert not (base / "code" / "ran").exists()
    return done


def entry_symlink_outside(kit: Kit) -> Outcome:
    outside = kit.tmp / "outside.py"
    outside.write_text("open('ran', 'w').close()\n")
    base = kit.job({"other.py": OK}, entry="train.py")
    (base / "code" / "train.py").symlink_to(outside)
    done = kit.train(base)
    assert not (base / "code" / "ran").exists()
    return done


# --- pip's configuration through uv --------------------------------------------------------------------
HELPFUL = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "PIP_FIND_LINKS",
)


def _private_index_job(kit: Kit, extra_conf: str = "") -> tuple[Path, dict[str, str | None], Any]:
    from tests.indexes import Index, private_ca, wheel

    ca, context = private_ca(kit.tmp)
    index = Index({"smcp-alpha": [wheel("smcp-alpha", "1.0")]}, context)
    conf = kit.tmp / "pip.conf"
    conf.write_text(f"[global]\nindex-url = {index.url}\ncert = {ca}\n{extra_conf}")
    site = kit.tmp / "site"
    base = kit.job(
        {
            "train.py": "import smcp_alpha\nprint('alpha', smcp_alpha.VERSION)\n",
            "requirements.txt": "smcp-alpha\n",
        }
    )
    env: dict[str, str | None] = {name: None for name in HELPFUL}
    env.update(
        {
            "SMC_INSTALLER": None,
            "PIP_CONFIG_FILE": str(conf),
            "PIP_TARGET": str(site),
            "PYTHONPATH": str(site),
            "UV_CACHE_DIR": str(kit.tmp / "uv-cache"),
        }
    )
    return base, env, index


def pip_conf_cert_through_uv(kit: Kit) -> Outcome:
    base, env, index = _private_index_job(kit)
    try:
        done = kit.train(base, env=env)  # type: ignore[arg-type]
    finally:
        index.close()
    assert "with uv" in done.stderr and "cert (" in done.stderr, done.stderr[-3000:]
    assert "alpha 1.0" in done.stdout
    return done


def pip_conf_option_uv_lacks(kit: Kit) -> Outcome:
    base, env, index = _private_index_job(kit, "prefer-binary = true\n")
    try:
        done = kit.train(base, env=env)  # type: ignore[arg-type]
    finally:
        index.close()
    assert "Installing with pip, not uv" in done.stderr and "prefer-binary" in done.stderr
    assert "alpha 1.0" in done.stdout
    return done


# --- weak: outputs at the end --------------------------------------------------------------------------
def stop_during_final_upload(kit: Kit) -> Outcome:
    from tests.faults.kit import silent_server

    script = (
        "import os, pathlib\n"
        "pathlib.Path(os.environ['SM_OUTPUT_INTERMEDIATE_DIR'], 'metrics.json').write_text('{}')\n"
        "pathlib.Path(os.environ['SM_MODEL_DIR'], 'model.pt').write_text('weights')\n"
        "pathlib.Path('done').touch()\n"
    )
    base = kit.job({"train.py": script}, hyperparameters={"sagemaker_s3_output": "s3://bucket/prefix"})
    with silent_server() as url:
        env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TRAINING_JOB_NAME": "stop-upload",
            "SMC_SYNC_FLUSH_TIMEOUT": "120",
        }
        started: list[float] = []

        def ended() -> bool:
            if (base / "code" / "done").exists() and not started:
                started.append(time.monotonic())
            return bool(started) and time.monotonic() > started[0] + 2

        done = kit.signal_when(base, ended, env=env, timeout=90)
    stopped_after = time.monotonic() - started[0] - 2
    assert stopped_after < 15, f"the stop took {stopped_after:.0f} s"
    assert "the user's code had ended (exit code 0)" in done.first_line, done.first_line
    assert (base / "model" / "model.pt").exists()
    return done


def catastrophic_metric_regex(kit: Kit) -> Outcome:
    (kit.tmp / "src").mkdir()
    (kit.tmp / "src" / "train.py").write_text(
        "for i in range(20):\n    print('a' * 40 + 'b loss=%d' % i, flush=True)\n"
    )
    started = time.monotonic()
    done = kit.smc(
        "local",
        "src",
        "--entry-point",
        "train.py",
        "--job-name",
        "re",
        "--metric",
        "bad=(a+)+$",
        "--metric",
        "loss=loss=([0-9]+)",
    )
    seconds = time.monotonic() - started
    assert seconds < 20, f"{seconds:.1f} s: the regex stalled the job"
    assert "the metric 'bad'" in done.stderr and "no longer matched" in done.stderr
    assert any(line.split()[:2] == ["loss", "20"] for line in done.stdout.splitlines()), done.stdout
    return done
