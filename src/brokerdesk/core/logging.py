"""Structured JSON logs (structlog) with secrets redacted before anything is written.

``configure()`` (called from ``CoreConfig.ready``; idempotent) routes structlog through the
standard library, and ``json_formatter()`` (named in ``settings.LOGGING``) renders every record
— ours and Django's — as one JSON object per line. ``redact_secrets`` masks the values of
keys that look secret (password, secret, token, api_key, authorization, signature, card
number, cvv, …), ``key=value`` fragments and bearer tokens inside strings, and anything that
looks like a payment card number (13 to 19 digits passing the Luhn check).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)|secret|token|api[_-]?key|authori[sz]ation|signature|cookie|"
    r"session[_-]?id|private[_-]?key|card[_-]?(number|num|no)|"
    r"(?<![a-z])(pass|pan|cvv2?|cvc|pin|otp|iban)(?![a-z])",
    re.IGNORECASE,
)
_INLINE_SECRET = re.compile(
    r"(?P<key>\b[\w-]*(?:password|passwd|secret|token|api[_-]?key|signature)[\w-]*"
    r"[\"']?\s*[=:]\s*[\"']?)(?P<value>[^\s\"'&,;}]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_MAX_DEPTH = 8


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return f"{REDACTED}{digits[-4:]}"
    return match.group(0)


def redact_text(text: str) -> str:
    """Mask inline ``secret=value`` pairs, bearer tokens and card numbers in a string."""
    text = _INLINE_SECRET.sub(lambda m: m.group("key") + REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _CARD.sub(_mask_card, text)


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with secret-looking keys and strings masked (recursively)."""
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED
            if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "")
            else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10**12:
        return redact_text(str(value)) if _CARD.fullmatch(str(value)) else value
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets anywhere in the event."""
    cleaned: MutableMapping[str, Any] = redact(dict(event_dict))
    return dict(cleaned)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def json_formatter() -> logging.Formatter:
    """A logging formatter writing JSON lines with secrets redacted (for ``LOGGING``)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *_shared_processors(),
            structlog.stdlib.ExtraAdder(),
            structlog.stdlib.PositionalArgumentsFormatter(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(default=str),
        ],
    )


_configured = False
_lock = threading.Lock()


def configure() -> None:
    """Configure structlog once per process (later calls do nothing)."""
    global _configured
    with _lock:
        if _configured:
            return
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                *_shared_processors(),
                structlog.processors.StackInfoRenderer(),
                structlog.stdlib.PositionalArgumentsFormatter(),
                redact_secrets,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
        _configured = True
