"""Local mode's checkpoints and outputs in S3, done as the platform does them.

On SageMaker the platform, not the container, keeps ``checkpointconfig.json``'s ``LocalPath`` in step
with its ``S3Uri``: what is under the URI is downloaded before the job starts, and new and changed
files are uploaded while it runs and at its end. ``smc local --checkpoint-s3-uri`` does the same
around ``train``, so that a job's resume logic (a spot interruption, a stopped job rerun) can be tried
on a laptop: run it, stop it, run it again, and the second run starts from the first one's checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

from smc_core.base.log import logger
from smc_core.errors import FetchError
from smc_core.outputs.sync import DirectorySync, SyncReport, start_directory_sync
from smc_core.usercode.s3 import download_prefix, s3_client

__all__ = [
    "download_checkpoints",
    "finish_checkpoint_sync",
    "start_checkpoint_sync",
    "write_checkpoint_config",
]


def write_checkpoint_config(config_dir: Path, s3_uri: str, local_path: Path) -> Path:
    """Write ``checkpointconfig.json`` (``{"LocalPath": ..., "S3Uri": ...}``) into ``config_dir``."""
    path = config_dir / "checkpointconfig.json"
    path.write_text(json.dumps({"LocalPath": str(local_path), "S3Uri": s3_uri}, indent=1))
    return path


def download_checkpoints(s3_uri: str, local_path: Path, *, region: str | None = None) -> list[Path]:
    """Download every object under ``s3_uri`` into ``local_path`` (nothing there yet is fine: a
    first run). Returns the files written."""
    local_path.mkdir(parents=True, exist_ok=True)
    try:
        files = download_prefix(s3_uri, local_path, region=region)
    except FetchError as error:
        if "no objects under this prefix" in error.message:
            logger.info("No checkpoints under %s yet: the job starts from scratch.", s3_uri)
            return []
        raise
    logger.info("Restored %d checkpoint file(s) from %s into %s.", len(files), s3_uri, local_path)
    return files


def start_checkpoint_sync(
    s3_uri: str,
    local_path: Path,
    *,
    restored: list[Path],
    region: str | None = None,
    max_concurrency: int = 4,
    settle: float = 1.0,
) -> DirectorySync:
    """Upload new and changed files under ``local_path`` to ``s3_uri`` while the job runs
    (``restored`` files are uploaded again only once changed)."""
    return start_directory_sync(
        local_path,
        s3_uri,
        lambda: s3_client(region),
        max_concurrency=max_concurrency,
        settle=settle,
        uploaded=restored,
    )


def finish_checkpoint_sync(sync: DirectorySync, timeout: float) -> SyncReport:
    """Upload what is left and report; a failure is printed, it does not change the job's outcome."""
    report = sync.finish(timeout)
    problem = report.problem("Checkpoints", timeout)
    if problem:
        logger.warning("%s", problem)
    return report
