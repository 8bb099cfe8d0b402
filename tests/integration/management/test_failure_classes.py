"""The failure classes through the management API: counted per class in /queue/status and /health,
shown on each waiting event, and an operator's "retry now" (POST /queue/events/{id}/retry)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis

from rebalancer_shared.failures import FailureClass
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue, EventState, Wait
from rebalancer_shared.store import EventStore
from tests.integration.management.helpers import beat_all
from tests.integration.queue.helpers import make_event

# A due time days ahead, whole seconds (Redis keeps milliseconds).
MONDAY_OPEN = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)


async def wait_as(lifecycle: EventLifecycle, state: EventState, failure_class: FailureClass) -> str:
    """Claim the oldest event and end its run in `state` (due Monday's open, or in 300 s)."""
    claim = await lifecycle.queue.claim("test-worker")
    assert claim is not None
    due = None if state is EventState.RETRYING else MONDAY_OPEN
    wait = Wait(state, failure_class, delay_seconds=300, due_at=due)
    await lifecycle.fail(claim, f"{failure_class.value} failure", wait=wait)
    return str(claim.event.event_id)


async def one_of_each(queue: EventQueue, store: EventStore) -> dict[EventState, str]:
    lifecycle = EventLifecycle(queue, store)
    ids = {}
    for account, state, failure_class in (
        ("A1", EventState.RETRYING, FailureClass.TRANSIENT),
        ("A2", EventState.SCHEDULED, FailureClass.MARKET_CLOSED),
        ("A3", EventState.NEEDS_ATTENTION, FailureClass.NEEDS_ATTENTION),
    ):
        await lifecycle.submit(make_event(account))
        ids[state] = await wait_as(lifecycle, state, failure_class)
    return ids


async def test_status_and_events_show_each_class_with_its_due_time(
    client: httpx.AsyncClient, queue: EventQueue, store: EventStore
) -> None:
    ids = await one_of_each(queue, store)
    status = (await client.get("/queue/status")).json()
    assert (status["retrying_count"], status["scheduled_count"], status["needs_attention_count"]) == (1, 1, 1)
    assert status["events_by_class"] == {"transient": 1, "market_closed": 1, "needs_attention": 1}
    assert status["active_events_count"] == 3
    events = {e["event_id"]: e for e in (await client.get("/queue/events")).json()}
    scheduled = events[ids[EventState.SCHEDULED]]
    assert (scheduled["state"], scheduled["failure_class"]) == ("scheduled", "market_closed")
    assert datetime.fromisoformat(scheduled["due_at"]) == MONDAY_OPEN
    attention = events[ids[EventState.NEEDS_ATTENTION]]
    assert (attention["state"], attention["failure_class"]) == ("needs_attention", "needs_attention")
    assert attention["last_error"] == "needs_attention failure"
    retrying = events[ids[EventState.RETRYING]]
    assert (retrying["state"], retrying["failure_class"]) == ("retrying", "transient")
    due = datetime.fromisoformat(retrying["due_at"]) - datetime.now(UTC)
    assert timedelta(seconds=290) < due <= timedelta(seconds=300)


async def test_the_history_keeps_the_class_and_the_due_time(
    client: httpx.AsyncClient, queue: EventQueue, store: EventStore
) -> None:
    ids = await one_of_each(queue, store)
    history = (await client.get(f"/events/{ids[EventState.SCHEDULED]}")).json()
    assert (history["event"]["status"], history["event"]["failure_class"]) == ("scheduled", "market_closed")
    assert datetime.fromisoformat(history["event"]["next_attempt_at"]) == MONDAY_OPEN
    last = history["transitions"][-1]
    assert (last["state"], last["failure_class"]) == ("scheduled", "market_closed")
    assert datetime.fromisoformat(last["due_at"]) == MONDAY_OPEN


async def test_health_is_unhealthy_while_an_event_needs_attention_and_not_for_a_scheduled_one(
    client: httpx.AsyncClient, queue: EventQueue, store: EventStore, redis_client: Redis, prefix: str
) -> None:
    await beat_all(redis_client, prefix)
    lifecycle = EventLifecycle(queue, store)
    await lifecycle.submit(make_event("A2"))
    await wait_as(lifecycle, EventState.SCHEDULED, FailureClass.MARKET_CLOSED)
    response = await client.get("/health")
    assert (response.status_code, response.json()["status"]) == (200, "healthy")
    assert response.json()["events_by_class"] == {"transient": 0, "market_closed": 1, "needs_attention": 0}
    await lifecycle.submit(make_event("A3"))
    attention = await wait_as(lifecycle, EventState.NEEDS_ATTENTION, FailureClass.NEEDS_ATTENTION)
    response = await client.get("/health")
    assert response.status_code == 503
    assert (response.json()["status"], response.json()["message"]) == ("unhealthy", "1 event needs attention")
    await lifecycle.remove(attention, "handled")
    assert (await client.get("/health")).status_code == 200


async def test_retry_makes_a_waiting_event_due_now_and_says_so(
    client: httpx.AsyncClient, queue: EventQueue, store: EventStore, auth: dict[str, str]
) -> None:
    ids = await one_of_each(queue, store)
    for state, event_id in ids.items():
        response = await client.post(f"/queue/events/{event_id}/retry", headers=auth)
        assert response.status_code == 200, state
        assert response.json()["outcome"] == "requeued"
        view = await queue.get(event_id)
        assert view is not None
        assert (view.state, view.due_at) == (EventState.QUEUED, None)
    status = (await client.get("/queue/status")).json()
    assert (status["queue_length"], status["events_by_class"]["needs_attention"]) == (3, 0)
    claims = [await queue.claim("w") for _ in range(3)]
    assert {str(c.event.event_id) for c in claims if c} == set(ids.values())
    history = (await client.get(f"/events/{ids[EventState.NEEDS_ATTENTION]}")).json()
    assert [t["state"] for t in history["transitions"]][-2:] == ["needs_attention", "requeued"]
    assert "retry requested by an operator" in history["transitions"][-1]["detail"]


async def test_retry_answers_404_409_and_401(
    client: httpx.AsyncClient, queue: EventQueue, store: EventStore, auth: dict[str, str]
) -> None:
    missing = await client.post(f"/queue/events/{uuid.uuid4()}/retry", headers=auth)
    assert missing.status_code == 404
    await EventLifecycle(queue, store).submit(make_event("A1"))
    claim = await queue.claim("w")
    assert claim is not None
    running = await client.post(f"/queue/events/{claim.event.event_id}/retry", headers=auth)
    assert running.status_code == 409
    assert "running now" in running.json()["detail"]
    unauthorised = await client.post(f"/queue/events/{claim.event.event_id}/retry")
    assert unauthorised.status_code == 401
