"""Server URLs as they may be shown to a person: in errors, logs and `/health`, never with a password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
DATABASE_SCHEMES = ("postgresql", "postgres", "sqlite")


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***` (`redis://:pw@host` -> `redis://:***@host`), and
    a `sentinel_password` in its query too."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    if "sentinel_password=" in parts.query:
        query = "&".join(
            f"{name}={HIDDEN}" if name == "sentinel_password" else f"{name}{eq}{value}"
            for name, eq, value in (item.partition("=") for item in parts.query.split("&"))
        )
        parts = parts._replace(query=query)
        url = urlunsplit(parts)
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
