"""Saving the Keras model that ``train()`` returns in function mode.

Layout of the model dir (``SM_MODEL_DIR``, ``/opt/ml/model``)::

    model.keras   the whole model (architecture, weights, optimizer state): keras.models.load_model(...)
    1/            a serving export (``model.export``, a TensorFlow SavedModel) for TensorFlow Serving,
                  on the tensorflow and jax backends (jax needs tensorflow installed to export);
                  absent on torch, and a log line says why when an export fails

The original design saved ``model_dir/saved_model`` (no extension), which Keras 3 refuses: a
``.keras`` file is Keras 3's format. As in the original design, a user module that defines
``save(model, model_dir)`` saves the model itself instead. Only the master host saves (and, under
torchrun, only ``RANK`` 0).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core import TrainingEnv, UserCodeError, logger

MODEL_FILE = "model.keras"
EXPORT_DIR = "1"
"""The serving export's directory: version 1, as TensorFlow Serving lays out model versions."""
EXPORT_BACKENDS = ("tensorflow", "jax")


def is_keras_model(obj: Any) -> bool:
    """True when ``obj`` is a ``keras.Model`` (without importing keras if nothing did yet)."""
    if obj is None or "keras" not in sys.modules:
        return False
    import keras

    return isinstance(obj, keras.Model)


def is_chief(training_env: TrainingEnv, environ: Mapping[str, str] | None = None) -> bool:
    """True in the process that saves: on the master host, and ``RANK`` 0 where torchrun runs."""
    environ = os.environ if environ is None else environ
    return training_env.is_master and environ.get("RANK", "0") == "0"


def not_a_model_error(obj: Any) -> UserCodeError:
    """The error for a ``train()`` that returned something smc-keras cannot save."""
    return UserCodeError(
        f"train() returned a {type(obj).__module__}.{type(obj).__qualname__}, which smc-keras cannot "
        "save: return a keras.Model (saved as model_dir/model.keras), or None after saving the model "
        "yourself into model_dir, or define save(model, model_dir) in your module.",
        exit_code=2,
    )


def save_model(model: Any, model_dir: Path, backend: str) -> list[Path]:
    """Save ``model`` into ``model_dir`` (layout in this module's docstring); return what was written."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / MODEL_FILE
    try:
        model.save(path)
    except Exception as exc:
        raise UserCodeError(
            f"train() returned a {type(model).__name__} that could not be saved to {path}: "
            f"{type(exc).__name__}: {exc}. Build the model before returning it (call fit, or build it "
            "with an input shape), or save it yourself into model_dir and return None."
        ) from exc
    written = [path]
    if backend in EXPORT_BACKENDS:
        export = model_dir / EXPORT_DIR
        try:
            model.export(str(export), verbose=False)
            written.append(export)
        except Exception as exc:
            logger.warning(
                "The serving export %s failed (%s: %s): saved %s only.",
                export,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                MODEL_FILE,
            )
    else:
        logger.info(
            "The %s backend has no model.export: saved %s only (no %s/).", backend, MODEL_FILE, EXPORT_DIR
        )
    logger.info("Saved the returned %s to %s", type(model).__name__, ", ".join(str(p) for p in written))
    return written
