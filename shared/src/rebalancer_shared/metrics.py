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


class NotificationOutcome(StrEnum):
    """What happened to a notification (or to a transition the notifier looked at)."""

    SENT = "sent"  # delivered
    RETRIED = "retried"  # not delivered; waits for another attempt
    DEFERRED = "deferred"  # over its target's rate limit; waits, never dropped
    FAILED = "failed"  # not delivered within the age limit: given up
    TARGET_REMOVED = "target_removed"  # its target is no longer configured: marked failed
    SKIPPED_OLD = "skipped_old"  # a transition older than the intake's age limit: not sent
    SUPPRESSED = "suppressed"  # a repeated failure of the same event within the hour: not sent
    INTAKE_ERROR = "intake_error"  # a transition that could not be turned into its messages


async def count_notification(redis: Redis, prefix: str, outcome: NotificationOutcome, by: int = 1) -> None:
    """Count `by` notifications (or transitions) that ended as `outcome`."""
    await redis.hincrby(QueueKeys(prefix).notify_metrics, outcome.value, by)


async def read_notification_counters(redis: Redis, prefix: str) -> dict[str, int]:
    """Every outcome's count (0 for those that never happened)."""
    raw = await redis.hgetall(QueueKeys(prefix).notify_metrics)
    counts = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
    return {outcome.value: counts.get(outcome.value, 0) for outcome in NotificationOutcome}
