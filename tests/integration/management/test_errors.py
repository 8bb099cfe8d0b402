"""Answers no route gives: a path ending in '/' (an empty `$EVENT_ID` in a URL), a method not served;
and a busy or unreachable server behind any route: 503 naming it, while a bug stays a 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import httpx
import pytest
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI
from redis.asyncio import Redis

from management_service.health import HealthPolicy
from management_service.main import create_app
from management_service.services import Services
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import Settings
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.integration.management.helpers import ACCOUNT_A
from tests.support.servers import free_port, throwaway_redis


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("DELETE", "/queue/events/", "DELETE /queue/events/{event_id}"),
        ("GET", "/events/", "GET /events/{event_id}"),
    ],
)
async def test_a_path_without_its_event_id_is_404_naming_the_endpoint(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, path: str, endpoint: str
) -> None:
    response = await client.request(method, path, headers=auth)
    assert response.status_code == 404  # not 307 to the list of events
    assert "location" not in response.headers
    assert response.json()["detail"] == (
        f"the event id is missing from the path: {endpoint} (an empty variable in the URL?)"
    )


async def test_a_trailing_slash_is_not_redirected_but_named(client: httpx.AsyncClient) -> None:
    response = await client.get("/queue/status/")
    assert (response.status_code, response.json()["detail"]) == (
        404,
        "no endpoint at GET /queue/status/: drop the trailing slash (GET /queue/status)",
    )


async def test_an_unknown_path_is_a_plain_404(client: httpx.AsyncClient) -> None:
    for path in ("/nothing", "/nothing/"):
        response = await client.get(path)
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


async def test_a_method_not_served_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.put("/queue/events")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, POST")
    response = await client.patch("/queue/events/8b6f1b9e-0d7e-4c53-9a3c-3f1c2b0e6a10")
    assert (response.status_code, response.headers["allow"]) == (405, "DELETE")


def test_the_openapi_document_has_no_path_for_the_hints(app: FastAPI) -> None:
    assert not [path for path in app.openapi()["paths"] if path.endswith("/")]


async def out_of_memory(redis: Redis) -> None:
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", "1")  # below what the server already holds


async def read_only_replica(redis: Redis) -> None:
    await redis.replicaof("127.0.0.1", free_port())  # of a master that is gone


BUSY_REDIS: dict[str, tuple[Callable[[Redis], Awaitable[None]], str]] = {
    "out of memory": (out_of_memory, "OutOfMemoryError: command not allowed when used memory"),
    "read-only replica": (read_only_replica, "ReadOnlyError: You can't write against a read only replica"),
}


@pytest.mark.parametrize("condition", BUSY_REDIS.keys())
async def test_a_redis_that_refuses_writes_for_now_makes_posting_an_event_503_naming_redis(
    settings: Settings,
    store: EventStore,
    accounts: Mapping[str, Account],
    auth: dict[str, str],
    condition: str,
) -> None:
    make_busy, reason = BUSY_REDIS[condition]
    body = {"account_id": ACCOUNT_A, "exec_command": "print-positions"}
    with throwaway_redis() as server:
        redis = Redis.from_url(server.url)
        try:
            await make_busy(redis)
            queue = EventQueue(redis, "busy")
            services = Services(
                lifecycle=EventLifecycle(queue, store), accounts=accounts, health_policy=HealthPolicy()
            )
            app = create_app(settings, services=services)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as http:
                response = await http.post("/queue/events", json=body, headers=auth)
                status = await http.get("/queue/status")
        finally:
            await redis.aclose()
    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"Redis is unavailable: {reason}")
    assert status.status_code == 200, "reads are still served"


SERVER_ERRORS: dict[str, tuple[Exception, str]] = {
    "redis MISCONF": (
        redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it can't"),
        "Redis is unavailable: ResponseError: MISCONF Redis is configured to save RDB snapshots",
    ),
    "redis LOADING": (
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        "Redis is unavailable: BusyLoadingError: Redis is loading the dataset in memory",
    ),
    "redis unreachable": (
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        "Redis is unavailable: ConnectionError: Error 111 connecting",
    ),
    "pool timeout": (
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached, connection timed out"),
        "PostgreSQL is unavailable: TimeoutError: QueuePool limit of size 5 overflow 10 reached",
    ),
    "postgres unreachable": (
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
        "PostgreSQL is unavailable: OperationalError: (builtins.Exception) connection refused",
    ),
}


def raising(app: FastAPI, error: Exception) -> str:
    """A route of the real app that fails with `error` where a server call would be."""

    async def fail() -> None:
        raise error

    app.add_api_route("/test-server-error", fail)
    return "/test-server-error"


@pytest.mark.parametrize("name", SERVER_ERRORS.keys())
async def test_a_busy_or_unreachable_server_is_503_naming_it(
    app: FastAPI, client: httpx.AsyncClient, name: str
) -> None:
    error, detail = SERVER_ERRORS[name]
    response = await client.get(raising(app, error))
    assert response.status_code == 503
    assert response.json()["detail"].startswith(detail)


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key value")),
    ],
    ids=["redis WRONGTYPE", "IntegrityError"],
)
async def test_a_bug_behind_a_route_stays_a_500(app: FastAPI, error: Exception) -> None:
    path = raising(app, error)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as http:
        response = await http.get(path)
    assert response.status_code == 500
