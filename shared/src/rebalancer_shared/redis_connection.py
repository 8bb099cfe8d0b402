"""The one way every service and the CLI open Redis, and the one-line errors when it does not answer."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from rebalancer_shared.errors import ServerRefusedError, ServerUnavailableError
from rebalancer_shared.urls import redact_url

# Fail-fast clients (management API, CLI, start-up checks): a Redis that is down must be reported
# within a couple of seconds, not after redis-py's default of ten backed-off retries.
FAST_CONNECT_TIMEOUT_SECONDS = 1.0
FAST_SOCKET_TIMEOUT_SECONDS = 2.0


def open_redis(url: str, *, fail_fast: bool = False) -> Redis:
    """A client for `url`; `fail_fast` gives short timeouts and one immediate retry."""
    if not fail_fast:
        return Redis.from_url(url)
    return Redis.from_url(
        url,
        socket_connect_timeout=FAST_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=FAST_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
    )


def redis_unavailable(url: str, exc: BaseException) -> ServerUnavailableError:
    """The one-line error for a Redis that cannot be reached, or that refuses our credentials."""
    reason = str(exc).strip().rstrip(".") or type(exc).__name__
    shown = redact_url(url)
    refused = isinstance(exc, AuthenticationError) or (
        isinstance(exc, ResponseError) and reason.startswith(("NOAUTH", "WRONGPASS"))
    )
    if refused:
        return ServerRefusedError(f"Redis at {shown} refuses the connection: {reason} (fix REDIS_URL)")
    return ServerUnavailableError(
        f"Redis at {shown} does not answer: {reason} (start it, or set REDIS_URL to a server that runs)"
    )


async def check_redis(url: str) -> None:
    """PING the server at `url`; raise `ServerUnavailableError` naming it when it does not answer."""
    client = open_redis(url, fail_fast=True)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise redis_unavailable(url, exc) from exc
    finally:
        await client.aclose()
