"""Checkpoints that survive interruption: the callbacks a SageMaker Keras job wants.

::

    import smc_keras
    model.fit(x, y, epochs=10, callbacks=smc_keras.callbacks())

returns two callbacks writing into the job's checkpoint dir (:func:`checkpoint_dir`), which SageMaker
syncs with ``checkpoint_s3_uri`` and restores before a rerun:

* ``BackupAndRestore`` in ``<dir>/backup``: at the end of every epoch it saves the weights and the
  epoch; at the start of ``fit`` it restores them, so a rerun (spot interruption, a stopped job run
  again) resumes at the epoch it stopped in instead of epoch 1. On **SIGTERM** (smc passes the stop
  request on to the training process) it saves the current state at the end of the running batch,
  then ends the process as SIGTERM would (exit code 143): the job stops within one batch, and the
  rerun resumes in the interrupted epoch with the weights it had reached.
* ``ModelCheckpoint`` to ``<dir>/model.keras``: the whole model after every epoch.

Under torchrun every process but ``RANK`` 0 keeps its own backup (``backup-rank<N>``) and writes
no ``model.keras``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_CHECKPOINT_DIR = "/opt/ml/checkpoints"
CHECKPOINT_DIR_VAR = "SMC_KERAS_CHECKPOINT_DIR"
MODEL_FILE = "model.keras"


def checkpoint_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The job's checkpoint dir: ``$SMC_KERAS_CHECKPOINT_DIR`` (set by smc-keras from
    ``checkpointconfig.json``), else ``LocalPath`` in ``$SM_INPUT_CONFIG_DIR/checkpointconfig.json``
    (other toolkits), else ``/opt/ml/checkpoints``."""
    environ = os.environ if environ is None else environ
    if environ.get(CHECKPOINT_DIR_VAR):
        return Path(environ[CHECKPOINT_DIR_VAR])
    config_dir = environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")
    try:
        with open(Path(config_dir) / "checkpointconfig.json") as file:
            local = json.load(file).get("LocalPath")
    except (OSError, ValueError, AttributeError):
        local = None
    return Path(local) if isinstance(local, str) and local else Path(DEFAULT_CHECKPOINT_DIR)


def _say(message: str) -> None:
    """A line in the job's log from the training process (where smc's logging is not set up)."""
    print(f"smc_keras: {message}", file=sys.stderr, flush=True)


def _rank(environ: Mapping[str, str]) -> int:
    try:
        return int(environ.get("RANK", "0"))
    except ValueError:
        return 0


def callbacks(
    directory: str | Path | None = None,
    *,
    model_checkpoint: bool = True,
    environ: Mapping[str, str] | None = None,
) -> list[Any]:
    """The checkpoint callbacks (see the module docstring), for ``model.fit(callbacks=...)``.

    :param directory: where to keep them (default: :func:`checkpoint_dir`).
    :param model_checkpoint: also save ``model.keras`` after every epoch (rank 0 only).
    :param environ: where to read ``RANK`` and the checkpoint dir (default ``os.environ``).
    """
    import keras

    environ = os.environ if environ is None else environ
    root = Path(directory) if directory is not None else checkpoint_dir(environ)
    rank = _rank(environ)
    backup = root / ("backup" if rank == 0 else f"backup-rank{rank}")
    root.mkdir(parents=True, exist_ok=True)
    found = [_interruptible_backup_class()(str(backup))]
    if model_checkpoint and rank == 0:
        found.append(keras.callbacks.ModelCheckpoint(str(root / MODEL_FILE)))
    return found


_CLASS: Any = None


def _interruptible_backup_class() -> Any:
    """``InterruptibleBackupAndRestore``: built on first use, so that importing smc_keras imports no keras."""
    global _CLASS
    if _CLASS is None:
        import keras

        class InterruptibleBackupAndRestore(keras.callbacks.BackupAndRestore):
            """``BackupAndRestore`` that, on SIGTERM, saves at the end of the running batch and then
            ends the process as the signal would have."""

            def __init__(self, backup_dir: str, **kwargs: Any) -> None:
                super().__init__(backup_dir, **kwargs)
                self._signalled: int | None = None
                self._previous: Any = None
                self._installed = False

            def on_train_begin(self, logs: Any = None) -> None:
                super().on_train_begin(logs)
                epoch = getattr(self.model, "_initial_epoch", None)
                if epoch:
                    _say(f"resuming from epoch {epoch + 1}, as saved in {self.backup_dir}.")
                try:
                    self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
                    self._installed = True
                except ValueError:  # not the main thread: the default handling stays
                    _say("fit() runs outside the main thread: SIGTERM ends it without a save.")

            def _on_sigterm(self, signum: int, frame: Any) -> None:
                self._signalled = signum
                _say("SIGTERM received: saving the current state at the end of this batch.")

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                super().on_train_batch_end(batch, logs)
                if self._signalled is not None:
                    self._save_model()
                    _say(
                        f"saved epoch {self._current_epoch + 1} (batch {batch + 1}) to "
                        f"{self.backup_dir}; a rerun resumes from it."
                    )
                    self._exit()

            def on_train_end(self, logs: Any = None) -> None:
                super().on_train_end(logs)
                if self._signalled is not None:
                    self._exit()
                self._restore_handler()

            def _restore_handler(self) -> Any:
                previous = self._previous
                if self._installed:
                    signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
                    self._installed = False
                return previous

            def _exit(self) -> None:
                signum = self._signalled or signal.SIGTERM
                self._signalled = None
                previous = self._restore_handler()
                if callable(previous):  # e.g. smc's function mode: raises SystemExit(143)
                    previous(signum, None)
                    return
                if previous == signal.SIG_IGN:
                    return
                os.kill(os.getpid(), signum)  # the default action: end as the signal would
                raise SystemExit(128 + signum)  # not reached once the signal is delivered

        _CLASS = InterruptibleBackupAndRestore
    return _CLASS
