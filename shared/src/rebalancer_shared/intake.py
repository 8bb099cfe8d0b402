"""Accepting an event: the one path by which the broker, the management API and the CLI queue work.

The event goes to Redis first (the atomic dedup decides), then its history to PostgreSQL: a crash in
between leaves a queued event whose missing "queued" row the processor's first write heals, whereas
the other order could leave a history row for an event that was never queued.
"""

from __future__ import annotations

import uuid

import structlog

from rebalancer_shared.events import Event
from rebalancer_shared.metrics import Counter, count
from rebalancer_shared.queue import EnqueueOutcome, EnqueueResult, EventQueue
from rebalancer_shared.store import EventStore, Transition

log = structlog.get_logger(__name__)

_COUNTER = {
    EnqueueOutcome.QUEUED: Counter.EVENTS_QUEUED,
    EnqueueOutcome.DUPLICATE: Counter.EVENTS_DUPLICATE,
    EnqueueOutcome.COALESCED: Counter.EVENTS_COALESCED,
}
_NOTE = {
    EnqueueOutcome.DUPLICATE: (
        Transition.DUPLICATE,
        "duplicate trigger dropped: the event is already queued",
    ),
    EnqueueOutcome.COALESCED: (
        Transition.COALESCED,
        "duplicate trigger while processing: will run once more",
    ),
}


async def submit_event(queue: EventQueue, store: EventStore, event: Event) -> EnqueueResult:
    """Enqueue with dedup, record the outcome in the history and the counters, and log it."""
    result = await queue.enqueue(event)
    command = event.exec_command.value
    bound = log.bind(account_id=event.account_id, command=command, source=event.source.value)
    if result.outcome is EnqueueOutcome.QUEUED:
        await store.record(event, Transition.QUEUED)
        bound.info("event queued", event_id=result.event_id)
    else:
        transition, detail = _NOTE[result.outcome]
        await store.note(uuid.UUID(result.event_id), transition, f"{detail} (trigger {event.event_id})")
        bound.info(
            f"event {result.outcome.value}", event_id=result.event_id, dropped_event_id=str(event.event_id)
        )
    await count(queue.redis, queue.keys.prefix, _COUNTER[result.outcome], command)
    return result
