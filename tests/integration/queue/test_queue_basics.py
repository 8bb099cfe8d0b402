"""EventQueue against the real Redis: dedup, FIFO, retry, coalescing, removal, stats."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from rebalancer_shared.events import Command
from rebalancer_shared.queue import (
    CompleteOutcome,
    EnqueueOutcome,
    EventNotQueuedError,
    EventProcessingError,
    EventQueue,
    EventState,
    LeaseLostError,
)
from rebalancer_shared.redis_connection import open_redis
from tests.integration.queue.helpers import make_event
from tests.support.servers import REDIS_URL


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def test_fifty_concurrent_enqueues_of_one_key_give_exactly_one_event(prefix: str) -> None:
    clients = [open_redis(REDIS_URL) for _ in range(50)]
    try:
        queues = [EventQueue(c, prefix) for c in clients]
        await asyncio.gather(*(c.ping() for c in clients))  # 50 open connections before the race
        results = await asyncio.gather(*(q.enqueue(make_event("DU1", Command.REBALANCE)) for q in queues))
        stats = await queues[0].stats()
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    queued = [r for r in results if r.outcome is EnqueueOutcome.QUEUED]
    assert len(queued) == 1
    assert {r.event_id for r in results} == {queued[0].event_id}
    assert all(r.outcome is EnqueueOutcome.DUPLICATE for r in results if r is not queued[0])
    assert (stats.queue_length, stats.active_events_count) == (1, 1)


async def test_different_commands_of_one_account_are_separate_events(queue: EventQueue) -> None:
    a = await queue.enqueue(make_event("DU1", Command.REBALANCE))
    b = await queue.enqueue(make_event("DU1", Command.PRINT_POSITIONS))
    c = await queue.enqueue(make_event("DU2", Command.REBALANCE))
    assert {a.outcome, b.outcome, c.outcome} == {EnqueueOutcome.QUEUED}
    assert (await queue.stats()).queue_length == 3


async def test_thousand_events_are_claimed_in_fifo_order_and_a_failure_goes_to_the_back(
    redis_client: Redis, prefix: str
) -> None:
    clock = FakeClock()
    queue = EventQueue(redis_client, prefix, clock=clock)
    ids = []
    for i in range(1000):
        ids.append((await queue.enqueue(make_event(f"A{i}"))).event_id)
    first = await queue.claim("w")
    assert first is not None
    assert str(first.event.event_id) == ids[0]
    assert (await queue.fail(first, "boom", retry_delay_seconds=30)).times_queued == 2
    stats = await queue.stats()
    assert (stats.retrying_count, stats.events_with_retries, stats.queue_length) == (1, 1, 999)

    claimed = []
    for _ in range(999):
        claim = await queue.claim("w")
        assert claim is not None
        claimed.append(str(claim.event.event_id))
        await queue.complete(claim)
    assert claimed == ids[1:]
    assert await queue.claim("w") is None, "a failed event is not claimable before its retry delay"

    clock.now += 29.9
    assert await queue.claim("w") is None
    clock.now += 0.2
    retried = await queue.claim("w")
    assert retried is not None
    assert str(retried.event.event_id) == ids[0]
    assert retried.event.times_queued == 2
    assert (await queue.complete(retried)).outcome is CompleteOutcome.COMPLETED
    stats = await queue.stats()
    assert (stats.queue_length, stats.active_events_count, stats.events_with_retries) == (0, 0, 0)


async def test_due_retry_goes_behind_events_queued_before_it_became_due(
    redis_client: Redis, prefix: str
) -> None:
    clock = FakeClock()
    queue = EventQueue(redis_client, prefix, clock=clock)
    failing = (await queue.enqueue(make_event("FAIL"))).event_id
    claim = await queue.claim("w")
    assert claim is not None
    await queue.fail(claim, "allocation API down", retry_delay_seconds=5)
    later = [(await queue.enqueue(make_event(f"B{i}"))).event_id for i in range(3)]
    clock.now += 10
    order = []
    while (c := await queue.claim("w")) is not None:
        order.append(str(c.event.event_id))
        await queue.complete(c)
    assert order == [*later, failing]


async def test_duplicate_while_processing_makes_it_run_exactly_once_more(queue: EventQueue) -> None:
    original = await queue.enqueue(make_event("DU1", Command.REBALANCE))
    claim = await queue.claim("w")
    assert claim is not None
    dup = await queue.enqueue(make_event("DU1", Command.REBALANCE))
    again = await queue.enqueue(make_event("DU1", Command.REBALANCE))
    assert (dup.outcome, dup.event_id) == (EnqueueOutcome.COALESCED, original.event_id)
    assert again.outcome is EnqueueOutcome.COALESCED
    assert (await queue.complete(claim)).outcome is CompleteOutcome.RERUN
    rerun = await queue.claim("w")
    assert rerun is not None
    assert str(rerun.event.event_id) == original.event_id
    assert rerun.event.times_queued == 1, "a rerun is not a retry"
    assert (await queue.complete(rerun)).outcome is CompleteOutcome.COMPLETED
    assert await queue.claim("w") is None
    assert (await queue.stats()).active_events_count == 0


async def test_duplicate_while_queued_or_retrying_is_dropped(queue: EventQueue) -> None:
    first = await queue.enqueue(make_event("DU1", Command.REBALANCE))
    assert (await queue.enqueue(make_event("DU1", Command.REBALANCE))).outcome is EnqueueOutcome.DUPLICATE
    claim = await queue.claim("w")
    assert claim is not None
    await queue.fail(claim, "x", retry_delay_seconds=60)
    dup = await queue.enqueue(make_event("DU1", Command.REBALANCE))
    assert (dup.outcome, dup.event_id) == (EnqueueOutcome.DUPLICATE, first.event_id)


async def test_dedup_key_is_cleared_when_the_event_finishes(queue: EventQueue) -> None:
    await queue.enqueue(make_event("DU1", Command.REBALANCE))
    claim = await queue.claim("w")
    assert claim is not None
    await queue.complete(claim)
    assert (await queue.enqueue(make_event("DU1", Command.REBALANCE))).outcome is EnqueueOutcome.QUEUED


async def test_remove_clears_the_event_and_its_dedup_key(queue: EventQueue) -> None:
    a = await queue.enqueue(make_event("DU1"))
    b = await queue.enqueue(make_event("DU2"))
    removed = await queue.remove(a.event_id)
    assert str(removed.event.event_id) == a.event_id
    stats = await queue.stats()
    assert (stats.queue_length, stats.active_events_count) == (1, 1)
    assert (await queue.enqueue(make_event("DU1"))).outcome is EnqueueOutcome.QUEUED
    claim = await queue.claim("w")
    assert claim is not None
    assert str(claim.event.event_id) == b.event_id, "the removed event is never claimed"
    with pytest.raises(EventNotQueuedError):
        await queue.remove(a.event_id)
    with pytest.raises(EventProcessingError):
        await queue.remove(b.event_id)


async def test_remove_a_retrying_event(queue: EventQueue) -> None:
    a = await queue.enqueue(make_event("DU1"))
    claim = await queue.claim("w")
    assert claim is not None
    await queue.fail(claim, "x", retry_delay_seconds=0)
    await queue.remove(a.event_id)
    stats = await queue.stats()
    assert (stats.retrying_count, stats.events_with_retries, stats.active_events_count) == (0, 0, 0)
    assert await queue.claim("w") is None


async def test_expired_lease_returns_the_event_to_the_back_with_its_retry_counted(
    redis_client: Redis, prefix: str
) -> None:
    clock = FakeClock()
    queue = EventQueue(redis_client, prefix, lease_seconds=30, clock=clock)
    held = await queue.enqueue(make_event("DU1"))
    other = await queue.enqueue(make_event("DU2"))
    claim = await queue.claim("dead-worker")
    assert claim is not None
    clock.now += 20
    await queue.renew(claim)
    clock.now += 29
    assert await queue.reap() == [], "a renewed lease is not reaped"
    clock.now += 2
    assert [(r.event_id, r.times_queued) for r in await queue.reap()] == [(held.event_id, 2)]
    with pytest.raises(LeaseLostError):
        await queue.complete(claim)
    with pytest.raises(LeaseLostError):
        await queue.renew(claim)
    order = []
    while (c := await queue.claim("w")) is not None:
        order.append((str(c.event.event_id), c.event.times_queued))
    assert order == [(other.event_id, 1), (held.event_id, 2)]


async def test_list_events_oldest_first_with_state(queue: EventQueue) -> None:
    ids = [(await queue.enqueue(make_event(f"A{i}"))).event_id for i in range(5)]
    claim = await queue.claim("w")
    assert claim is not None
    views = await queue.list_events(limit=3)
    assert [str(v.event.event_id) for v in views] == ids[:3]
    assert [v.state for v in views] == [EventState.PROCESSING, EventState.QUEUED, EventState.QUEUED]
    assert await queue.get("missing") is None


async def test_stats_report_oldest_age(redis_client: Redis, prefix: str) -> None:
    clock = FakeClock()
    queue = EventQueue(redis_client, prefix, clock=clock)
    assert (await queue.stats()).oldest_event_age_seconds is None
    from datetime import UTC, datetime

    created = datetime.fromtimestamp(clock.now - 120, tz=UTC)
    await queue.enqueue(make_event("DU1", created_at=created))
    age = (await queue.stats()).oldest_event_age_seconds
    assert age is not None
    assert age == pytest.approx(120, abs=0.01)
