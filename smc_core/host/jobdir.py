"""The job directory as the runner holds it: checked before anything runs, locked while the job runs.

* :func:`check_job_dir`: on SageMaker the base dir must exist (nothing is created under one that
  does not; off SageMaker smc creates it), ``output/`` must be a writable directory, and the paths
  smc and the user's code write must be of their kind (:func:`check_entry_kinds`: ``output/success``
  a file, ``code/`` a directory ...); else a :class:`ConfigError` (exit 2) naming the path, before
  the user's code runs.
* :func:`job_lock`: one job at a time per job directory. A second ``train`` on a busy job dir fails
  at once with exit 2 saying another job is running there, and changes nothing of the first job's
  (its code, its outcome files). :func:`job_lock_path` is the one place that names the lock file.
* :func:`disk_full`: whether the file system holding the job dir has no room left.
* :func:`create_job_folders`: the folders the contract promises the user's code (``model/``,
  ``output/data/``, ``output/intermediate/``, ``checkpoints/``), made when a job dir lacks them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from smc_core.base.files import open_own_file, write_own_file
from smc_core.base.settings import PLATFORM, SettingsRegistry
from smc_core.errors import ConfigError
from smc_core.job.environment import TrainingEnv
from smc_core.job.paths import JobPaths
from smc_core.job.platforms.detect import detect_platform

__all__ = [
    "check_entry_kinds",
    "check_job_dir",
    "create_job_folders",
    "disk_full",
    "job_lock",
    "job_lock_path",
]


def job_lock_path(paths: JobPaths) -> Path:
    """The file whose lock marks the job dir busy: ``<base>/.smc-job.lock``."""
    return paths.base_dir / ".smc-job.lock"


def check_job_dir(paths: JobPaths, registry: SettingsRegistry) -> None:
    """Check that the job dir exists and that ``output/`` is (or can be made) a writable directory.

    On SageMaker the platform lays the job dir out, so a missing one is a mistyped
    ``SAGEMAKER_BASE_DIR`` and nothing is created under it. Off SageMaker (Kubeflow, Vertex AI:
    see :mod:`smc_core.job.platforms.detect`) smc lays it out itself, so it is created.

    :param registry: the job's settings (``SMC_PLATFORM``) and the environment they are parsed from.

    :raises ConfigError: naming the path and the problem (exit 2).
    """
    base = paths.base_dir
    if not base.exists() and _off_sagemaker(base, registry):
        try:
            base.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(
                f"Cannot create the job directory {base} ({exc.strerror or exc}): set SAGEMAKER_BASE_DIR to "
                "a writable directory (e.g. /tmp/ml), or mount a volume there."
            ) from None
    if not base.is_dir():
        what = "is not a directory" if base.exists() else "does not exist"
        raise ConfigError(
            f"The job directory {base} {what} (SAGEMAKER_BASE_DIR, default /opt/ml). "
            " Check the path: smc creates nothing under a job directory that is not there."
        )
    output = paths.output_dir
    if output.exists() and not output.is_dir():
        raise ConfigError(
            f"{output} is a regular file, but it must be the job's output directory (where success and "
            "failure are written). Remove or rename the file."
        )
    check_entry_kinds(paths)
    try:
        output.mkdir(exist_ok=True)
        probe = output / f".smc-write-check.{os.getpid()}"
        write_own_file(probe, b"")
        probe.unlink()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return  # a full disk: the failure file has its own reserve (see FailureFile)
        raise ConfigError(
            f"The job directory's output directory {output} cannot be written: {exc.strerror or exc}. "
            "Mount the job directory read-write (the platform writes the model and outcome there)."
        ) from None


def check_entry_kinds(paths: JobPaths) -> None:
    """Check that each path of the job dir that smc or the user's code writes is of the kind it must
    be: ``output/success`` and ``output/failure`` files (or absent), ``code/``, ``model/``,
    ``output/data/``, ``output/intermediate/`` and ``checkpoints/`` directories (or absent).

    :raises ConfigError: naming the path, what it is and what it must be (exit 2).
    """
    files = {paths.success_file: "the job's success marker", paths.failure_file: "the job's failure reason"}
    dirs = {
        paths.code_dir: "where the user's code is placed",
        paths.model_dir: "where the job's model is saved",
        paths.output_data_dir: "where the job's other outputs are saved",
        paths.output_intermediate_dir: "what is synced to S3 while the job runs",
        paths.checkpoint_dir: "the job's checkpoints",
    }
    for path, what in files.items():
        if path.is_dir():
            raise ConfigError(
                f"{path} is a directory, but it must be a file ({what}, written by smc at the end). "
                "Remove the directory (an earlier job or the code left it there)."
            )
    for path, what in dirs.items():
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"{path} is a {_kind(path)}, but it must be a directory ({what}). Remove or rename it."
            )


def _kind(path: Path) -> str:
    if path.is_symlink():
        return "symbolic link"
    return "regular file" if path.is_file() else "special file (a pipe, socket or device)"


def create_job_folders(training_env: TrainingEnv) -> None:
    """Make the folders the contract promises the user's code, where the job dir lacks them.

    ``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_OUTPUT_INTERMEDIATE_DIR`` and the checkpoint dir:
    SageMaker lays them out; a job dir made by hand (``train`` on a laptop) may not, and a script
    writing its model would fail with ``FileNotFoundError``. Nothing is made under a job dir that does
    not exist (:func:`check_job_dir` has refused it on SageMaker).

    :raises ConfigError: a folder cannot be made, naming it and the fix (exit 2).
    """
    if not training_env.base_dir.is_dir():
        return
    for folder in (
        training_env.model_dir,
        training_env.output_data_dir,
        training_env.output_intermediate_dir,
        training_env.checkpoint_dir,
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"Cannot create {folder} ({exc.strerror or exc}), which the training code is promised: "
                "make it writable, or mount the job directory read-write."
            ) from None


@contextlib.contextmanager
def job_lock(paths: JobPaths) -> Iterator[None]:
    """Hold the job dir's lock while inside; a job dir that another job holds is a ConfigError.

    :raises ConfigError: another job runs in this job directory (exit 2), or the lock file cannot
        be created there.
    """
    path = job_lock_path(paths)
    try:
        fd = open_own_file(path)  # never through a link someone put there
    except OSError as exc:
        raise ConfigError(
            f"Cannot create the job lock {path}: {exc.strerror or exc}. Mount the job directory read-write."
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise ConfigError(
                f"Another job is running in the job directory {paths.base_dir}{holder}: two jobs cannot "
                "share one job directory (the second would replace the first's code and outcome). "
                "Wait for it to end, or give this job its own directory (SAGEMAKER_BASE_DIR, smc local "
                "--job-dir)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (smc pid {pid})"
    return ""


def _off_sagemaker(base: Path, registry: SettingsRegistry) -> bool:
    """Whether the job runs on another platform than SageMaker (pinned, or recognised)."""
    try:
        pinned = registry.value(PLATFORM)
    except ConfigError:
        return False  # reported with every other bad setting once the job starts
    if pinned:
        return bool(pinned != "sagemaker")

    return detect_platform(base, registry.environ)[0] != "sagemaker"


def disk_full(path: Path, *, below: int = 64 * 1024) -> bool:
    """True when the file system holding ``path`` has less than ``below`` bytes free for users."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < below
