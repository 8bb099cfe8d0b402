"""Server URLs as they may be shown to a person: in errors, logs and `/health`, never with a password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
REDIS_SCHEMES = ("redis", "rediss", "unix")
DATABASE_SCHEMES = ("postgresql", "postgres", "sqlite")


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***` (`redis://:pw@host` -> `redis://:***@host`)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{HIDDEN}@{host}"))


def url_scheme_problem(url: str, schemes: tuple[str, ...], example: str) -> str | None:
    """Why `url` cannot be used (its scheme, before any `+driver`, is not one of `schemes`), or None."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+", 1)[0].lower() in schemes:
        return None
    shown = redact_url(url) or "an empty value"
    return f"{shown!r} is not a URL of the form {example}"
