"""How error messages show the values they complain about: quoted, typed, with the closest name.

Shared by the readers of the job's configuration so that every message reads the same way:
"hyperparameters.json: 'epochs' is "ten" (a string), expected a number".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["did_you_mean", "quoted", "summary_line", "type_name"]


def quoted(value: Any) -> str:
    """A value as the error messages quote it: its JSON text, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def type_name(value: Any) -> str:
    """The JSON type of ``value`` in words: "an object", "a list", "a string", "a number" ..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the choice closest to ``name``, else ``""``."""
    import difflib  # only on the error path: every job's start imports this module

    match = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)|[A-Z]\w*Error)\b.*")


def summary_line(stderr_tail: str | None) -> str | None:
    """The line that says best what went wrong: the last exception line of a traceback
    (``ValueError: loss is NaN``), else the last non-empty line; None for no output."""
    lines = [line.strip() for line in (stderr_tail or "").splitlines() if line.strip()]
    if not lines:
        return None
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line
    return lines[-1]
