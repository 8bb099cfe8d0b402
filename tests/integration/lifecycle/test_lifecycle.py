"""`EventLifecycle` on the real Redis and PostgreSQL: every transition is queue step, history,
counter and log line at once; the history of a step survives a PostgreSQL outage (the outbox);
submitting one trigger twice makes one event; secrets never reach Redis or the history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from rebalancer_shared.events import Command
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.logging import register_secret
from rebalancer_shared.metrics import Counter, read_counters
from rebalancer_shared.queue import EnqueueOutcome, EventQueue
from rebalancer_shared.store import EventStore
from tests.integration.queue.helpers import make_event
from tests.support.servers import free_port


async def states(store: EventStore, event_id: uuid.UUID) -> list[str]:
    history = await store.history(event_id)
    assert history is not None
    return [t.state for t in history.transitions]


async def test_submit_queues_or_notes_and_counts(lifecycle: EventLifecycle, store: EventStore) -> None:
    first = make_event("DU1", Command.REBALANCE)
    assert (await lifecycle.submit(first)).outcome is EnqueueOutcome.QUEUED
    dup = await lifecycle.submit(make_event("DU1", Command.REBALANCE))
    assert (dup.outcome, dup.event_id) == (EnqueueOutcome.DUPLICATE, str(first.event_id))
    assert await lifecycle.claim("w", 0) is not None
    coalesced = await lifecycle.submit(make_event("DU1", Command.REBALANCE))
    assert coalesced.outcome is EnqueueOutcome.COALESCED

    assert await states(store, first.event_id) == ["queued", "duplicate", "processing", "coalesced"]
    counters = await read_counters(lifecycle.queue.redis, lifecycle.queue.keys.prefix)
    assert counters[Counter.EVENTS_QUEUED] == {"rebalance": 1}
    assert counters[Counter.EVENTS_DUPLICATE] == {"rebalance": 1}
    assert counters[Counter.EVENTS_COALESCED] == {"rebalance": 1}


async def test_the_same_trigger_submitted_again_is_one_event_live_or_finished(
    lifecycle: EventLifecycle, store: EventStore
) -> None:
    event = make_event("DU2", Command.REBALANCE)
    assert (await lifecycle.submit(event)).outcome is EnqueueOutcome.QUEUED
    assert (await lifecycle.submit(event)).outcome is EnqueueOutcome.ALREADY_ACCEPTED
    claim = await lifecycle.claim("w", 0)
    assert claim is not None
    await lifecycle.complete(claim)
    again = await lifecycle.submit(event)  # a replayed message, after its event finished
    assert (again.outcome, again.event_id) == (EnqueueOutcome.ALREADY_ACCEPTED, str(event.event_id))
    assert await lifecycle.claim("w", 0) is None, "it does not run a second time"
    assert await states(store, event.event_id) == ["queued", "processing", "completed"]


async def test_every_transition_is_in_the_history(lifecycle: EventLifecycle, store: EventStore) -> None:
    event = make_event("DU3", Command.REBALANCE)
    await lifecycle.submit(event)
    claim = await lifecycle.claim("w", 0)
    assert claim is not None
    await lifecycle.fail(claim, "AllocationError: weights sum to 0.9000", retry_delay_seconds=0)
    claim = await lifecycle.claim("w", 0)
    assert claim is not None
    await lifecycle.release(claim)
    claim = await lifecycle.claim("w", 0)
    assert claim is not None
    await lifecycle.complete(claim)
    assert await states(store, event.event_id) == [
        "queued",
        "processing",
        "retrying",
        "processing",
        "requeued",
        "processing",
        "completed",
    ]
    other = make_event("DU4")
    await lifecycle.submit(other)
    await lifecycle.remove(str(other.event_id), "removed by an operator (test)")
    row = await store.get_event(other.event_id)
    assert row is not None
    assert row.status == "removed"


async def test_a_reaped_lease_is_recorded(queue: EventQueue, store: EventStore) -> None:
    short = EventLifecycle(EventQueue(queue.redis, queue.keys.prefix, lease_seconds=0.05), store)
    event = make_event("DU5")
    await short.submit(event)
    assert await short.claim("w", 0) is not None
    await asyncio.sleep(0.1)
    reaped = await short.reap()
    assert [(r.event_id, r.times_queued) for r in reaped] == [(str(event.event_id), 2)]
    assert await states(store, event.event_id) == ["queued", "processing", "requeued"]


@pytest.fixture
async def unreachable_store() -> AsyncIterator[EventStore]:
    store = EventStore.from_url(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    yield store
    await store.close()


async def test_a_step_taken_while_postgresql_is_down_reaches_the_history_later(
    queue: EventQueue, store: EventStore, unreachable_store: EventStore
) -> None:
    down = EventLifecycle(queue, unreachable_store)
    event = make_event("DU6", Command.REBALANCE)
    assert (await down.submit(event)).outcome is EnqueueOutcome.QUEUED  # accepted all the same
    claim = await down.claim("w", 0)
    assert claim is not None
    await down.complete(claim)
    assert await store.get_event(event.event_id) is None
    assert await down.outbox.pending() == 3

    up = EventLifecycle(queue, store)
    assert await up.outbox.drain() == 3
    assert await states(store, event.event_id) == ["queued", "processing", "completed"]
    assert await up.outbox.pending() == 0


async def test_secrets_in_an_error_reach_neither_redis_nor_the_history(
    lifecycle: EventLifecycle, store: EventStore
) -> None:
    key, password = f"alloc-{uuid.uuid4().hex}", f"ib-{uuid.uuid4().hex}"
    register_secret(key)
    register_secret(password)
    event = make_event("DU7", Command.REBALANCE)
    await lifecycle.submit(event)
    claim = await lifecycle.claim("w", 0)
    assert claim is not None
    await lifecycle.fail(claim, f"HTTP 401 for key {key}; login {password} refused", retry_delay_seconds=30)
    view = await lifecycle.queue.get(str(event.event_id))
    assert view is not None
    assert view.last_error == "HTTP 401 for key ***; login *** refused"
    history = await store.history(event.event_id)
    assert key not in repr(history)
    assert password not in repr(history)


async def test_a_claims_history_written_alongside_the_run_lands_and_never_undoes_a_later_step(
    lifecycle: EventLifecycle, store: EventStore
) -> None:
    # The worker's claim writes its history while the run starts; the run may end (complete) before
    # that write lands. Both land, in order, and the event's row ends completed.
    event = make_event("DU9", Command.REBALANCE)
    await lifecycle.submit(event)
    claimed = await lifecycle.claim_for_run("w", 0)
    assert claimed is not None
    claim, _ = claimed
    await lifecycle.complete(claim)
    await lifecycle.settle()

    assert await states(store, event.event_id) == ["queued", "processing", "completed"]
    history = await store.history(event.event_id)
    assert history is not None
    assert history.event.status == "completed"


class _CancelBecomesAnError(EventStore):
    """A history write that, cancelled midway, raises the driver's error instead (as a database
    driver may after its rollback): the CancelledError never reaches the caller."""

    def __init__(self, store: EventStore, writing: asyncio.Event) -> None:
        super().__init__(store.engine)
        self.writing = writing

    async def apply_history(self, records: object) -> None:
        self.writing.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("connection closed while a transaction was rolled back") from None


async def test_the_outbox_drainer_stops_when_cancelled_even_if_the_cancel_comes_back_as_an_error(
    queue: EventQueue, store: EventStore
) -> None:
    writing = asyncio.Event()
    unlucky = EventLifecycle(queue, _CancelBecomesAnError(store, writing))
    down = EventLifecycle(queue, EventStore.from_url(f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
    try:
        await down.submit(make_event("DU7", Command.REBALANCE))  # left in the outbox
    finally:
        await down.store.close()
    drainer = asyncio.create_task(unlucky.outbox.run_drainer(interval_seconds=0.05))
    await asyncio.wait_for(writing.wait(), 5)
    drainer.cancel()
    done, _ = await asyncio.wait([drainer], timeout=5)
    assert drainer in done, "the drainer went on after its cancel"
    assert drainer.cancelled()
    await EventLifecycle(queue, store).outbox.drain()  # leave nothing for the other tests
