"""`EventLifecycle`: the one place that moves an event from state to state.

Each transition is one call here, and the call does the whole sequence, the same way for every
caller (the event broker, the management API, the CLI, the processor's worker, the recovery):

1. the queue step: one Lua script that changes Redis, appends the transition to the outbox stream
   and bumps its counter, atomically (queue/scripts.py);
2. the history: the step's outbox entries written to PostgreSQL at once (`Outbox.flush`; for the
   worker's claim, alongside the run it starts); if that fails they stay in the stream and a drainer
   writes them later, so the history is late, never wrong or missing (outbox.py);
3. the log line, with event_id, account_id and command.

No other code writes an event's state to Redis or its transitions to PostgreSQL. Texts that reach
Redis or the history (errors, details) are redacted first: secrets are never stored.

Transitions: submit (queued, or a duplicate/coalesced note, or already accepted, or a scheduled or
needs-attention event brought forward), claim (processing), complete (completed, or rerun), fail
(retrying, scheduled or needs_attention, by the failure's class), retry_now (an operator makes a
waiting event due), release (requeued at shutdown), reap (requeued after a lease expired), remove,
restore (recovered) and supersede (a lost event whose key another live event holds).
"""

from __future__ import annotations

import asyncio

import structlog

from rebalancer_shared.events import Event
from rebalancer_shared.logging import redact_text
from rebalancer_shared.outbox import Outbox
from rebalancer_shared.queue import (
    Claim,
    ClaimWakeup,
    CompleteOutcome,
    CompleteResult,
    EnqueueOutcome,
    EnqueueResult,
    EventQueue,
    FailResult,
    Reaped,
    RestoreOutcome,
    RestoreResult,
    RetryNowOutcome,
    Wait,
)
from rebalancer_shared.store import EventStore

log = structlog.get_logger(__name__)


def _bound(event: Event) -> structlog.stdlib.BoundLogger:
    bound: structlog.stdlib.BoundLogger = log.bind(
        event_id=str(event.event_id), account_id=event.account_id, command=event.exec_command.value
    )
    return bound


class EventLifecycle:
    """Transitions of the events of one deployment (one queue, one history)."""

    def __init__(self, queue: EventQueue, store: EventStore) -> None:
        self.queue = queue
        self.store = store
        self.outbox = Outbox(queue.redis, queue.keys, store)
        self._writes: set[asyncio.Task[None]] = set()

    async def submit(self, event: Event) -> EnqueueResult:
        """Accept a trigger: queue it (deduplicated by account and command), or note it on the live
        event of its key. The same event submitted again changes nothing (`ALREADY_ACCEPTED`)."""
        result = await self.queue.enqueue(event)
        await self.outbox.flush(result.entries)
        bound = _bound(event).bind(source=event.source.value)
        if result.outcome is EnqueueOutcome.QUEUED:
            bound.info("event queued")
        elif result.outcome is EnqueueOutcome.ALREADY_ACCEPTED:
            bound.info("event already accepted: nothing to do")
        else:
            bound.info(f"event {result.outcome.value}", live_event_id=result.event_id)
        return result

    async def claim(self, owner: str, wait_seconds: float, wakeup: ClaimWakeup | None = None) -> Claim | None:
        """Take the oldest queued event under a lease (recorded as processing), waiting up to
        `wait_seconds` for one (woken by `wakeup`, see EventQueue.claim_wait)."""
        claim = await self.queue.claim_wait(owner, wait_seconds=wait_seconds, wakeup=wakeup)
        if claim is not None:
            await self.outbox.flush(claim.entries)
        return claim

    async def claim_for_run(
        self, owner: str, wait_seconds: float, wakeup: ClaimWakeup | None = None
    ) -> tuple[Claim, asyncio.Task[None]] | None:
        """`claim`, with its history written alongside the run the caller starts (the processor's
        worker: the write is off a trigger's path to its first order), as the task returned; the
        run's own history waits for it. Nothing is lost or reordered by that: the entry stays in the
        outbox until written, and a write that lands after a later one of the same event does not
        move its row back (history_writes.py). `settle()` waits for every such write."""
        claim = await self.queue.claim_wait(owner, wait_seconds=wait_seconds, wakeup=wakeup)
        if claim is None:
            return None
        task = asyncio.create_task(self.outbox.flush(claim.entries))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return claim, task

    async def settle(self) -> None:
        """Wait for the history writes still running alongside runs (`claim_for_run`)."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def complete(self, claim: Claim, claim_next_for: str | None = None) -> CompleteResult:
        """End a successful run; with `claim_next_for`, claim the next event in the same step."""
        if claim_next_for is None:
            result = await self.queue.complete(claim)
        else:
            result = await self.queue.complete_and_claim(claim, claim_next_for)
        await self.outbox.flush(result.entries + (result.next_claim.entries if result.next_claim else ()))
        if result.outcome is CompleteOutcome.RERUN:
            _bound(claim.event).info(
                "event completed; it runs once more for a trigger that arrived meanwhile"
            )
        else:
            _bound(claim.event).info("event completed", times_queued=claim.event.times_queued)
        return result

    async def fail(
        self, claim: Claim, error: str, retry_delay_seconds: float = 0.0, *, wait: Wait | None = None
    ) -> FailResult:
        """End a run that did not succeed: the event waits as `wait` says (by default retrying at the
        back of the queue after `retry_delay_seconds`)."""
        error = redact_text(error)
        wait = wait or Wait(delay_seconds=retry_delay_seconds)
        result = await self.queue.fail(claim, error, wait=wait)
        await self.outbox.flush(result.entries)
        due = result.due_at.isoformat() if result.due_at else None
        _bound(claim.event).warning(
            f"event {wait.state.value}: it waits until {due}",
            error=error,
            failure_class=wait.failure_class.value,
            times_queued=result.times_queued,
            due_at=due,
        )
        return result

    async def retry_now(self, event_id: str, detail: str) -> RetryNowOutcome:
        """An operator's "retry now" of a waiting event (a processing one is refused)."""
        outcome, entries = await self.queue.retry_now(event_id, redact_text(detail))
        await self.outbox.flush(entries)
        log.info("retry requested by an operator", event_id=event_id, outcome=outcome.value)
        return outcome

    async def release(self, claim: Claim) -> None:
        """Give a claim back untouched (shutdown): front of the queue, no retry counted."""
        entries = await self.queue.release(claim)
        await self.outbox.flush(entries)
        _bound(claim.event).warning("shutdown: event returned to the front of the queue")

    async def reap(self) -> list[Reaped]:
        """Return events whose lease expired (their worker died) to the back of the queue."""
        reaped = await self.queue.reap()
        await self.outbox.flush([entry for r in reaped for entry in r.entries])
        for r in reaped:
            log.warning(
                "lease expired: event returned to the queue", event_id=r.event_id, times_queued=r.times_queued
            )
        return reaped

    async def remove(self, event_id: str, detail: str) -> Event:
        """An operator's removal of a queued or retrying event (a processing one is refused)."""
        removed = await self.queue.remove(event_id, redact_text(detail))
        await self.outbox.flush(removed.entries)
        _bound(removed.event).info(
            "event removed by an operator", detail=detail, times_queued=removed.event.times_queued
        )
        return removed.event

    async def restore(
        self, event: Event, delay_seconds: float, detail: str, wait: Wait | None = None
    ) -> RestoreResult:
        """Put back an event the history knows as unfinished and Redis lost (recovery)."""
        result = await self.queue.restore(event, delay_seconds, detail, wait)
        await self.outbox.flush(result.entries)
        if result.outcome is RestoreOutcome.RESTORED:
            _bound(event).warning(
                "event restored from the history", detail=detail, delay_seconds=delay_seconds
            )
        elif result.outcome is RestoreOutcome.SUPERSEDED and result.existing_event_id is not None:
            await self.outbox.flush(await self.queue.supersede(event, result.existing_event_id))
            _bound(event).warning(
                "lost event superseded by the live event of its key", live=result.existing_event_id
            )
        return result
