"""Counters the broker and processors keep in Redis for the management service's /metrics.

One hash, field `"{counter}:{command}"`; HINCRBY is atomic across processes and survives restarts
of any one process (a Redis loss resets them, which Prometheus treats as a counter reset). The
notifier counts its deliveries the same way, by outcome, in a hash of their own.
"""

from __future__ import annotations

from collections import defaultdict
from enum import StrEnum

from redis.asyncio import Redis

from rebalancer_shared.queue.keys import QueueKeys


class Counter(StrEnum):
    """The counters, each kept per command."""

    EVENTS_QUEUED = "events_queued"
    EVENTS_DUPLICATE = "events_duplicate"
    EVENTS_COALESCED = "events_coalesced"
    EVENTS_COMPLETED = "events_completed"
    EVENTS_FAILED = "events_failed"
    EVENTS_RETRIED = "events_retried"
    EVENTS_REMOVED = "events_removed"
    EVENTS_SCHEDULED = "events_scheduled"
    EVENTS_NEEDS_ATTENTION = "events_needs_attention"
    ORDERS_PLACED = "orders_placed"


async def count(redis: Redis, prefix: str, counter: Counter, command: str, amount: int = 1) -> None:
    """Add `amount` to a counter of one command."""
    await redis.hincrby(QueueKeys(prefix).metrics, f"{counter.value}:{command}", amount)


async def read_counters(redis: Redis, prefix: str) -> dict[Counter, dict[str, int]]:
    """Every counter by command: {counter: {command: value}}."""
    raw = await redis.hgetall(QueueKeys(prefix).metrics)
    out: dict[Counter, dict[str, int]] = defaultdict(dict)
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        counter, _, command = name.partition(":")
        try:
            out[Counter(counter)][command] = int(value)
        except ValueError:
            continue
    return dict(out)


# How a notification delivery ended: sent; retried (not delivered, waits for another attempt);
# deferred (over its target's rate limit, waits); failed (no attempts left).
NOTIFICATION_OUTCOMES = ("sent", "retried", "deferred", "failed")


async def count_notification(redis: Redis, prefix: str, outcome: str) -> None:
    """Count one notification delivery outcome."""
    await redis.hincrby(QueueKeys(prefix).notify_metrics, outcome, 1)


async def read_notification_counters(redis: Redis, prefix: str) -> dict[str, int]:
    """Every outcome's count (0 for those that never happened)."""
    raw = await redis.hgetall(QueueKeys(prefix).notify_metrics)
    counts = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
    return {outcome: counts.get(outcome, 0) for outcome in NOTIFICATION_OUTCOMES}
