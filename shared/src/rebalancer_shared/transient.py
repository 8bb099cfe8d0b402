"""Transient or permanent: the one answer every service gives to "may this error pass if we wait?".

Transient means a server is unreachable, restarting, overloaded, out of memory or failing over: the
same request may succeed later, so it is retried (the event broker holds the trigger and writes it
again, the processor retries the event, the management API answers 503). Everything else is
permanent: a bug, bad data or a server that refuses us, which retrying cannot fix.

Transient:
- Redis: `ConnectionError` (with `BusyLoadingError`, LOADING), `TimeoutError`, and the replies of a
  busy server (`REDIS_BUSY_REPLIES`: OOM, READONLY, MISCONF, LOADING, MASTERDOWN, TRYAGAIN,
  CLUSTERDOWN, NOREPLICAS), whichever `ResponseError` class redis-py gives them;
- SQLAlchemy: `OperationalError`, `InterfaceError`, `DisconnectionError`, `TimeoutError` (no pooled
  connection free in time);
- sockets: `OSError`, so `TimeoutError` and `ConnectionError` (refused, reset, unreachable);
- HTTP (httpx): `TransportError` (timeouts, connect and read errors) and `HTTPStatusError` with a
  5xx or 429 status;
- our own `ServerUnavailableError`.

Permanent although a subclass of the above: refused credentials (redis-py's `AuthenticationError`
and `AuthorizationError`, our `ServerRefusedError`), an HTTP request we built wrong
(`UnsupportedProtocol`, `LocalProtocolError`) and file-system errors (a missing file stays missing).
"""

from __future__ import annotations

import httpx
import redis.exceptions
import sqlalchemy.exc
from tenacity import retry_if_exception

from rebalancer_shared.errors import ServerRefusedError, ServerUnavailableError

# Error codes of a Redis reply that mean "busy now", not "wrong request": out of memory under
# `maxmemory`, a replica or a failover, a failed snapshot (`stop-writes-on-bgsave-error`), loading
# its data set, a cluster resharding or without a master, too few replicas for `min-replicas`.
REDIS_BUSY_REPLIES = (
    "OOM",
    "READONLY",
    "MISCONF",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOREPLICAS",
)
# redis-py strips the code of the replies it knows from the message and raises these classes.
_BUSY_REPLY_TYPES: tuple[type[BaseException], ...] = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # and MasterDownError
)

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
    httpx.TransportError,
    OSError,
    ServerUnavailableError,
)
# Checked first: subclasses of the transient types that waiting does not fix.
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
    ServerRefusedError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500


def is_transient(exc: BaseException) -> bool:
    """True when the error may pass if the same request is made again later; see the module doc."""
    if isinstance(exc, _PERMANENT_TYPES):
        return False
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, redis.exceptions.ResponseError):
        return _is_busy_reply(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        return is_transient_http_status(exc.response.status_code)
    return False


def is_transient_http_status(status_code: int) -> bool:
    """True for an HTTP status that asks to come back later: any 5xx, and 429 Too Many Requests."""
    return status_code >= HTTP_SERVER_ERROR or status_code == HTTP_TOO_MANY_REQUESTS


def _is_busy_reply(exc: redis.exceptions.ResponseError) -> bool:
    if isinstance(exc, _BUSY_REPLY_TYPES):
        return True
    code = exc.status_code or str(exc).split(" ", 1)[0]
    return code in REDIS_BUSY_REPLIES


# For tenacity: `AsyncRetrying(retry=retry_if_transient, ...)` retries exactly the transient errors.
retry_if_transient = retry_if_exception(is_transient)
