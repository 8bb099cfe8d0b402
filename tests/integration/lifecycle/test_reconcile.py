"""Reconciliation: what Redis lost (wiped, restarted empty, one event gone) is restored from
PostgreSQL through the lifecycle, with no duplicates, never an event that finished, and a processing
event only after one lease period (its run may still be going)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from rebalancer_shared.events import Command, EventSource
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EnqueueOutcome, EventQueue, EventState, Wait
from rebalancer_shared.recovery import reconcile_queue
from rebalancer_shared.store import EventStore
from tests.integration.queue.helpers import make_event
from tests.support.servers import throwaway_redis

LEASE = 1.0


@pytest.fixture
async def own_lifecycle(fresh_store: EventStore) -> AsyncIterator[EventLifecycle]:
    with throwaway_redis() as server:
        client = Redis.from_url(server.url)
        try:
            yield EventLifecycle(EventQueue(client, "rb", lease_seconds=LEASE), fresh_store)
        finally:
            await client.aclose()


async def _scene(lifecycle: EventLifecycle) -> list[str]:
    """DU0 completed, DU1 removed, DU2 retrying, DU3 processing; DU4 and DU5 queued."""
    events = [make_event(f"DU{i}", Command.REBALANCE) for i in range(6)]
    for event in events:
        await lifecycle.submit(event)
    done = await lifecycle.claim("w", 0)
    assert done is not None
    await lifecycle.complete(done)
    await lifecycle.remove(str(events[1].event_id), "not wanted")
    failing = await lifecycle.claim("w", 0)
    assert failing is not None
    await lifecycle.fail(failing, "boom", retry_delay_seconds=30)
    assert await lifecycle.claim("w", 0) is not None
    return [str(e.event_id) for e in events]


async def test_a_wiped_redis_gets_exactly_the_unfinished_events_back(own_lifecycle: EventLifecycle) -> None:
    queue, store = own_lifecycle.queue, own_lifecycle.store
    first = await reconcile_queue(own_lifecycle, LEASE)
    assert (first.redis_was_wiped, first.restored) == (False, 0), "a first start is not a loss"
    ids = await _scene(own_lifecycle)
    assert (await reconcile_queue(own_lifecycle, LEASE)).restored == 0, "nothing lost: nothing restored"

    await queue.redis.flushall()
    report = await reconcile_queue(own_lifecycle, LEASE)

    assert (report.redis_was_wiped, report.restored) == (True, 4)
    views = {v.event.account_id: v for v in await queue.list_events(limit=100)}
    assert sorted(views) == ["DU2", "DU3", "DU4", "DU5"]
    assert views["DU3"].state is EventState.RETRYING, "a processing event waits one lease"
    assert views["DU3"].event.times_queued == 2, "the interrupted run counts as an attempt"
    assert {views[a].state for a in ("DU2", "DU4", "DU5")} == {EventState.QUEUED}
    assert {v.event.source for v in views.values()} == {EventSource.RECOVERY}
    history = await store.history(views["DU3"].event.event_id)
    assert history is not None
    assert history.transitions[-1].state == "recovered"

    claimed = [await own_lifecycle.claim("w", 0) for _ in range(4)]
    assert sorted(c.event.account_id for c in claimed if c) == ["DU2", "DU4", "DU5"]
    await asyncio.sleep(LEASE + 0.1)
    late = await own_lifecycle.claim("w", 0)
    assert late is not None
    assert late.event.account_id == "DU3"
    again = await reconcile_queue(own_lifecycle, LEASE)
    assert (again.redis_was_wiped, again.restored) == (False, 0)
    assert ids[0] not in {str(v.event.event_id) for v in views.values()}


async def test_one_lost_event_is_restored_while_the_others_stay(own_lifecycle: EventLifecycle) -> None:
    queue = own_lifecycle.queue
    await reconcile_queue(own_lifecycle, LEASE)
    kept, lost = make_event("DU1"), make_event("DU2")
    await own_lifecycle.submit(kept)
    await own_lifecycle.submit(lost)
    # A failover to a replica that missed the last writes: the event and its key are gone.
    await queue.redis.hdel(queue.keys.events, str(lost.event_id))
    await queue.redis.hdel(queue.keys.bodies, str(lost.event_id))
    await queue.redis.hdel(queue.keys.dedup, lost.dedup_key)
    await queue.redis.zrem(queue.keys.order, str(lost.event_id))

    report = await reconcile_queue(own_lifecycle, LEASE)

    assert (report.redis_was_wiped, report.restored, report.already_queued) == (False, 1, 1)
    assert sorted(v.event.account_id for v in await queue.list_events(10)) == ["DU1", "DU2"]


async def test_an_event_that_finished_before_its_history_arrived_is_not_restored(
    own_lifecycle: EventLifecycle,
) -> None:
    queue, store = own_lifecycle.queue, own_lifecycle.store
    await reconcile_queue(own_lifecycle, LEASE)
    event = make_event("DU1", Command.REBALANCE)
    await own_lifecycle.submit(event)
    claim = await own_lifecycle.claim("w", 0)
    assert claim is not None
    await queue.complete(claim)  # the queue step alone: PostgreSQL still says processing
    row = await store.get_event(event.event_id)
    assert row is not None
    assert row.status == "processing"

    assert (await reconcile_queue(own_lifecycle, LEASE)).restored == 0
    assert await queue.list_events(10) == []
    await own_lifecycle.outbox.drain()
    row = await store.get_event(event.event_id)
    assert row is not None
    assert row.status == "completed"


async def test_a_lost_event_whose_key_is_live_again_is_superseded(own_lifecycle: EventLifecycle) -> None:
    queue, store = own_lifecycle.queue, own_lifecycle.store
    await reconcile_queue(own_lifecycle, LEASE)
    old, new = make_event("DU1"), make_event("DU1")
    await own_lifecycle.submit(old)
    await queue.redis.flushall()
    await queue.redis.set(queue.keys.marker, "kept")  # so this pass is a partial loss
    await own_lifecycle.submit(new)

    report = await reconcile_queue(own_lifecycle, LEASE)

    assert report.restored == 0
    assert [str(v.event.event_id) for v in await queue.list_events(10)] == [str(new.event_id)]
    history = await store.history(old.event_id)
    assert history is not None
    assert (history.event.status, history.transitions[-1].state) == ("removed", "superseded")


async def test_scheduled_and_needs_attention_events_come_back_in_their_state_and_due_time(
    own_lifecycle: EventLifecycle,
) -> None:
    queue = own_lifecycle.queue
    await reconcile_queue(own_lifecycle, LEASE)
    due = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    waits = {
        "DU1": Wait(EventState.SCHEDULED, FailureClass.MARKET_CLOSED, due_at=due, attempted=False),
        "DU2": Wait(EventState.NEEDS_ATTENTION, FailureClass.NEEDS_ATTENTION, due_at=due),
    }
    for account, wait in waits.items():
        await own_lifecycle.submit(make_event(account, Command.REBALANCE))
        claim = await own_lifecycle.claim("w", 0)
        assert claim is not None
        await own_lifecycle.fail(claim, f"{account} waits", wait=wait)
    before = {v.event.account_id: v for v in await queue.list_events()}

    await queue.redis.flushall()
    report = await reconcile_queue(own_lifecycle, LEASE)

    assert (report.redis_was_wiped, report.restored) == (True, 2)
    after = {v.event.account_id: v for v in await queue.list_events()}
    for account, wait in waits.items():
        view = after[account]
        assert (view.state, view.failure_class, view.due_at) == (wait.state, wait.failure_class, due)
        assert view.event.times_queued == before[account].event.times_queued
    stats = await queue.stats()
    assert (stats.scheduled_count, stats.needs_attention_count, stats.queue_length) == (1, 1, 0)
    assert await own_lifecycle.claim("w", 0) is None, "not due for five days"
    again = await own_lifecycle.submit(make_event("DU1", Command.REBALANCE))
    assert again.outcome is EnqueueOutcome.COALESCED, "a new trigger still meets the restored event"
    assert (await own_lifecycle.claim("w", 0)) is not None


async def test_an_upgrade_to_the_tagged_key_layout_rebuilds_the_queue_from_postgresql(
    own_lifecycle: EventLifecycle,
) -> None:
    """Before the Redis HA release the keys were `rb:q:...` and each event a hash `rb:q:event:<id>`;
    now they are `{rb}:q:...` (queue/keys.py). The new release reads none of the old keys: it finds
    its own namespace empty and restores every unfinished event from PostgreSQL, and leaves the old
    keys for the operator to delete (README, Redis topologies)."""
    queue = own_lifecycle.queue
    await reconcile_queue(own_lifecycle, LEASE)
    await _scene(own_lifecycle)
    old_keys = {"rb:q:order": "zset", "rb:q:event:1": "hash", "rb:q:seq": "string"}
    await queue.redis.zadd("rb:q:order", {"1": 1})
    await queue.redis.hset("rb:q:event:1", mapping={"state": "queued"})
    await queue.redis.set("rb:q:seq", 7)
    for pattern in queue.keys.all_patterns():  # what an upgrade finds: nothing under the new names
        async for key in queue.redis.scan_iter(match=pattern):
            await queue.redis.delete(key)

    report = await reconcile_queue(own_lifecycle, LEASE)

    assert report.restored == 4
    assert sorted(v.event.account_id for v in await queue.list_events(limit=100)) == [
        "DU2",
        "DU3",
        "DU4",
        "DU5",
    ]
    for key, kind in old_keys.items():
        found = await queue.redis.type(key)
        assert (found.decode() if isinstance(found, bytes) else found) == kind, f"{key} was left alone"
