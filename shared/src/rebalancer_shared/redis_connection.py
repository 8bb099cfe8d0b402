"""The one way every service and the CLI open Redis, and the one-line errors when it does not answer.

`open_redis` reads `REDIS_URL` (rebalancer_shared.redis_urls) and builds the redis-py client of its
topology: a plain client for one node, a client whose pool asks the Sentinels for the current primary
(after a failover its next connection goes to the new one: a command that fails on the old primary's
connection is retried on a new connection), or a cluster client (it follows the slot map). A cluster
client is handed out as `Redis`: it answers every command the product sends the same way (the queue's
tests run against a real Cluster), and all of a deployment's keys share one slot (queue/keys.py).
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from rebalancer_shared.errors import ServerRefusedError, ServerUnavailableError
from rebalancer_shared.redis_urls import RedisEndpoint, Topology, parse_redis_url
from rebalancer_shared.urls import redact_url

# Fail-fast clients (management API, CLI, start-up checks): a Redis that is down must be reported
# within a couple of seconds, not after redis-py's default of ten backed-off retries.
FAST_CONNECT_TIMEOUT_SECONDS = 1.0
FAST_SOCKET_TIMEOUT_SECONDS = 2.0
# Long-running services under Sentinel: a command that meets the old primary's closed connection is
# tried again on a fresh one (asking the Sentinels again) for about the time a failover takes.
FAILOVER_RETRIES = 8
FAILOVER_BACKOFF_CAP_SECONDS = 2.0
SENTINEL_SOCKET_TIMEOUT_SECONDS = 1.0


def open_redis(url: str, *, fail_fast: bool = False, **options: Any) -> Redis:
    """A client for `url` of any topology; `fail_fast` gives short timeouts and one immediate retry.

    `options` go to redis-py as they are (for instance `socket_timeout`)."""
    endpoint = parse_redis_url(url)
    if fail_fast:
        options = {
            "socket_connect_timeout": FAST_CONNECT_TIMEOUT_SECONDS,
            "socket_timeout": FAST_SOCKET_TIMEOUT_SECONDS,
            "retry": Retry(NoBackoff(), 1),
            **options,
        }
    if endpoint.topology is Topology.SENTINEL:
        return _sentinel_client(endpoint, fail_fast, options)
    if endpoint.topology is Topology.CLUSTER:
        return _cluster_client(endpoint, options)
    return Redis.from_url(url, **options)


def _sentinel_client(endpoint: RedisEndpoint, fail_fast: bool, options: dict[str, Any]) -> Redis:
    if not fail_fast:
        backoff = ExponentialWithJitterBackoff(base=0.1, cap=FAILOVER_BACKOFF_CAP_SECONDS)
        options.setdefault("retry", Retry(backoff, FAILOVER_RETRIES))
    # One quick try per Sentinel: the next Sentinel is the retry (redis-py's default backs off for
    # seconds on each, so a down group took 14 s to report); the primary's client retries above that.
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),
    }
    if endpoint.sentinel_password is not None:
        sentinel_kwargs["password"] = endpoint.sentinel_password
    if endpoint.tls:
        sentinel_kwargs["ssl"] = True
        options.setdefault("ssl", True)
    sentinel = Sentinel(list(endpoint.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: _SentinelPrimary = sentinel.master_for(
        endpoint.service,
        redis_class=_SentinelPrimary,
        db=endpoint.db,
        username=endpoint.username,
        password=endpoint.password,
        **options,
    )
    client.manager = sentinel
    return client


class _SentinelPrimary(Redis):
    """The primary's client that also closes its connections to the Sentinels when closed."""

    manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.manager.sentinels if self.manager is not None else ():
            await sentinel.aclose()


def _cluster_client(endpoint: RedisEndpoint, options: dict[str, Any]) -> Redis:
    nodes = [ClusterNode(host, port) for host, port in endpoint.nodes]
    client = _Cluster(
        startup_nodes=nodes,
        username=endpoint.username,
        password=endpoint.password,
        ssl=endpoint.tls,
        **options,
    )
    return cast(Redis, client)


class _Cluster(RedisCluster):
    """A cluster client whose "no node answers" is a Redis ConnectionError, as every other outage is.

    redis-py raises it as a bare `RedisClusterException` (not a `RedisError`) when it must learn the
    slot map again and no node answers: the services' outage handling would not see it."""

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unreachable(exc) from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unreachable(exc) from exc


def _unreachable(exc: RedisClusterException) -> RedisError:
    if isinstance(exc, RedisError):
        return exc
    return RedisConnectionError("no node of the Cluster answered: " + _last_part(str(exc)))


def _last_part(text: str) -> str:
    return text.rpartition(": ")[2].strip().rstrip(".")


def redis_unavailable(url: str, exc: BaseException) -> ServerUnavailableError:
    """The one-line error for a Redis that cannot be reached, or that refuses our credentials."""
    reason = _reason(url, exc)
    shown = redact_url(url)
    refused = isinstance(exc, AuthenticationError) or (
        isinstance(exc, ResponseError) and reason.startswith(("NOAUTH", "WRONGPASS"))
    )
    if refused:
        return ServerRefusedError(f"Redis at {shown} refuses the connection: {reason} (fix REDIS_URL)")
    return ServerUnavailableError(
        f"Redis at {shown} does not answer: {reason} (start it, or set REDIS_URL to a server that runs)"
    )


def _reason(url: str, exc: BaseException) -> str:
    if isinstance(exc, MasterNotFoundError):  # its text is the repr of every Sentinel client tried
        endpoint = parse_redis_url(url)
        sentinels = ", ".join(f"{host}:{port}" for host, port in endpoint.nodes)
        return f"no Sentinel ({sentinels}) answered with a primary for {endpoint.service!r}"
    if isinstance(exc, RedisClusterException) and not isinstance(exc, RedisError):
        return str(_unreachable(exc))
    return str(exc).strip().rstrip(".") or type(exc).__name__


async def check_redis(url: str) -> None:
    """PING the server at `url`; raise `ServerUnavailableError` naming it when it does not answer."""
    client = open_redis(url, fail_fast=True)
    try:
        await client.ping()
    except (RedisError, RedisClusterException, OSError) as exc:
        raise redis_unavailable(url, exc) from exc
    finally:
        await client.aclose()
