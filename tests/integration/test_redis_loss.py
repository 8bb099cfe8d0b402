"""A wiped Redis (a throwaway redis-server of this test's own) is rebuilt from PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from rebalancer_shared.events import Command, EventSource
from rebalancer_shared.queue import EventQueue, EventState
from rebalancer_shared.recovery import ensure_queue_state
from rebalancer_shared.store import EventStore, Transition
from tests.integration.queue.helpers import make_event
from tests.support.servers import ThrowawayRedis, throwaway_redis


@pytest.fixture
async def own_redis() -> AsyncIterator[ThrowawayRedis]:
    with throwaway_redis() as server:
        yield server


async def test_wiped_redis_is_rebuilt_with_exactly_the_unfinished_events(
    own_redis: ThrowawayRedis, fresh_store: EventStore
) -> None:
    client = Redis.from_url(own_redis.url)
    try:
        queue = EventQueue(client, "rb")
        first = await ensure_queue_state(queue, fresh_store)
        assert (first.redis_was_wiped, first.restored) == (False, 0), "first start is not a loss"

        events = [make_event(f"DU{i}", Command.REBALANCE) for i in range(6)]
        for event in events:
            await queue.enqueue(event)
            await fresh_store.record(event, Transition.QUEUED)
        # DU0 completes, DU1 is removed, DU2 fails and waits, DU3 is mid-run; DU4, DU5 stay queued.
        done = await queue.claim("w")
        assert done is not None
        await queue.complete(done)
        await fresh_store.record(events[0], Transition.COMPLETED)
        await queue.remove(str(events[1].event_id))
        await fresh_store.record(events[1], Transition.REMOVED)
        failing = await queue.claim("w")
        assert failing is not None
        await queue.fail(failing, "boom", retry_delay_seconds=30)
        await fresh_store.record(events[2], Transition.RETRYING, times_queued=2, detail="boom")
        running = await queue.claim("w")
        assert running is not None
        await fresh_store.record(events[3], Transition.PROCESSING)

        assert (await ensure_queue_state(queue, fresh_store)).redis_was_wiped is False
        await client.flushall()  # the throwaway server loses everything

        report = await ensure_queue_state(queue, fresh_store)
        assert (report.redis_was_wiped, report.restored, report.already_queued) == (True, 4, 0)
        views = await queue.list_events(limit=100)
        assert [v.event.account_id for v in views] == ["DU2", "DU3", "DU4", "DU5"]
        assert [v.event.times_queued for v in views] == [2, 2, 1, 1]
        assert {v.state for v in views} == {EventState.QUEUED}
        assert {v.event.source for v in views} == {EventSource.RECOVERY}
        history = await fresh_store.history(events[3].event_id)
        assert history is not None
        assert history["transitions"][-1]["state"] == "recovered"

        again = await ensure_queue_state(queue, fresh_store)
        assert (again.redis_was_wiped, again.restored) == (False, 0)
        stats = await queue.stats()
        assert (stats.queue_length, stats.active_events_count) == (4, 4)
    finally:
        await client.aclose()


async def test_rebuild_never_duplicates_events_redis_still_holds(
    own_redis: ThrowawayRedis, fresh_store: EventStore
) -> None:
    client = Redis.from_url(own_redis.url)
    try:
        queue = EventQueue(client, "rb")
        await ensure_queue_state(queue, fresh_store)
        event = make_event("DU1")
        await queue.enqueue(event)
        await fresh_store.record(event, Transition.QUEUED)
        await client.delete(queue.keys.marker)  # marker lost but the queue survived
        report = await ensure_queue_state(queue, fresh_store)
        assert (report.redis_was_wiped, report.restored, report.already_queued) == (True, 0, 1)
        assert (await queue.stats()).queue_length == 1
    finally:
        await client.aclose()
