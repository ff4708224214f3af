"""SavedModel conventions: saving what ``train()`` returns, and checking what a script saved.

Function mode (``SMC_FUNCTION_MODE=1``): a model that ``train()`` returns is saved into the model dir
(``SM_MODEL_DIR``, ``/opt/ml/model``) on the master host only::

    model.keras   a Keras model (Keras 3, or tf-keras under TF_USE_LEGACY_KERAS=1), whole:
                  keras.models.load_model("model.keras")
    1/            a SavedModel for serving (TensorFlow Serving, SageMaker's TensorFlow serving
                  containers load <model_dir>/<version>/saved_model.pb): from a Keras model through
                  model.export(), from a tf.Module through tf.saved_model.save();
                  tf.saved_model.load("1")

After every successful run, the master host checks the model dir the way the reference toolkit does
and logs one warning line, with the fix, when TensorFlow Serving would find no model there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from smc_core import UserCodeError, logger

KERAS_FILE = "model.keras"
SERVING_VERSION = "1"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def keras_model_class(obj: Any) -> type | None:
    """The Keras ``Model`` class ``obj`` is an instance of (Keras 3's or tf-keras's), or None.

    Imports nothing: a Keras model can only exist where its Keras is already imported.
    """
    for module in ("keras", "tf_keras"):
        if module in sys.modules:
            model_class = getattr(sys.modules[module], "Model", None)
            if isinstance(model_class, type) and isinstance(obj, model_class):
                return model_class
    return None


def is_tf_module(obj: Any) -> bool:
    """True when ``obj`` is a ``tf.Module`` (without importing TensorFlow if nothing did yet)."""
    if obj is None or "tensorflow" not in sys.modules:
        return False
    import tensorflow as tf

    return isinstance(obj, tf.Module)


def is_saveable(obj: Any) -> bool:
    """True for what :func:`save_model` saves: a Keras model or a ``tf.Module``."""
    return keras_model_class(obj) is not None or is_tf_module(obj)


def save_model(model: Any, model_dir: Path) -> list[Path]:
    """Save a Keras model or ``tf.Module`` into ``model_dir`` (layout in the module docstring).

    :return: what was written (``model.keras`` and ``1/``, or ``1/``).
    :raises UserCodeError: the model cannot be saved, naming the path and what to do.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    export_dir = model_dir / SERVING_VERSION
    name = type(model).__name__
    written: list[Path] = []
    if keras_model_class(model) is not None:
        path = model_dir / KERAS_FILE
        _saving(name, export_dir, lambda: _export_keras(model, export_dir))  # first: it fails if unbuilt
        _saving(name, path, lambda: model.save(str(path)))
        written.append(path)
    else:
        import tensorflow as tf

        _saving(name, export_dir, lambda: tf.saved_model.save(model, str(export_dir)))
    written.append(export_dir)
    logger.info("Saved the returned %s to %s", name, ", ".join(str(p) for p in written))
    return written


def _export_keras(model: Any, export_dir: Path) -> None:
    """A Keras model's serving SavedModel: ``model.export`` (Keras 3, tf-keras >= 2.13)."""
    export = getattr(model, "export", None)
    if export is None:
        import tensorflow as tf

        tf.saved_model.save(model, str(export_dir))
    else:
        export(str(export_dir), verbose=False) if _takes_verbose(export) else export(str(export_dir))


def _takes_verbose(fn: Any) -> bool:
    import inspect

    try:
        return "verbose" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _saving(name: str, path: Path, save: Any) -> None:
    try:
        save()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserCodeError(
            f"train() returned a {name} that could not be saved to {path}: {type(exc).__name__}: {first}. "
            "Build the model before returning it (call it on a batch, or give its first layer an input "
            "shape), or save it yourself into SM_MODEL_DIR and return None."
        ) from exc


def serving_versions(model_dir: Path) -> list[Path]:
    """The SavedModel version directories TensorFlow Serving would load: ``<model_dir>/<digits>/``
    holding ``saved_model.pb`` (any depth above it, as SageMaker's serving container searches)."""
    found = []
    for dirpath, _, filenames in os.walk(model_dir):
        here = Path(dirpath)
        if here.name.isdigit() and any(f in SAVED_MODEL_FILES for f in filenames):
            found.append(here)
    return sorted(found)


def serving_warning(model_dir: Path) -> str | None:
    """One line saying why TensorFlow Serving would find no model in ``model_dir``, with the fix; None
    when a SavedModel version directory is there.

    Three cases, as the reference toolkit checks them: nothing saved at all; SavedModels only in
    directories whose names are not version numbers; files, but no SavedModel.
    """
    model_dir = Path(model_dir)
    if serving_versions(model_dir):
        return None
    fix = (
        f"save one into a numbered directory, e.g. model.export(os.path.join(model_dir, '1')) or "
        "tf.saved_model.save(model, os.path.join(model_dir, '1')), "
        f"where model_dir is SM_MODEL_DIR ({model_dir})"
    )
    files = [Path(d) / f for d, _, names in os.walk(model_dir) for f in names]
    if not files:
        return f"No model saved: the model dir {model_dir} is empty, so the job uploads no model; {fix}."
    unnumbered = sorted({p.parent for p in files if p.name in SAVED_MODEL_FILES})
    if unnumbered:
        where = ", ".join(str(p.relative_to(model_dir)) or "." for p in unnumbered)
        return (
            f"Not servable by TensorFlow Serving: the SavedModel in {model_dir} is under {where}, not a "
            f"numbered version directory (<model_dir>/<digits>/saved_model.pb); {fix}."
        )
    shown = ", ".join(str(p.relative_to(model_dir)) for p in sorted(files)[:5])
    more = " ..." if len(files) > 5 else ""
    return (
        f"Not servable by TensorFlow Serving: {model_dir} holds no SavedModel (found {shown}{more}); "
        f"TensorFlow Serving loads <model_dir>/<digits>/saved_model.pb: {fix}."
    )
