"""Which Keras backend a job runs on: tensorflow, jax or torch.

The choice, in order: the framework parameter ``sagemaker_keras_backend`` (a reserved ``sagemaker_``
key: it never reaches the script's arguments or ``SM_HPS``), else ``KERAS_BACKEND`` in the job's
environment, else the first installed of tensorflow, jax, torch. It reaches the user's processes as
``KERAS_BACKEND``. Nothing here imports a framework: installed means importable
(:func:`importlib.util.find_spec`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from smc_core import ConfigError, Setting, TrainingEnv

BACKENDS = ("tensorflow", "jax", "torch")
"""The Keras 3 backends smc-keras runs, in the order of the default choice."""

BACKEND_KEY = "sagemaker_keras_backend"
"""The framework parameter (hyperparameter) that names the backend."""

KERAS_BACKEND = Setting.choice(
    "KERAS_BACKEND",
    BACKENDS,
    None,
    "the Keras backend when the job's sagemaker_keras_backend does not name one "
    "(default: the first installed of tensorflow, jax, torch)",
    owner="smc-keras",
)

INSTALL_HINTS = {
    "tensorflow": "pip install tensorflow (CPU only: tensorflow-cpu)",
    "jax": 'pip install jax (NVIDIA GPUs: pip install "jax[cuda12]")',
    "torch": "pip install torch (CPU only: pip install torch --index-url https://download.pytorch.org/whl/cpu)",
}
"""What to install for each backend, for error messages."""


@dataclass(frozen=True)
class BackendChoice:
    """The backend a job runs on, and what chose it (for the log line)."""

    name: str
    """``tensorflow``, ``jax`` or ``torch``."""
    source: str
    """Why: ``sagemaker_keras_backend``, ``KERAS_BACKEND`` or ``first installed``."""


def is_installed(backend: str, find_spec: Callable[[str], object] = importlib.util.find_spec) -> bool:
    """True when the backend's package is importable (found, not imported)."""
    try:
        return find_spec(backend) is not None
    except (ImportError, ValueError):
        return False


def choose_backend(
    training_env: TrainingEnv, find_spec: Callable[[str], object] = importlib.util.find_spec
) -> BackendChoice:
    """The job's backend (see the module docstring).

    :raises ConfigError: the named backend is not one of :data:`BACKENDS`, is not installed, or no
        backend is installed at all; the message says what to install.
    """
    named = training_env.additional_framework_parameters.get(BACKEND_KEY)
    if named not in (None, ""):
        if named not in BACKENDS:
            raise ConfigError(
                f"hyperparameters.json: {BACKEND_KEY!r} is {named!r}, which is not a Keras backend smc "
                f"runs: use one of {', '.join(BACKENDS)}."
            )
        choice = BackendChoice(str(named), BACKEND_KEY)
    elif training_env.settings[KERAS_BACKEND]:
        choice = BackendChoice(training_env.settings[KERAS_BACKEND], "KERAS_BACKEND")
    else:
        found = next((name for name in BACKENDS if is_installed(name, find_spec)), None)
        if found is None:
            raise ConfigError(
                "Keras needs a backend and none is installed (looked for tensorflow, jax, torch): "
                + "; or ".join(INSTALL_HINTS.values())
                + "."
            )
        return BackendChoice(found, "first installed")
    if not is_installed(choice.name, find_spec):
        where = (
            f"hyperparameters.json: {BACKEND_KEY!r}"
            if choice.source == BACKEND_KEY
            else "The environment variable KERAS_BACKEND"
        )
        raise ConfigError(
            f"{where} is {choice.name!r}, but {choice.name} is not installed in this image: "
            f"{INSTALL_HINTS[choice.name]}, or name an installed backend."
        )
    return choice
