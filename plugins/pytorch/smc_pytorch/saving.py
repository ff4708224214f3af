"""Saving the ``nn.Module`` that ``train()`` returns in function mode.

Layout of the model dir (``SM_MODEL_DIR``, ``/opt/ml/model``)::

    model.pth   the module's state_dict (torch.save): load it into the same class with
                model.load_state_dict(torch.load("model.pth"))
    model.pt    TorchScript (torch.jit.script), when the module scripts: torch.jit.load("model.pt")
                needs no Python class; absent (and a log line says why) when scripting fails

A ``DistributedDataParallel`` (or any wrapper with ``.module``) is unwrapped first. Only rank 0
saves: the master host, and within it the process whose ``RANK`` is 0 (when set).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smc_core import TrainingEnv, UserCodeError, logger

STATE_DICT_FILE = "model.pth"
TORCHSCRIPT_FILE = "model.pt"


def is_module(obj: Any) -> bool:
    """True when ``obj`` is a ``torch.nn.Module`` (without importing torch if nothing did yet)."""
    if obj is None or "torch" not in sys.modules:
        return False
    import torch

    return isinstance(obj, torch.nn.Module)


def is_rank_zero(training_env: TrainingEnv, environ: Mapping[str, str] | None = None) -> bool:
    """True in the process that saves: on the master host, and ``RANK`` 0 where torch.distributed runs."""
    environ = os.environ if environ is None else environ
    if not training_env.is_master:
        return False
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return environ.get("RANK", "0") == "0"


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


def save_model(module: Any, model_dir: Path) -> list[Path]:
    """Save ``module`` into ``model_dir`` (layout in this module's docstring); return the files written."""
    import torch

    while hasattr(module, "module") and isinstance(module.module, torch.nn.Module):
        module = module.module  # DistributedDataParallel, DataParallel
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state_path = model_dir / STATE_DICT_FILE
    try:
        _atomic(state_path, lambda p: torch.save(module.state_dict(), p))
    except Exception as exc:
        raise UserCodeError(
            f"train() returned a {type(module).__name__} whose state_dict could not be saved to "
            f"{state_path}: "
            f"{type(exc).__name__}: {exc}. Return a module whose parameters and buffers are tensors, "
            "or save the model yourself into SM_MODEL_DIR and return None."
        ) from exc
    written = [state_path]
    script_path = model_dir / TORCHSCRIPT_FILE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.script is deprecated upstream; it still works
            scripted = torch.jit.script(module)
        _atomic(script_path, lambda p: torch.jit.save(scripted, str(p)))
        written.append(script_path)
    except Exception as exc:
        logger.info(
            "%s does not script (%s: %s): saved %s only.",
            type(module).__name__,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
            STATE_DICT_FILE,
        )
    logger.info("Saved the returned %s to %s", type(module).__name__, ", ".join(str(p) for p in written))
    return written
