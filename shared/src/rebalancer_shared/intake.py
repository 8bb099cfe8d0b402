"""Accepting an event: the one path by which the broker, the management API and the CLI queue work.

The event goes to Redis first (the atomic dedup decides), then its history to PostgreSQL: a crash in
between leaves a queued event whose missing "queued" row the processor's first write heals, whereas
the other order could leave a history row for an event that was never queued.

A trigger is accepted whole or not at all: when the history write fails, the event is taken out of
the queue again and `TriggerNotAcceptedError` says nothing was queued, so a retry is a fresh submit,
not a "duplicate" of a half-accepted one. If a processor already claimed it, it was accepted (its
run writes the history row) and the answer says queued.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.exc import SQLAlchemyError

from rebalancer_shared.errors import ServerUnavailableError
from rebalancer_shared.events import Event
from rebalancer_shared.metrics import Counter, count
from rebalancer_shared.queue import (
    EnqueueOutcome,
    EnqueueResult,
    EventNotQueuedError,
    EventProcessingError,
    EventQueue,
)
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


class TriggerNotAcceptedError(ServerUnavailableError):
    """The trigger was not accepted: its history could not be written, so nothing is queued."""


async def _record_or_withdraw(queue: EventQueue, store: EventStore, event: Event) -> None:
    try:
        await store.record(event, Transition.QUEUED)
    except (SQLAlchemyError, OSError) as exc:
        try:
            await queue.remove(str(event.event_id))
        except (EventProcessingError, EventNotQueuedError):
            log.warning(
                "the history write failed but a processor already took the event: it is accepted "
                "and its run writes the history",
                event_id=str(event.event_id),
                error=str(exc).splitlines()[0],
            )
            return
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise TriggerNotAcceptedError(
            f"not accepted, nothing was queued: the history could not be written ({reason})"
        ) from exc


async def submit_event(queue: EventQueue, store: EventStore, event: Event) -> EnqueueResult:
    """Enqueue with dedup, record the outcome in the history and the counters, and log it.

    Raises `TriggerNotAcceptedError` when the history cannot be written (nothing stays queued).
    """
    result = await queue.enqueue(event)
    command = event.exec_command.value
    bound = log.bind(account_id=event.account_id, command=command, source=event.source.value)
    if result.outcome is EnqueueOutcome.QUEUED:
        await _record_or_withdraw(queue, store, event)
        bound.info("event queued", event_id=result.event_id)
    else:
        transition, detail = _NOTE[result.outcome]
        await store.note(uuid.UUID(result.event_id), transition, f"{detail} (trigger {event.event_id})")
        bound.info(
            f"event {result.outcome.value}", event_id=result.event_id, dropped_event_id=str(event.event_id)
        )
    await count(queue.redis, queue.keys.prefix, _COUNTER[result.outcome], command)
    return result
