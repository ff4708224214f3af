"""Secrets out of everything smc writes: one redaction for the log, the failure file and summaries.

A value is secret when its name looks secret (:data:`SECRET_NAME`: ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, any ``...PASSWORD``, ``...CREDENTIAL...``, ``...KEY...``, a hyperparameter
``api_key``). :func:`redact` replaces it with :data:`REDACTED` wherever smc writes it:

* by position, whatever its length, where the text shows it beside its name: an option and its value
  (``--api_key abc``, ``--api_key=abc``, ``'--api_key', 'abc'`` in a list), an assignment
  (``SM_HP_API_KEY=abc``), a JSON member (``"api_key": "abc"``), and the password of a URL
  (``https://user:pw@host``);
* anywhere else, as it is and as it appears inside JSON, for the values of at least
  :data:`MIN_SCRUB` characters that :func:`remember_secrets` was told about (shorter ones, such as
  ``abc``, are too common to scrub from free text: they are redacted where their name stands beside
  them).

Every writer routes through :func:`redact`: the logger's formatter (:mod:`smc_core.base.log`), the
failure file (:class:`smc_core.host.reporting.FailureFile`), ``smc local``'s summary.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Collection, Iterable, Mapping

__all__ = [
    "MIN_SCRUB",
    "REDACTED",
    "SECRET_NAME",
    "forget_secrets",
    "is_secret_name",
    "known_secrets",
    "redact",
    "remember_secrets",
    "secret_values",
]

_WORDS = r"SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|KEY"
SECRET_NAME = re.compile(_WORDS, re.IGNORECASE)
"""A name that matches holds a secret value."""
REDACTED = "<redacted>"
MIN_SCRUB = 6
"""Shorter secret values are redacted only where their name stands beside them."""

_NAME = rf"[\w.-]*(?:{_WORDS})[\w.-]*"
_QUOTED_VALUE = r"'[^'\n]*'|\"(?:[^\"\\\n]|\\.)*\""
_PATTERNS = (
    # a JSON member or Python dict item: "api_key": "abc" / 'api_key': 12
    re.compile(
        rf"""(?P<head>(?P<q>["']){_NAME}(?P=q)\s*:\s*)(?P<value>{_QUOTED_VALUE}|[^\s,}}\]]+)""",
        re.IGNORECASE,
    ),
    # an option and its value as list items: "--api_key", "abc" / '--api_key', 'abc'
    re.compile(rf"""(?P<head>(?P<q>["'])--?{_NAME}(?P=q)\s*,\s*)(?P<value>{_QUOTED_VALUE})""", re.IGNORECASE),
    # an option and its value on a command line: --api_key abc / --api_key=abc / --api_key 'a b'
    re.compile(
        rf"""(?P<head>(?<![\w-])--?{_NAME}(?:=|[ \t]+))(?P<value>{_QUOTED_VALUE}|(?!-)[^\s'"]+)""",
        re.IGNORECASE,
    ),
    # an assignment: SM_HP_API_KEY=abc (a name longer than the word alone: KEY=VALUE in a usage
    # message, say, is no secret)
    re.compile(
        rf"""(?P<head>(?<![\w.-])(?=[\w.-]*(?:{_WORDS}))(?!(?:{_WORDS})=)[\w.-]+=)(?P<value>{_QUOTED_VALUE}|[^\s'",]+)""",
        re.IGNORECASE,
    ),
    # a URL's password: https://user:pw@host
    re.compile(r"""(?P<head>\b[a-z][a-z0-9+.-]*://[^/\s:@'"]+:)(?P<value>[^@\s/'"]+)(?=@)""", re.IGNORECASE),
)

_lock = threading.Lock()
_known: set[str] = set()


def is_secret_name(name: str) -> bool:
    """Whether a variable, hyperparameter or option named ``name`` holds a secret."""
    return bool(SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str]) -> set[str]:
    """The values of ``environ``'s secret-named entries that are long enough to scrub from any text."""
    return {v for n, v in environ.items() if is_secret_name(n) and len(v) >= MIN_SCRUB}


def remember_secrets(values: Iterable[str] | Mapping[str, object]) -> None:
    """Add secret values for :func:`redact` to scrub from everything this process writes from now on.

    :param values: the values themselves, or a mapping (an environment, hyperparameters) whose
        secret-named entries are taken (non-string values as their JSON text).
    """
    if isinstance(values, Mapping):
        values = [
            v if isinstance(v, str) else json.dumps(v) for n, v in values.items() if is_secret_name(str(n))
        ]
    with _lock:
        _known.update(v for v in values if len(v) >= MIN_SCRUB)


def forget_secrets() -> None:
    """Forget what :func:`remember_secrets` was told (a new job in the same process)."""
    with _lock:
        _known.clear()


def known_secrets() -> frozenset[str]:
    """The values :func:`remember_secrets` was told about."""
    with _lock:
        return frozenset(_known)


def _redact_match(match: re.Match[str]) -> str:
    value = match.group("value")
    if value == REDACTED or value.strip("'\"") == REDACTED:
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') and len(value) > 1 and value[-1] == value[0] else ""
    return f"{match.group('head')}{quote}{REDACTED}{quote}"


def redact(text: str, secrets: Collection[str] = ()) -> str:
    """``text`` with every secret replaced by :data:`REDACTED` (see the module docstring).

    :param secrets: values to scrub besides those :func:`remember_secrets` was told about.
    """
    if not text:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(_redact_match, text)
    values = {s for s in (*secrets, *known_secrets()) if len(s) >= MIN_SCRUB}
    forms = {form for value in values for form in (value, json.dumps(value)[1:-1])}
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= MIN_SCRUB:
            text = text.replace(form, REDACTED)
    return text
