"""submit_event: the one way events are accepted (queue, history, counters), and heartbeats."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from rebalancer_shared.events import Command
from rebalancer_shared.heartbeats import beat, forget, read_heartbeats
from rebalancer_shared.intake import submit_event
from rebalancer_shared.metrics import Counter, read_counters
from rebalancer_shared.queue import EnqueueOutcome, EventQueue
from rebalancer_shared.store import EventStore
from tests.integration.queue.helpers import make_event


async def test_submit_records_queued_duplicate_and_coalesced(queue: EventQueue, store: EventStore) -> None:
    first = make_event("DU1", Command.REBALANCE)
    assert (await submit_event(queue, store, first)).outcome is EnqueueOutcome.QUEUED
    dup = await submit_event(queue, store, make_event("DU1", Command.REBALANCE))
    assert (dup.outcome, dup.event_id) == (EnqueueOutcome.DUPLICATE, str(first.event_id))
    claim = await queue.claim("w")
    assert claim is not None
    coalesced = await submit_event(queue, store, make_event("DU1", Command.REBALANCE))
    assert coalesced.outcome is EnqueueOutcome.COALESCED

    history = await store.history(first.event_id)
    assert history is not None
    assert [t["state"] for t in history["transitions"]] == ["queued", "duplicate", "coalesced"]
    counters = await read_counters(queue.redis, queue.keys.prefix)
    assert counters[Counter.EVENTS_QUEUED] == {"rebalance": 1}
    assert counters[Counter.EVENTS_DUPLICATE] == {"rebalance": 1}
    assert counters[Counter.EVENTS_COALESCED] == {"rebalance": 1}


async def test_heartbeats_are_read_back_newest_first(redis_client: Redis, prefix: str) -> None:
    instance = uuid.uuid4().hex[:6]
    await beat(redis_client, prefix, "event-broker", instance, "connected", channels=2)
    await beat(redis_client, prefix, "event-processor", "p1", "running")
    beats = await read_heartbeats(redis_client, prefix)
    assert [b.service for b in beats] == ["event-processor", "event-broker"]
    assert beats[1].state == "connected"
    assert beats[1].details == {"channels": 2}
    assert beats[1].age() < 5
    await forget(redis_client, prefix, "event-broker", instance)
    assert [b.service for b in await read_heartbeats(redis_client, prefix)] == ["event-processor"]
