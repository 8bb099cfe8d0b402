"""`REDIS_URL` in its three topologies: what each form means, and a clear error for a bad one."""

from __future__ import annotations

import pytest

from rebalancer_shared.config import load_settings
from rebalancer_shared.errors import ConfigError, ServerUnavailableError
from rebalancer_shared.redis_connection import check_redis
from rebalancer_shared.redis_urls import RedisUrlError, Topology, parse_redis_url
from rebalancer_shared.urls import redact_url


def test_a_single_node_url_is_handed_on_as_it_is() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.example:6380/2", "unix:///run/redis.sock"):
        endpoint = parse_redis_url(url)
        assert (endpoint.topology, endpoint.url) == (Topology.SINGLE, url)
    assert parse_redis_url("rediss://h:6380/0").tls


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    endpoint = parse_redis_url(
        "redis+sentinel://app:s%40cret@s1:26380,s2,10.0.0.3:26379/rebalancer/3?sentinel_password=sp%2F1"
    )
    assert endpoint.topology is Topology.SENTINEL
    assert endpoint.nodes == (("s1", 26380), ("s2", 26379), ("10.0.0.3", 26379))
    assert (endpoint.service, endpoint.db) == ("rebalancer", 3)
    assert (endpoint.username, endpoint.password, endpoint.sentinel_password) == ("app", "s@cret", "sp/1")
    assert not endpoint.tls
    assert parse_redis_url("rediss+sentinel://s1/svc").tls


def test_a_cluster_url_names_its_seed_nodes() -> None:
    endpoint = parse_redis_url("redis+cluster://:pw@n1:7000,n2:7001,n3")
    assert endpoint.topology is Topology.CLUSTER
    assert endpoint.nodes == (("n1", 7000), ("n2", 7001), ("n3", 6379))
    assert endpoint.password == "pw"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:6379", "is not a Redis URL of the form"),
        ("", "an empty value is not a Redis URL"),
        ("redis+sentinel://s1:26379,s2:26379", "name the Sentinels' service after the hosts"),
        ("redis+sentinel://s1/svc/two", "the database after the service must be a number, not 'two'"),
        ("redis+sentinel://s1,,s2/svc", "an empty host in the list of nodes"),
        ("redis+sentinel://s1:port/svc", "'s1:port' has no valid port"),
        ("redis+cluster://n1:7000/2", "a Redis Cluster has only database 0"),
    ],
)
def test_a_bad_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError, match=message):
        parse_redis_url(url)


def test_an_error_never_shows_a_password() -> None:
    with pytest.raises(RedisUrlError) as caught:
        parse_redis_url("redis+sentinel://:node-pw@s1/svc/x?sentinel_password=sentinel-pw")
    assert "node-pw" not in str(caught.value)
    assert "sentinel-pw" not in str(caught.value)
    shown = redact_url("redis+sentinel://:node-pw@s1/svc?sentinel_password=sentinel-pw")
    assert "node-pw" not in shown
    assert "sentinel-pw" not in shown


def test_writes_wait_for_one_replica_by_default_under_sentinel_only() -> None:
    sentinel = load_settings(environ={"REDIS_URL": "redis+sentinel://s1/rebalancer"})
    assert sentinel.redis.replicas_to_wait_for() == 1
    single = load_settings(environ={"REDIS_URL": "redis://h:6379/0"})
    assert single.redis.replicas_to_wait_for() == 0
    chosen = load_settings(environ={"REDIS_URL": "redis+sentinel://s1/r", "REDIS_WAIT_REPLICAS": "0"})
    assert chosen.redis.replicas_to_wait_for() == 0
    assert load_settings(environ={"REDIS_WAIT_REPLICAS": "2"}).redis.replicas_to_wait_for() == 2


def test_config_refuses_a_bad_url_and_a_wait_on_a_cluster_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings(environ={"REDIS_URL": "redis+sentinel://s1:26379"})
    with pytest.raises(ConfigError, match="REDIS_WAIT_REPLICAS"):
        load_settings(environ={"REDIS_URL": "redis+cluster://n1:7000", "REDIS_WAIT_REPLICAS": "1"})


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/rebalancer",
            "no Sentinel (127.0.0.1:1, 127.0.0.1:2) answered with a primary for 'rebalancer'",
        ),
        (
            "redis+cluster://:pw@127.0.0.1:1",
            "no node of the Cluster answered: Error 111 connecting to 127.0.0.1:1",
        ),
    ],
)
async def test_an_unreachable_sentinel_group_or_cluster_is_one_line_naming_it(url: str, reason: str) -> None:
    with pytest.raises(ServerUnavailableError) as caught:
        await check_redis(url)
    message = str(caught.value)
    assert message.startswith(f"Redis at {redact_url(url)} does not answer: {reason}")
    assert "\n" not in message
    assert "pw" not in message.replace("REDIS_URL", "")
