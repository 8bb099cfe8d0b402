"""The one structlog set-up of every service: JSON off a terminal, readable on one, secrets redacted.

Redaction works on two levels: values of keys that name a secret (password, api_key, token, ...)
are masked wherever they appear in an event, and every secret value registered with
`register_secret` (the loaded settings register theirs) is masked inside any string, including
exception text and lines from other libraries' stdlib loggers, which are routed through the same
processors.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import structlog
from pydantic import BaseModel, SecretStr

REDACTED = "***"
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|authorization|credential)", re.IGNORECASE)
_secrets: set[str] = set()


def register_secret(value: str | SecretStr | None) -> None:
    """Mask this value in every log line from now on (values shorter than 4 characters are ignored)."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if raw and len(raw) >= 4:
        _secrets.add(raw)


def register_settings_secrets(settings: BaseModel) -> None:
    """Register every `SecretStr` of a settings model, and the password of every URL in it (the
    database's, Redis's): none may reach a log line, a stored error or an API answer."""
    for value in _walk(settings):
        register_secret(value)


def _url_password(value: str) -> str | None:
    try:
        return urlsplit(value).password if "://" in value else None
    except ValueError:
        return None


def _walk(model: BaseModel) -> Iterable[SecretStr | str]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield value
        elif isinstance(value, str) and (password := _url_password(value)):
            yield password
            yield unquote(password)  # the URL may carry it percent-encoded; errors show it decoded
        elif isinstance(value, BaseModel):
            yield from _walk(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, SecretStr):
        return REDACTED
    return value


def redact_text(text: str) -> str:
    """The text with every registered secret replaced by `***`: for anything stored or served."""
    scrubbed: str = _scrub(text)
    return scrubbed


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and registered secret values."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and key != "event":
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def _renderer(fmt: str, stream: TextIO) -> Any:
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    if use_console:
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    return structlog.processors.JSONRenderer()


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib root logger to write through the same redacting chain."""
    out = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            _renderer(fmt, out),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request is noise at INFO; their warnings and errors still come through.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
