"""Known upstream failures, recognised in a failing process's output and explained with their fix."""

from __future__ import annotations

KERAS3_MULTI_WORKER = (
    "smc hint: Keras 3's model.fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585): "
    "install tf-keras (TensorFlow's version) and set TF_USE_LEGACY_KERAS=1, or use a custom training loop."
)
KERAS3_SAVE_PATH = (
    "smc hint: Keras 3's model.save writes only .keras/.h5 files: for a SavedModel use model.export(path), "
    "or install tf-keras (TensorFlow's version) and set TF_USE_LEGACY_KERAS=1."
)

HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("Attempt to convert a value (PerReplica",), KERAS3_MULTI_WORKER),
    (("Invalid filepath extension for saving",), KERAS3_SAVE_PATH),
)
"""(texts that all appear in the output, the hint) for each known failure."""


def hints_for(text: str | None) -> list[str]:
    """The hints whose texts all appear in ``text`` (a failing process's stderr tail)."""
    if not text:
        return []
    return [hint for needles, hint in HINTS if all(needle in text for needle in needles)]


def with_hints(failure: str | None) -> str | None:
    """``failure`` with the hints it calls for appended as its last lines (the failure file keeps the
    last lines of a reason first, so they stay within the 1024 characters the platform shows)."""
    found = [hint for hint in hints_for(failure) if hint not in (failure or "")]
    if not found:
        return failure
    return (failure or "").rstrip() + "\n" + "\n".join(found)
