"""Operator actions on the queue that are more than one call: removing an event records and counts it."""

from __future__ import annotations

import uuid

import structlog

from rebalancer_shared.events import Event
from rebalancer_shared.metrics import Counter, count
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore, Transition

log = structlog.get_logger(__name__)
REMOVED_DETAIL = "removed by an operator through the management API"


async def remove_event(queue: EventQueue, store: EventStore, event_id: uuid.UUID) -> Event:
    """Remove a queued or retrying event (and its dedup key, atomically), then record and count it.

    Raises `EventNotQueuedError` when the event is not live and `EventProcessingError` while it runs.
    """
    event = await queue.remove(str(event_id))
    await store.record(event, Transition.REMOVED, times_queued=event.times_queued, detail=REMOVED_DETAIL)
    await count(queue.redis, queue.keys.prefix, Counter.EVENTS_REMOVED, event.exec_command.value)
    log.info(
        "event removed by an operator",
        event_id=str(event.event_id),
        account_id=event.account_id,
        command=event.exec_command.value,
        times_queued=event.times_queued,
    )
    return event
