"""Surviving a Redis that lost its data: rebuild the unfinished events from PostgreSQL.

At first start a marker key is written to Redis and the fact that it was written is recorded in
PostgreSQL. Later, a Redis without the marker while PostgreSQL says it was written means Redis
restarted empty (no AOF, a new volume, a failover to a blank replica). Then every event PostgreSQL
records as queued, processing or retrying is enqueued again, oldest first, through the same atomic
dedup as any enqueue, so events Redis still holds and concurrent rebuilds by other processes give no
duplicates. A single-flight lock keeps two processes from rebuilding at the same time, and the
marker is written only after a complete rebuild, so a rebuild that dies half-way is simply redone.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from rebalancer_shared.events import EventSource
from rebalancer_shared.queue import EnqueueOutcome, EventQueue
from rebalancer_shared.store import EventStatus, EventStore, Transition

MARKER_FACT = "redis_marker"


def marker_fact(prefix: str) -> str:
    """The deployment fact that records the marker of one key prefix."""
    return f"{MARKER_FACT}:{prefix}"


log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RecoveryReport:
    """What `ensure_queue_state` found and did."""

    redis_was_wiped: bool
    restored: int
    already_queued: int


async def ensure_queue_state(
    queue: EventQueue, store: EventStore, lock_seconds: float = 60.0
) -> RecoveryReport:
    """Check the marker; on a wiped Redis rebuild unfinished events from PostgreSQL. Call at start."""
    redis = queue.redis
    if await redis.exists(queue.keys.marker):
        return RecoveryReport(redis_was_wiped=False, restored=0, already_queued=0)
    holder = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
    if not await redis.set(queue.keys.recovery_lock, holder, nx=True, px=round(lock_seconds * 1000)):
        log.info("another process is checking the queue state; waiting is not needed to proceed")
        return RecoveryReport(redis_was_wiped=False, restored=0, already_queued=0)
    try:
        fact = marker_fact(queue.keys.prefix)
        wiped = await store.get_fact(fact) is not None
        restored = already = 0
        if wiped:
            log.warning("redis lost its data (marker missing): rebuilding the queue from PostgreSQL")
            restored, already = await _rebuild(queue, store)
        marker = datetime.now(UTC).isoformat()
        await redis.set(queue.keys.marker, marker)
        await store.set_fact(fact, marker)
        return RecoveryReport(redis_was_wiped=wiped, restored=restored, already_queued=already)
    finally:
        await redis.delete(queue.keys.recovery_lock)


async def _rebuild(queue: EventQueue, store: EventStore) -> tuple[int, int]:
    restored = already = 0
    for event, status in await store.unfinished_events():
        # A run that was in flight when Redis died counts as an attempt, as a reaped lease does.
        times = event.times_queued + (1 if status is EventStatus.PROCESSING else 0)
        rebuilt = event.model_copy(update={"times_queued": times, "source": EventSource.RECOVERY})
        result = await queue.enqueue(rebuilt)
        if result.outcome is EnqueueOutcome.QUEUED:
            restored += 1
            await store.record(rebuilt, Transition.RECOVERED, detail="rebuilt after Redis lost its data")
        else:
            already += 1
    log.warning("queue rebuilt from PostgreSQL", restored=restored, already_queued=already)
    return restored, already
