"""smc adapter for Keras 3 (tensorflow, jax or torch backend).

For training scripts: :func:`callbacks` returns the checkpoint callbacks a SageMaker job wants
(``model.fit(..., callbacks=smc_keras.callbacks())``). Importing this package imports no framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["callbacks", "checkpoint_dir"]


def callbacks(directory: str | Path | None = None, **options: Any) -> list[Any]:
    """``BackupAndRestore`` (resumable, saves on SIGTERM) and ``ModelCheckpoint`` into the job's
    checkpoint dir; see :func:`smc_keras.checkpoints.callbacks`."""
    from smc_keras.checkpoints import callbacks as _callbacks

    return _callbacks(directory, **options)


def checkpoint_dir(environ: Any = None) -> Path:
    """The job's checkpoint dir; see :func:`smc_keras.checkpoints.checkpoint_dir`."""
    from smc_keras.checkpoints import checkpoint_dir as _checkpoint_dir

    return _checkpoint_dir(environ)
