"""`REDIS_URL`: the three topologies the product runs on, read from one URL.

    redis://[[USER]:PASSWORD@]HOST[:6379][/DB]     one node (`rediss://`: over TLS; `unix://` a socket)
    redis+sentinel://[[USER]:PASSWORD@]HOST[:26379][,HOST[:26379]...]/SERVICE[/DB]
                                                    the primary that these Sentinels name SERVICE
                                                    (`rediss+sentinel://`: TLS to the Redis nodes)
    redis+cluster://[[USER]:PASSWORD@]HOST[:6379][,HOST[:6379]...]
                                                    a Redis Cluster, found from any of these nodes
                                                    (`rediss+cluster://`: over TLS)

The user and password are the Redis nodes'. Sentinels that require a password of their own take it
as `?sentinel_password=...` (percent-encoded, as the password in the URL). A password is never shown:
`rebalancer_shared.urls.redact_url` hides both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs, unquote, urlsplit

from rebalancer_shared.urls import redact_url

SENTINEL_PORT = 26379
REDIS_PORT = 6379


class Topology(StrEnum):
    SINGLE = "single"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


_SCHEMES = {
    "redis": (Topology.SINGLE, False),
    "rediss": (Topology.SINGLE, True),
    "unix": (Topology.SINGLE, False),
    "redis+sentinel": (Topology.SENTINEL, False),
    "rediss+sentinel": (Topology.SENTINEL, True),
    "redis+cluster": (Topology.CLUSTER, False),
    "rediss+cluster": (Topology.CLUSTER, True),
}
EXAMPLES = (
    "redis://[:PASSWORD@]HOST:6379/0, redis+sentinel://HOST:26379,HOST:26379,HOST:26379/SERVICE"
    " or redis+cluster://HOST:6379,HOST:6379"
)


class RedisUrlError(ValueError):
    """`REDIS_URL` cannot be read; the message names what is wrong (never the password)."""


@dataclass(frozen=True)
class RedisEndpoint:
    """Where Redis is, as `REDIS_URL` says (see the module's docstring)."""

    topology: Topology
    url: str  # the URL as given (a single node's is handed to redis-py as it is)
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()  # the Sentinels, or the Cluster's seed nodes
    service: str = ""  # the Sentinels' name of the primary
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_redis_url(url: str) -> RedisEndpoint:
    """The endpoint `url` names; `RedisUrlError` naming the problem when it names none."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise RedisUrlError(f"{_shown(url)} is not a Redis URL of the form {EXAMPLES}")
    topology, tls = _SCHEMES[scheme]
    if topology is Topology.SINGLE:
        return RedisEndpoint(Topology.SINGLE, url, tls=tls)
    rest = url.split("://", 1)[1]
    netloc, _, path_and_query = rest.partition("/")
    path, _, query = path_and_query.partition("?")
    if "?" in netloc:  # no path: "host:port?sentinel_password=..."
        netloc, _, query = netloc.partition("?")
    credentials, _, hosts = netloc.rpartition("@")
    username, password = _credentials(credentials)
    default_port = SENTINEL_PORT if topology is Topology.SENTINEL else REDIS_PORT
    nodes = tuple(_node(part, default_port, url) for part in hosts.split(","))
    if topology is Topology.CLUSTER:
        if path.strip("/") not in ("", "0"):
            raise RedisUrlError(f"{_shown(url)}: a Redis Cluster has only database 0")
        return RedisEndpoint(Topology.CLUSTER, url, tls, nodes, username=username, password=password)
    service, db = _service_and_db(path, url)
    return RedisEndpoint(
        Topology.SENTINEL,
        url,
        tls,
        nodes,
        service=service,
        db=db,
        username=username,
        password=password,
        sentinel_password=parse_qs(query).get("sentinel_password", [None])[0],
    )


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, colon, password = text.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _node(text: str, default_port: int, url: str) -> tuple[str, int]:
    if not text:
        raise RedisUrlError(f"{_shown(url)}: an empty host in the list of nodes")
    parts = urlsplit(f"//{text}")
    try:
        port = parts.port
    except ValueError:
        raise RedisUrlError(f"{_shown(url)}: {text!r} has no valid port") from None
    if not parts.hostname:
        raise RedisUrlError(f"{_shown(url)}: {text!r} names no host")
    return parts.hostname, port or default_port


def _service_and_db(path: str, url: str) -> tuple[str, int]:
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise RedisUrlError(f"{_shown(url)}: name the Sentinels' service after the hosts: .../SERVICE[/DB]")
    if len(parts) == 1:
        return unquote(parts[0]), 0
    if not parts[1].isdigit():
        raise RedisUrlError(
            f"{_shown(url)}: the database after the service must be a number, not {parts[1]!r}"
        )
    return unquote(parts[0]), int(parts[1])


def _shown(url: str) -> str:
    return repr(redact_url(url)) if url else "an empty value"
