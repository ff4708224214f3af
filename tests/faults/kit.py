"""What the fault catalogue's cases are built from: job dirs, ``train`` runs, archives, bad servers, tmpfs."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smc_core.testing import make_job_dir
from tests.helpers import SMC_ENV_PREFIXES

BIN = Path(sys.executable).parent


@dataclass
class Outcome:
    """How one ``train`` (or ``smc local``) run ended."""

    exit_code: int
    stdout: str
    stderr: str
    base: Path | None
    seconds: float
    failure: str = ""
    """The failure file's text when the run ended ('' when there was none)."""

    def __post_init__(self) -> None:
        path = self.base / "output" / "failure" if self.base is not None else None
        if path is not None and path.is_file():
            self.failure = path.read_text(errors="replace")

    @property
    def first_line(self) -> str:
        """The failure file's first line ('' when there is none)."""
        return self.failure.split("\n", 1)[0]

    def exists(self, relative: str) -> bool:
        """Whether ``relative`` exists under the job dir."""
        assert self.base is not None
        return (self.base / relative).exists()


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment less SM_*/SMC_*/SAGEMAKER_* (and pip config), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*SMC_ENV_PREFIXES, "SAGEMAKER_"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "SMC_DISABLE_PLUGINS": "pytorch", "SMC_INSTALLER": "pip"})
    env.update(extra or {})
    return {k: v for k, v in env.items() if v is not None}


class Kit:
    """One case's workspace: ``tmp`` for files, helpers to build a job and run ``train``."""

    def __init__(self, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.tmp = tmp
        self.request = request
        self.env: dict[str, str] = {}

    def job(
        self,
        code: Mapping[str, str] | None = None,
        *,
        entry: str | None = "train.py",
        hyperparameters: Mapping[str, Any] | None = None,
        source: str | None = None,
        name: str = "job",
        **kwargs: Any,
    ) -> Path:
        """A job dir as the SDK writes it; ``source`` becomes ``sagemaker_submit_directory``."""
        raw = dict(kwargs.pop("raw_hyperparameters", {}))
        if source is not None:
            raw["sagemaker_submit_directory"] = json.dumps(source)
        return make_job_dir(
            self.tmp / name,
            code=code,
            entry_point=entry,
            hyperparameters=hyperparameters,
            raw_hyperparameters=raw,
            **kwargs,
        )

    def s3(self) -> Any:
        """moto's S3 server (the session's)."""
        return self.request.getfixturevalue("s3_server")

    def proxy(self) -> Any:
        """A fault-injecting proxy in front of moto's server."""
        return self.request.getfixturevalue("fault_proxy")

    def put(self, data: bytes, key: str = "job/source/sourcedir.tar.gz") -> str:
        """Put ``data`` into a fresh bucket; its s3:// URI."""
        server = self.s3()
        bucket = server.bucket()
        server.client().put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def train(
        self,
        base: Path | None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        cgroup: Path | None = None,
    ) -> Outcome:
        """Run ``train`` on ``base`` until it ends (inside the cgroup ``cgroup`` when given)."""
        process = self.start(base, env, cgroup=cgroup)
        started = time.monotonic()
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        return Outcome(process.returncode, out, err, base, time.monotonic() - started)

    def start(
        self,
        base: Path | None,
        env: Mapping[str, str] | None = None,
        command: str = "train",
        *args: str,
        cgroup: Path | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``train`` (or another console script) on ``base`` in the background."""
        full = clean_env({**self.env, **(env or {})})
        if base is not None:
            full["SAGEMAKER_BASE_DIR"] = str(base)
        argv = [str(BIN / command), *args]
        if cgroup is not None:  # join the cgroup, then become train
            argv = ["/bin/sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"', "sh", *argv]
        return subprocess.Popen(
            argv,
            env=full,
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
        )

    def smc(self, *args: str, env: Mapping[str, str] | None = None, base: Path | None = None) -> Outcome:
        """Run ``smc ARGS`` in ``tmp``."""
        process = self.start(base, env, "smc", *args)
        out, err = process.communicate(timeout=120)
        return Outcome(process.returncode, out, err, base, 0.0)

    def signal_when(
        self,
        base: Path,
        ready: Callable[[], bool],
        sig: int = signal.SIGTERM,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> Outcome:
        """Start ``train``, send ``sig`` once ``ready()`` holds, and wait for the end."""
        process = self.start(base, env)
        started = time.monotonic()
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    out, err = process.communicate()
                    raise AssertionError(f"never ready (exit {process.returncode}):\n{err[-3000:]}")
                time.sleep(0.05)
            process.send_signal(sig)
            out, err = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        return Outcome(process.returncode, out, err, base, time.monotonic() - started)


def tar_gz(files: Mapping[str, str | bytes]) -> bytes:
    """A .tar.gz holding ``files``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    """A .tar.gz holding one hand-made member (hostile archives)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def zip_bytes(files: Mapping[str, str]) -> bytes:
    """A .zip holding ``files``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def gz(data: bytes) -> bytes:
    """``data`` gzip-compressed."""
    return gzip.compress(data)


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def tmpfs(
    path: Path, size: str = "4m", *, read_only_after: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """A tmpfs mounted on ``path`` (as root; the case is skipped elsewhere). With
    ``read_only_after``, that function fills it, then it is remounted read-only."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (a small or read-only file system)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        if read_only_after is not None:
            read_only_after(path)
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (or is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    """Poll ``predicate`` until true or ``timeout``; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
