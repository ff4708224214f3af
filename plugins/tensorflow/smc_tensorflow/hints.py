"""A failing TensorFlow process's output, made readable: TensorFlow's informational log lines dropped,
known upstream failures recognised and explained with their fix."""

from __future__ import annotations

import re

_TF_LOG_NOISE = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "  # absl INFO/WARNING lines from TensorFlow's C++
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$)"
)

KERAS3_MULTI_WORKER = (
    "smc hint: Keras 3's model.fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585): "
    "install tf-keras (TensorFlow's version) and set TF_USE_LEGACY_KERAS=1, or use a custom training loop."
)
KERAS3_SAVE_PATH = (
    "smc hint: Keras 3's model.save writes only .keras/.h5 files: for a SavedModel use model.export(path), "
    "or install tf-keras (TensorFlow's version) and set TF_USE_LEGACY_KERAS=1."
)

HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("Attempt to convert a value (PerReplica", "values.PerReplica'>) to a Tensor"),
        KERAS3_MULTI_WORKER,
    ),
    (("Invalid filepath extension for saving",), KERAS3_SAVE_PATH),
)
"""(texts of which any one appears in the output, the hint) for each known failure."""


def without_log_noise(text: str | None) -> str | None:
    """``text`` without TensorFlow's C++ INFO/WARNING log lines (oneDNN, CUDA stub ...): in a failure
    file they push the traceback out of the 1024 characters the platform shows. Errors are kept."""
    if not text:
        return text
    return "\n".join(line for line in text.splitlines() if not _TF_LOG_NOISE.match(line))


def hints_for(text: str | None) -> list[str]:
    """The hints one of whose texts appears in ``text`` (a failing process's stderr tail)."""
    if not text:
        return []
    return [hint for needles, hint in HINTS if any(needle in text for needle in needles)]


def with_hints(failure: str | None) -> str | None:
    """``failure`` without log noise, with the hints it calls for appended as its last lines (the
    failure file keeps a reason's last lines first, so they stay within the 1024 characters shown)."""
    failure = without_log_noise(failure)
    found = [hint for hint in hints_for(failure) if hint not in (failure or "")]
    if not found:
        return failure
    return (failure or "").rstrip() + "\n" + "\n".join(found)
