"""/queue/status, /queue/events: reading, removing and adding events over HTTP."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from rebalancer_shared.events import Command
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.metrics import Counter, read_counters
from rebalancer_shared.queue import EnqueueOutcome, EventQueue
from rebalancer_shared.store import EventStore
from tests.integration.management.helpers import ACCOUNT_A, ACCOUNT_B, retrying_event
from tests.integration.queue.helpers import make_event

BRIEF_EVENT_FIELDS = {"event_id", "account_id", "exec_command", "times_queued", "created_at", "data"}


async def test_status_of_an_empty_queue(client: httpx.AsyncClient) -> None:
    response = await client.get("/queue/status")
    assert response.status_code == 200
    assert response.json() == {
        "queue_length": 0,
        "active_events_count": 0,
        "oldest_event_age_seconds": None,
        "events_with_retries": 0,
        "processing_count": 0,
        "retrying_count": 0,
        "scheduled_count": 0,
        "needs_attention_count": 0,
        "events_by_class": {"transient": 0, "market_closed": 0, "needs_attention": 0},
    }


async def test_status_counts_queued_processing_and_retrying(
    client: httpx.AsyncClient, queue: EventQueue
) -> None:
    for account in ("A1", "A2", "A3", "A4"):
        await queue.enqueue(make_event(account))
    await retrying_event(queue)
    assert await queue.claim("test-worker") is not None
    body = (await client.get("/queue/status")).json()
    assert body["queue_length"] == 2
    assert body["processing_count"] == 1
    assert body["retrying_count"] == 1
    assert body["active_events_count"] == 4
    assert body["events_with_retries"] == 1
    assert body["oldest_event_age_seconds"] >= 0


async def test_events_are_listed_oldest_first_with_the_brief_fields(
    client: httpx.AsyncClient, queue: EventQueue
) -> None:
    first = make_event("A1", Command.REBALANCE, data={"exec": "rebalance"})
    second = make_event("A2")
    await queue.enqueue(first)
    await queue.enqueue(second)
    await retrying_event(queue, "IBKR: not connected")
    response = await client.get("/queue/events")
    assert response.status_code == 200
    events = response.json()
    assert [e["event_id"] for e in events] == [str(first.event_id), str(second.event_id)]
    assert events[0].keys() >= BRIEF_EVENT_FIELDS
    assert events[0]["exec_command"] == "rebalance"
    assert events[0]["data"] == {"exec": "rebalance"}
    assert (events[0]["state"], events[0]["times_queued"]) == ("retrying", 2)
    assert events[0]["last_error"] == "IBKR: not connected"
    assert (events[1]["state"], events[1]["times_queued"], events[1]["last_error"]) == ("queued", 1, None)


async def test_listing_honours_the_limit(client: httpx.AsyncClient, queue: EventQueue) -> None:
    for i in range(5):
        await queue.enqueue(make_event(f"A{i}"))
    events = (await client.get("/queue/events", params={"limit": 2})).json()
    assert [e["account_id"] for e in events] == ["A0", "A1"]


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "many"])
async def test_a_limit_outside_1_to_1000_is_rejected(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/queue/events", params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_removing_a_queued_event_clears_its_key_and_records_it(
    client: httpx.AsyncClient, queue: EventQueue, store: EventStore, auth: dict[str, str]
) -> None:
    event = make_event(ACCOUNT_A, Command.REBALANCE)
    await EventLifecycle(queue, store).submit(event)
    response = await client.delete(f"/queue/events/{event.event_id}", headers=auth)
    assert response.status_code == 200
    assert response.json() == {
        "event_id": str(event.event_id),
        "account_id": ACCOUNT_A,
        "exec_command": "rebalance",
        "times_queued": 1,
        "status": "removed",
    }
    assert await queue.get(str(event.event_id)) is None
    # The dedup key went with it: the same account and command can be queued again.
    assert (await queue.enqueue(make_event(ACCOUNT_A, Command.REBALANCE))).outcome is EnqueueOutcome.QUEUED
    history = await store.history(event.event_id)
    assert history is not None
    assert [t.state for t in history.transitions] == ["queued", "removed"]
    assert history.event.status == "removed"
    counters = await read_counters(queue.redis, queue.keys.prefix)
    assert counters[Counter.EVENTS_REMOVED] == {"rebalance": 1}


async def test_removing_a_retrying_event(
    client: httpx.AsyncClient, queue: EventQueue, auth: dict[str, str]
) -> None:
    await queue.enqueue(make_event(ACCOUNT_A))
    event_id = await retrying_event(queue)
    response = await client.delete(f"/queue/events/{event_id}", headers=auth)
    assert (response.status_code, response.json()["times_queued"]) == (200, 2)
    assert (await queue.stats()).active_events_count == 0


async def test_removing_an_event_not_in_the_queue_is_404(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.delete(f"/queue/events/{uuid.uuid4()}", headers=auth)
    assert response.status_code == 404
    assert "not in the queue" in response.json()["detail"]


async def test_removing_a_processing_event_is_409(
    client: httpx.AsyncClient, queue: EventQueue, auth: dict[str, str]
) -> None:
    event = make_event(ACCOUNT_A)
    await queue.enqueue(event)
    assert await queue.claim("test-worker") is not None
    response = await client.delete(f"/queue/events/{event.event_id}", headers=auth)
    assert response.status_code == 409
    assert "being processed" in response.json()["detail"]
    assert await queue.get(str(event.event_id)) is not None


async def test_removing_with_a_malformed_id_is_422(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.delete("/queue/events/not-a-uuid", headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "event_id"]


async def test_posting_an_event_queues_it_with_source_api(
    client: httpx.AsyncClient, queue: EventQueue, store: EventStore, auth: dict[str, str]
) -> None:
    body = {"account_id": ACCOUNT_A, "exec_command": "print-rebalance", "data": {"exec": "print-rebalance"}}
    response = await client.post("/queue/events", json=body, headers=auth)
    assert response.status_code == 201
    answer = response.json()
    assert (answer["outcome"], answer["message"]) == ("queued", "event queued")
    view = await queue.get(answer["event_id"])
    assert view is not None
    assert (view.event.source.value, view.event.data) == ("api", {"exec": "print-rebalance"})
    history = await store.history(uuid.UUID(answer["event_id"]))
    assert history is not None
    assert history.event.source == "api"


async def test_posting_a_duplicate_is_409_with_the_existing_event_id(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"account_id": ACCOUNT_B, "exec_command": "print-positions"}
    first = (await client.post("/queue/events", json=body, headers=auth)).json()
    response = await client.post("/queue/events", json=body, headers=auth)
    assert response.status_code == 409
    assert response.json()["event_id"] == first["event_id"]
    assert response.json()["outcome"] == "duplicate"


async def test_posting_while_the_event_is_processing_is_202_coalesced(
    client: httpx.AsyncClient, queue: EventQueue, auth: dict[str, str]
) -> None:
    body = {"account_id": ACCOUNT_B, "exec_command": "print-equity"}
    first = (await client.post("/queue/events", json=body, headers=auth)).json()
    assert await queue.claim("test-worker") is not None
    response = await client.post("/queue/events", json=body, headers=auth)
    assert response.status_code == 202
    assert (response.json()["event_id"], response.json()["outcome"]) == (first["event_id"], "coalesced")
    view = await queue.get(first["event_id"])
    assert view is not None
    assert view.rerun


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"account_id": "DU999999", "exec_command": "print-rebalance"}, "account_id"),
        ({"account_id": ACCOUNT_A, "exec_command": "sell-everything"}, "exec_command"),
        ({"account_id": ACCOUNT_A}, "exec_command"),
        ({"account_id": ACCOUNT_A, "exec_command": "print-rebalance", "data": [1]}, "data"),
        ({"account_id": ACCOUNT_A, "exec_command": "print-rebalance", "extra": 1}, "extra"),
    ],
)
async def test_a_bad_body_is_422_naming_the_field(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, object], field: str
) -> None:
    response = await client.post("/queue/events", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


async def test_a_live_rebalance_needs_the_allow_live_header(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"account_id": ACCOUNT_A, "exec_command": "rebalance", "data": {"exec": "rebalance"}}
    refused = await client.post("/queue/events", json=body, headers=auth)
    assert refused.status_code == 403
    assert "X-Allow-Live: true" in refused.json()["detail"]
    wrong = await client.post("/queue/events", json=body, headers={**auth, "X-Allow-Live": "yes"})
    assert wrong.status_code == 403
    allowed = await client.post("/queue/events", json=body, headers={**auth, "X-Allow-Live": "true"})
    assert (allowed.status_code, allowed.json()["outcome"]) == (201, "queued")


async def test_the_live_guard_can_be_switched_off(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    settings = app.state.settings
    management = settings.management.model_copy(update={"enforce_live_guard": False})
    app.state.settings = settings.model_copy(update={"management": management})
    body = {"account_id": ACCOUNT_A, "exec_command": "rebalance"}
    assert (await client.post("/queue/events", json=body, headers=auth)).status_code == 201
