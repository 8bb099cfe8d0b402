"""/health: Redis, PostgreSQL, heartbeats and retries; 200 only when all are fine."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from redis.asyncio import Redis

from management_service.health import HealthPolicy, judge_heartbeats
from management_service.main import create_app
from management_service.services import Services
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import Settings
from rebalancer_shared.heartbeats import Heartbeat, beat
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue, QueueKeys
from rebalancer_shared.redis_connection import open_redis
from rebalancer_shared.store import EventStore
from tests.integration.management.helpers import beat_all, make_settings, old_beat, retrying_event
from tests.integration.queue.helpers import make_event
from tests.support.servers import free_port, throwaway_redis


async def test_healthy_with_servers_up_fresh_heartbeats_and_no_retries(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    await beat_all(redis_client, prefix)
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("status", "healthy", "events_with_retries", "message")} == {
        "status": "healthy",
        "healthy": True,
        "events_with_retries": 0,
        "message": "No events require retry",
    }
    components = body["components"]
    assert components["redis"]["status"] == components["postgres"]["status"] == "ok"
    assert components["redis"]["latency_ms"] >= 0
    assert components["heartbeats"]["event-broker"]["status"] == "ok"
    assert components["heartbeats"]["event-broker"]["state"] == "connected"
    assert components["heartbeats"]["event-processor"]["instances"][0]["instance"] == "p1"
    assert components["stale_after_seconds"] == 30.0


async def test_an_event_with_retries_makes_it_unhealthy(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str, queue: EventQueue
) -> None:
    await beat_all(redis_client, prefix)
    await queue.enqueue(make_event("DU1"))
    await retrying_event(queue)
    response = await client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["healthy"], body["events_with_retries"]) == ("unhealthy", False, 1)
    assert body["message"] == "1 event requires retry"


async def test_a_missing_heartbeat_makes_it_unhealthy(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    await old_beat(redis_client, prefix, "event-processor", "p1", age_seconds=1)
    response = await client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["components"]["heartbeats"]["event-broker"] == {
        "status": "missing",
        "age_seconds": None,
        "state": None,
        "instances": [],
    }
    assert body["message"] == "event-broker heartbeat is missing"


async def test_a_stale_heartbeat_makes_it_unhealthy(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    await beat_all(redis_client, prefix)
    await redis_client.delete(QueueKeys(prefix).heartbeats)
    await old_beat(redis_client, prefix, "event-broker", "b1", age_seconds=5)
    await old_beat(redis_client, prefix, "event-processor", "p1", age_seconds=95)
    response = await client.get("/health")
    assert response.status_code == 503
    processor = response.json()["components"]["heartbeats"]["event-processor"]
    assert processor["status"] == "stale"
    assert processor["age_seconds"] >= 95
    assert processor["instances"][0]["stale"] is True
    assert "event-processor heartbeat is stale (95 s old)" in response.json()["message"]


async def test_a_dead_replica_beside_a_live_one_is_listed_but_healthy(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    await beat_all(redis_client, prefix)
    await old_beat(redis_client, prefix, "event-processor", "p2", age_seconds=600)
    response = await client.get("/health")
    assert response.status_code == 200
    instances = response.json()["components"]["heartbeats"]["event-processor"]["instances"]
    assert [(i["instance"], i["stale"]) for i in instances] == [("p1", False), ("p2", True)]


def test_heartbeat_rules_follow_the_policy() -> None:
    now = time.time()
    beats = [
        Heartbeat("event-broker", "b1", "connected", now - 10, {}),
        Heartbeat("event-processor", "p1", "running", now - 10, {}),
        Heartbeat("cli", "c1", "idle", now - 1000, {}),
    ]
    strict = judge_heartbeats(beats, HealthPolicy(stale_after_seconds=5), now)
    assert (strict["event-broker"].status, strict["event-processor"].status) == ("stale", "stale")
    # Services nobody requires are reported too.
    assert strict["cli"].status == "stale"
    relaxed = judge_heartbeats(beats, HealthPolicy(stale_after_seconds=60), now)
    assert relaxed["event-broker"].status == "ok"
    unknown = judge_heartbeats(None, HealthPolicy(), now)
    assert {name: s.status for name, s in unknown.items()} == {
        "event-broker": "unknown",
        "event-processor": "unknown",
    }


async def test_a_killed_redis_is_reported_down_quickly(
    settings: Settings, store: EventStore, accounts: Mapping[str, Account]
) -> None:
    with throwaway_redis() as server:
        redis = open_redis(server.url, fail_fast=True)
        try:
            queue = EventQueue(redis, "health")
            await beat_all(redis, "health")
            services = Services(
                lifecycle=EventLifecycle(queue, store), accounts=accounts, health_policy=HealthPolicy()
            )
            app = create_app(settings, services=services)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as http:
                assert (await http.get("/health")).status_code == 200
                server.kill()
                start = time.monotonic()
                response = await http.get("/health")
                elapsed = time.monotonic() - start
                status = await http.get("/queue/status")
        finally:
            await redis.aclose()
    assert response.status_code == 503
    assert elapsed < 3.5
    body = response.json()
    assert (body["status"], body["healthy"], body["events_with_retries"]) == ("error", False, None)
    redis_component = body["components"]["redis"]
    assert redis_component["status"] == "down"
    assert "ConnectionError" in redis_component["error"]
    assert body["message"].startswith("redis is down: ")
    assert body["components"]["postgres"]["status"] == "ok"
    assert {s["status"] for s in body["components"]["heartbeats"].values()} == {"unknown"}
    # Other endpoints answer 503 naming Redis, never a bare 500.
    assert status.status_code == 503
    assert status.json()["detail"].startswith("Redis is unavailable")


async def test_an_unreachable_postgres_is_reported_down(
    settings: Settings, queue: EventQueue, redis_client: Redis, prefix: str, accounts: Mapping[str, Account]
) -> None:
    await beat_all(redis_client, prefix)
    store = EventStore.from_url(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    services = Services(
        lifecycle=EventLifecycle(queue, store), accounts=accounts, health_policy=HealthPolicy()
    )
    app = create_app(settings, services=services)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as http:
            response = await http.get("/health")
            accounts_response = await http.get("/accounts")
    finally:
        await store.close()
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["components"]["postgres"]["status"]) == ("error", "down")
    assert body["components"]["redis"]["status"] == "ok"
    assert body["events_with_retries"] == 0
    assert body["message"].startswith("postgres is down: ")
    assert accounts_response.status_code == 503
    assert accounts_response.json()["detail"].startswith("PostgreSQL is unavailable")


async def test_the_lifespan_opens_the_services_and_checks_the_queue_state(
    tmp_path: Path, fresh_database_url: str, accounts_file: Path, redis_client: Redis, prefix: str
) -> None:
    settings = make_settings(
        tmp_path, prefix=prefix, database_url=fresh_database_url, accounts_file=accounts_file
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as http:
            await beat_all(redis_client, prefix)
            response = await http.get("/health")
        # ensure_queue_state ran at start: the Redis-loss marker is written.
        assert await redis_client.exists(QueueKeys(prefix).marker)
    assert response.status_code == 200
    assert not hasattr(app.state, "services")


def test_stale_limit_comes_from_heartbeat_stale_seconds_or_three_beats() -> None:
    from management_service.health import HealthPolicy
    from rebalancer_shared.config import load_settings

    assert HealthPolicy.from_settings(load_settings(environ={})).stale_after_seconds == 30.0
    configured = load_settings(environ={"HEARTBEAT_STALE_SECONDS": "12.5"})
    assert HealthPolicy.from_settings(configured).stale_after_seconds == 12.5


async def test_a_processor_that_cannot_reach_ib_gateway_makes_it_unhealthy_naming_why(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    await beat_all(redis_client, prefix)
    reason = "cannot connect to IB Gateway at 127.0.0.1:4002 (paper mode) after 3 attempt(s)"
    gateway = {"state": "unreachable", "since": time.time() - 40, "reason": reason}
    await beat(redis_client, prefix, "event-processor", "p1", "running", gateway=gateway)

    response = await client.get("/health")

    assert response.status_code == 503
    assert response.json()["message"] == f"IB Gateway is unreachable from event-processor p1: {reason}"
    await beat(redis_client, prefix, "event-processor", "p1", "running", gateway={"state": "connected"})
    assert (await client.get("/health")).status_code == 200
