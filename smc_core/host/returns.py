"""Function mode's return value: a model no loaded plugin saved fails the job, it is never lost silently.

In function mode ``train()``'s return value becomes ``result.model``; an adapter's ``invoke_train``
wrapper saves the types it knows and says so (``model_handled_by``). When the job succeeded, returned
something, and nobody handled it, :func:`check_returned_model` raises a :class:`ConfigError` (exit 2)
naming the type and the adapter that saves it. Returning None is fine.

Types are recognised by the names in the class's MRO (``torch.nn.Module`` is ``Module`` from a
``torch`` module), so no framework is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smc_core.errors import ConfigError

if TYPE_CHECKING:
    from smc_core.launch.result import TrainingResult

SAVERS: tuple[tuple[str, str, str, str], ...] = (
    # (top-level package, class name, what it is, the adapters that save it)
    ("torch", "Module", "a torch.nn.Module", "smc-pytorch"),
    ("keras", "Model", "a Keras model", "smc-keras or smc-tensorflow"),
    ("tf_keras", "Model", "a Keras model", "smc-keras or smc-tensorflow"),
    ("tensorflow", "Module", "a tf.Module", "smc-tensorflow"),
)
"""Known model types and the adapters that save them, checked in this order along the MRO."""


def type_name(value: Any) -> str:
    """``module.QualifiedName`` of ``value``'s class (``torch.nn.modules.linear.Linear``)."""
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def model_saver(value: Any) -> tuple[str, str] | None:
    """(what it is, the adapters that save it) for a known model type, else None."""
    for cls in type(value).__mro__:
        top = (getattr(cls, "__module__", "") or "").split(".")[0]
        for package, name, what, adapters in SAVERS:
            if top == package and cls.__name__ == name:
                return what, adapters
    return None


def check_returned_model(result: TrainingResult) -> None:
    """Raise :class:`ConfigError` when a successful function-mode job returned an object that no
    loaded plugin handled (``result.model`` set, ``result.model_handled_by`` None)."""
    if not result.succeeded or result.model is None or result.model_handled_by is not None:
        return
    function = result.details.get("function") or "train"
    returned = type_name(result.model)
    known = model_saver(result.model)
    if known is not None:
        what, adapters = known
        pins = " or ".join(f"SMC_ADAPTER={name.removeprefix('smc-')}" for name in adapters.split(" or "))
        fix = (
            f"{what}, which {adapters} saves, but no loaded adapter saved it: pip install "
            f"{adapters.split(' or ')[0]} (or pin it: {pins})"
        )
    else:
        fix = "no loaded adapter saves that type"
    raise ConfigError(
        f"{function}() returned a {returned}: {fix}, so it would be lost (the model dir stays as train() "
        "left it). Or save it yourself in train() under model_dir (SM_MODEL_DIR) and return None."
    )
