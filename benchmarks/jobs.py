"""The job directories both runners are given, and the data they need (a source tarball, a package index).

Both runners read the same job directory; before every run :func:`reset_job` puts it back in its
starting state (outputs removed, and for the fetch job the code dir emptied).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from smc_core.testing import make_job_dir

# The user script: its first line takes the time; then it reads the runner's memory high-water mark
# (the runner's pid is in a file the harness writes right after spawning it) and writes a result file.
# Both paths come from the environment, which both runners pass on to the user's process.
USER_SCRIPT = """\
import time; first_line = time.time()
import json, os, sys
result = {"first_line": first_line}
pid_file = os.environ["SMC_BENCH_PID_FILE"]
for _ in range(500):
    try:
        pid = int(open(pid_file).read())
        break
    except (OSError, ValueError):
        time.sleep(0.01)
else:
    pid = os.getppid()
status = {}
try:
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        status[key] = value.strip()
except OSError:
    pass
result["runner_pid"] = pid
result["runner_vmhwm_kib"] = int(status.get("VmHWM", "0 kB").split()[0])
result["runner_vmrss_kib"] = int(status.get("VmRSS", "0 kB").split()[0])
result["argv"] = sys.argv[1:]
with open(os.environ["SMC_BENCH_RESULT_FILE"], "w") as f:
    json.dump(result, f)
"""

BUCKET = "smc-bench"
SOURCE_KEY = "job/source/sourcedir.tar.gz"
SMALL_KEY = "job/small/sourcedir.tar.gz"
"""A source archive holding only the user script (start-up with the code from S3)."""

REQUIREMENTS_PRESENT = ["six", "python-dateutil", "jmespath", "urllib3", "psutil"]
"""Requirements already installed in every benchmark environment (both runners depend on them)."""

REQUIREMENTS_NEW = ["attrs", "click", "idna", "tabulate", "toml", "tqdm"]
"""A few small pure-Python packages that no benchmark environment has: installed, timed, removed."""


@dataclass
class Job:
    """A job directory and the files the harness reads back."""

    name: str
    base: Path
    fetch_from_s3: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def result_file(self) -> Path:
        """Where the user script writes its result (``SMC_BENCH_RESULT_FILE``)."""
        return self.base.parent / f"{self.name}.result.json"

    @property
    def pid_file(self) -> Path:
        """Where the harness writes the runner's pid (``SMC_BENCH_PID_FILE``)."""
        return self.base.parent / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        """The runner's output of its latest run."""
        return self.base.parent / f"{self.name}.log"


def make_job(
    root: Path, name: str, *, requirements: list[str] | None = None, s3_uri: str | None = None
) -> Job:
    """Write a job directory ``root/name`` running the benchmark's user script.

    :param requirements: lines of ``requirements.txt`` (none when None).
    :param s3_uri: ``sagemaker_submit_directory``; the code dir is then left empty for the runner to fill.
    """
    job = Job(name, root / name, fetch_from_s3=s3_uri is not None)
    if job.base.exists():
        shutil.rmtree(job.base)
    code = {"train.py": USER_SCRIPT}
    if requirements is not None:
        code["requirements.txt"] = "".join(f"{r}\n" for r in requirements)
    hyperparameters: dict[str, object] = {"epochs": 2, "lr": 0.01}
    raw: dict[str, str] = {
        "sagemaker_region": json.dumps("us-east-1"),
        "sagemaker_job_name": json.dumps(name),
    }
    if s3_uri is not None:
        raw["sagemaker_submit_directory"] = json.dumps(s3_uri)
        code = {}
    make_job_dir(
        job.base,
        hyperparameters=hyperparameters,
        raw_hyperparameters=raw,
        entry_point="train.py",
        channels=["train"],
        code=code,
    )
    return job


def reset_job(job: Job) -> None:
    """Remove what the previous run left: outputs, the result and pid files, and fetched code."""
    for path in (job.result_file, job.pid_file):
        path.unlink(missing_ok=True)
    for rel in ("output", "model"):
        shutil.rmtree(job.base / rel, ignore_errors=True)
        (job.base / rel / ("data" if rel == "output" else "")).mkdir(parents=True, exist_ok=True)
    if job.fetch_from_s3:
        shutil.rmtree(job.base / "code", ignore_errors=True)
        (job.base / "code").mkdir()
        # smc's fetch marker and lock live beside the code dir: the next run must fetch again.
        shutil.rmtree(job.base / ".smc-code", ignore_errors=True)


# --- the 200 MB source tarball ----------------------------------------------------------------------------


def make_sourcedir(path: Path, *, megabytes: int = 200, log: bool = True) -> Path:
    """Write (once) a ``sourcedir.tar.gz`` of about ``megabytes`` MB holding many files.

    Half of the files are Python-like text (compresses well, as code does), the rest binary blobs
    (weights, vocabularies: incompressible); together they make the size. Also holds ``train.py``.
    """
    stamp = path.with_suffix(".stamp")
    want = f"{megabytes} {hashlib.sha256(USER_SCRIPT.encode()).hexdigest()[:12]}"
    if path.exists() and stamp.exists() and stamp.read_text() == want:
        return path
    if log:
        print(f"[setup] writing a {megabytes} MB {path.name} (once)", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    words = [
        "def",
        "return",
        "self",
        "import",
        "tensor",
        "batch",
        "loss",
        "model",
        "for",
        "in",
        "if",
        "else",
        "x",
        "y",
        "optimizer",
        "step",
        "epoch",
        "grad",
        "config",
        "data",
        "(",
        ")",
        ":",
        "=",
        "+",
        ".",
    ]
    target = megabytes * 1_000_000
    written = 0
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        add("train.py", USER_SCRIPT.encode())
        index = 0
        while written < target:
            index += 1
            if index % 2:
                lines = (" ".join(rng.choices(words, k=12)) for _ in range(rng.randint(100, 400)))
                add(f"src/pkg{index % 40:02d}/mod{index:05d}.py", "\n".join(lines).encode())
            else:
                blob = rng.randbytes(rng.randint(150_000, 250_000))
                add(f"assets/part{index % 20:02d}/blob{index:05d}.bin", blob)
                written += len(blob)
    stamp.write_text(want)
    return path


def tar_member_count(path: Path) -> int:
    """How many members ``path`` holds."""
    with tarfile.open(path, "r:gz") as tar:
        return sum(1 for _ in tar)


def differences_from_tarball(tarball: Path, code_dir: Path) -> str | None:
    """None when every file of ``tarball`` is in ``code_dir`` with the same bytes; else what differs."""
    missing, changed = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            target = code_dir / member.name
            if not target.is_file():
                missing.append(member.name)
                continue
            source = tar.extractfile(member)
            assert source is not None
            if hashlib.sha256(source.read()).digest() != hashlib.sha256(target.read_bytes()).digest():
                changed.append(member.name)
    if not missing and not changed:
        return None
    return (
        f"{len(missing)} file(s) missing ({', '.join(missing[:3])}), "
        f"{len(changed)} differ ({', '.join(changed[:3])})"
    )


# --- a package index on loopback ---------------------------------------------------------------------------


def make_package_index(root: Path, packages: list[str], *, log: bool = True) -> Path:
    """Download (once) wheels of ``packages`` and lay them out as a PEP 503 simple index under ``root``."""
    simple = root / "simple"
    stamp = root / "packages.json"
    if simple.exists() and stamp.exists() and json.loads(stamp.read_text()) == packages:
        return root
    if log:
        print(f"[setup] downloading wheels for the install benchmark: {' '.join(packages)}", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    files = root / "files"
    files.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(files),
            *packages,
        ],
        check=True,
    )
    by_project: dict[str, list[str]] = {}
    for wheel in sorted(files.glob("*.whl")):
        project = wheel.name.split("-")[0].lower().replace("_", "-").replace(".", "-")
        by_project.setdefault(project, []).append(wheel.name)
    for project, wheels in by_project.items():
        page = simple / project
        page.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{w}">{w}</a><br>\n' for w in wheels)
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    links = "".join(f'<a href="{p}/">{p}</a><br>\n' for p in sorted(by_project))
    (simple / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    stamp.write_text(json.dumps(packages))
    return root


def make_small_sourcedir(path: Path) -> Path:
    """Write a ``sourcedir.tar.gz`` holding only ``train.py`` (the benchmark's user script)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        data = USER_SCRIPT.encode()
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return path


def tar_manifest(path: Path) -> dict[str, tuple[int, str]]:
    """``{member name: (size, sha256)}`` of the regular files in the tarball ``path``."""
    manifest = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isreg():
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                manifest[member.name] = (len(data), hashlib.sha256(data).hexdigest())
    return manifest


def check_extracted(code_dir: Path, manifest: dict[str, tuple[int, str]], *, digests: bool) -> str | None:
    """None when every file of ``manifest`` is in ``code_dir`` with its size (and, with ``digests``,
    its content: sha256); else what is wrong."""
    for name, (size, digest) in manifest.items():
        path = code_dir / name
        try:
            if path.stat().st_size != size:
                return f"{name}: {path.stat().st_size} bytes, expected {size}"
        except OSError:
            return f"{name} is missing from {code_dir}"
        if (digests or name == "train.py") and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return f"{name}: its content differs from the archive's"
    return None


def gnu_tar_seconds(tarball: Path, dest: Path) -> float | None:
    """Seconds for GNU ``tar xzf`` to extract ``tarball`` into an emptied ``dest`` (None: no tar)."""
    import time

    if not shutil.which("tar"):
        return None
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    started = time.perf_counter()
    subprocess.run(["tar", "xzf", str(tarball), "-C", str(dest)], check=True)
    seconds = time.perf_counter() - started
    shutil.rmtree(dest, ignore_errors=True)
    return seconds
