"""No secrets in logs or run folders: mask passwords, tokens and keys before they are written.

Not the paper's method: a guard for the served app (see ``ssn3d.serving``). The access password
lives in the server's environment (``SSN3D_PASSWORD``); a run's log, its saved config and anything
the app shows must never repeat it. ``redact`` cleans values before they are saved,
``RedactingFilter`` cleans log records before a handler writes them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

_SECRET_WORDS = (
    r"passw(?:or)?d|passphrase|secret|token|api[-_]?key|private[-_]?key|credential|authorization|cookie"
)
_SECRET_NAME = re.compile(_SECRET_WORDS, re.I)
_KEY_VALUE = re.compile(
    rf"(?P<key>[\w.-]*(?:{_SECRET_WORDS})[\w.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<q>['\"]?)(?P<value>[^\s'\",;&]+)",
    re.I,
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)
_BEARER = re.compile(r"(?P<kind>bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.I)
MASK = "***"


def is_secret_name(name: str) -> bool:
    """True for keys/variable names that usually hold secrets (``SSN3D_PASSWORD``, ``api_key``...)."""
    return bool(_SECRET_NAME.search(name))


def known_secrets(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Values of secret-named environment variables (4 characters or more), longest first."""
    env = os.environ if env is None else env
    values = {v for k, v in env.items() if is_secret_name(k) and isinstance(v, str) and len(v) >= 4}
    return tuple(sorted(values, key=len, reverse=True))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with secret values masked: the given ``secrets`` wherever they appear, the values of
    ``password=...``/``token: ...`` pairs, passwords in URLs and bearer tokens."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, MASK)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{m['q']}{MASK}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _BEARER.sub(lambda m: f"{m['kind']} {MASK}", text)


def redact(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """A copy of ``value`` (nested dicts/lists/strings) safe to log or save in a run folder.

    Mapping entries under secret-looking keys are masked whole; strings go through ``redact_text``.
    ``secrets`` defaults to ``known_secrets()`` (the current environment's secret values).
    """
    secrets = known_secrets() if secrets is None else tuple(secrets)
    if isinstance(value, Mapping):
        return {
            k: (MASK if isinstance(k, str) and is_secret_name(k) else redact(v, secrets))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v, secrets) for v in value)
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record it sees (attach it to handlers)."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self._secrets = None if secrets is None else tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = known_secrets() if self._secrets is None else self._secrets
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact_text(message, secrets), ()
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, secrets)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach a ``RedactingFilter`` to every handler of ``logger`` (default: the root logger)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
