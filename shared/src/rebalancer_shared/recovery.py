"""Redis loss healed while running: PostgreSQL says what is unfinished, Redis is made to hold it.

`reconcile_queue` runs at every start and then every `reconcile_interval_seconds` in each processor
and in the event broker, one process at a time (`P:recovery-lock`):

1. The marker: written to Redis at first start and recorded in PostgreSQL. A Redis without it while
   PostgreSQL says it was written has restarted empty or been wiped: that is logged loudly.
2. Every event PostgreSQL records as unfinished that Redis neither holds nor finished in the last
   day is put back through `EventLifecycle.restore` (one atomic script that re-checks all of that):
   queued and retrying ones at once; scheduled and needs-attention ones in their state, due when
   the history says (`next_attempt_at`); processing ones only after one lease
   period, because the run that held one may still be going in a process cut off from Redis, and it
   stops on its own once its lease can have expired (the worker's lease fence). An event whose key
   another live event holds is superseded by it. When nothing was lost this costs one pipelined
   EXISTS per unfinished event.
3. The marker is written again once the pass is complete, so a pass that dies half-way is redone.

Why running an event again after a recovery is safe: delivery is at least once, and every command
is idempotent in effect. A rebalance re-plans from what the account holds, so an account already at
its targets gets no orders (tests/integration/lifecycle/test_rerun_after_recovery.py proves it
on a real run); cancel-orders of an account without open orders cancels nothing; the read-only
commands change nothing. An event whose completion Redis lost before PostgreSQL heard of it
therefore runs once more, harmlessly, and never at the same time as another run of it.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from rebalancer_shared.events import EventSource
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventState, RestoreOutcome, Wait
from rebalancer_shared.queue.scripts import LOCK_RELEASE
from rebalancer_shared.store import EventStatus, EventSummary

MARKER_FACT = "redis_marker"
RESTORE_DETAIL = "restored from the history after Redis lost it"

log = structlog.get_logger(__name__)


def marker_fact(prefix: str) -> str:
    """The deployment fact that records the marker of one key prefix."""
    return f"{MARKER_FACT}:{prefix}"


@dataclass(frozen=True)
class RecoveryReport:
    """What one reconciliation found and did."""

    redis_was_wiped: bool
    restored: int
    already_queued: int
    locked_out: bool = False


async def _missing(lifecycle: EventLifecycle, events: list[EventSummary]) -> list[EventSummary]:
    if not events:
        return []
    ids = [str(event.event_id) for event in events]
    live = await lifecycle.queue.is_live(ids)
    finished = await lifecycle.queue.redis.zmscore(lifecycle.queue.keys.finished, ids)
    return [
        e for e, is_live, done in zip(events, live, finished, strict=True) if not is_live and done is None
    ]


def _wait_of(summary: EventSummary) -> Wait | None:
    """A scheduled or needs-attention event keeps its state, class and due time when restored."""
    if summary.status not in (EventStatus.SCHEDULED, EventStatus.NEEDS_ATTENTION):
        return None
    default = (
        FailureClass.MARKET_CLOSED
        if summary.status is EventStatus.SCHEDULED
        else FailureClass.NEEDS_ATTENTION
    )
    failure_class = FailureClass(summary.failure_class) if summary.failure_class else default
    due = summary.next_attempt_at or datetime.now(UTC)
    return Wait(state=EventState(summary.status.value), failure_class=failure_class, due_at=due)


async def _restore_missing(lifecycle: EventLifecycle, lease_seconds: float) -> tuple[int, int]:
    unfinished = await lifecycle.store.unfinished_events()
    restored = 0
    missing = await _missing(lifecycle, unfinished)
    for summary in missing:
        was_running = summary.status is EventStatus.PROCESSING
        # A run that was in flight when Redis lost it counts as an attempt, as a reaped lease does.
        times = summary.times_queued + (1 if was_running else 0)
        rebuilt = replace(summary, times_queued=times, source=EventSource.RECOVERY).to_event()
        result = await lifecycle.restore(
            rebuilt, lease_seconds if was_running else 0.0, RESTORE_DETAIL, _wait_of(summary)
        )
        restored += result.outcome is RestoreOutcome.RESTORED
    return restored, len(unfinished) - len(missing)


async def reconcile_queue(
    lifecycle: EventLifecycle, lease_seconds: float, lock_seconds: float = 60.0
) -> RecoveryReport:
    """One reconciliation pass (see the module docstring)."""
    queue, store = lifecycle.queue, lifecycle.store
    redis, keys = queue.redis, queue.keys
    holder = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
    if not await redis.set(keys.recovery_lock, holder, nx=True, px=round(lock_seconds * 1000)):
        return RecoveryReport(redis_was_wiped=False, restored=0, already_queued=0, locked_out=True)
    try:
        wiped = False
        if not await redis.exists(keys.marker):
            wiped = await store.get_fact(marker_fact(keys.prefix)) is not None
            if wiped:
                log.error("redis lost its data (marker missing): restoring the queue from PostgreSQL")
        restored, present = await _restore_missing(lifecycle, lease_seconds)
        if restored:
            log.warning("queue restored from PostgreSQL", restored=restored, already_queued=present)
        marker = datetime.now(UTC).isoformat()
        if not await redis.exists(keys.marker):
            await redis.set(keys.marker, marker)
            await store.set_fact(marker_fact(keys.prefix), marker)
        return RecoveryReport(redis_was_wiped=wiped, restored=restored, already_queued=present)
    finally:
        await redis.register_script(LOCK_RELEASE)(keys=[keys.recovery_lock], args=[holder])


async def keep_reconciling(lifecycle: EventLifecycle, lease_seconds: float, interval_seconds: float) -> None:
    """Reconcile every `interval_seconds`, forever (a background task of the processor and broker)."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await reconcile_queue(lifecycle, lease_seconds)
        except Exception as exc:
            log.warning("reconciliation failed; trying again later", error=str(exc).splitlines()[0])
