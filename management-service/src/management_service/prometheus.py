"""Prometheus exposition of the queue and the counters, read from Redis at scrape time.

The broker and processors count into one Redis hash (`rebalancer_shared.metrics`), so any replica of
this service reports the same totals. Each scrape reads the queue counters, that hash and the
notifications' hash (three Redis reads), and, given the history store, the age of the oldest pending
notification (one indexed PostgreSQL read: a stalled notifier shows as a growing age); a collector
built on the snapshot renders them; nothing is cached between scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from management_service.notifications.rows import oldest_pending
from rebalancer_shared.events import Command
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.metrics import Counter, read_counters, read_notification_counters
from rebalancer_shared.queue import EventQueue, QueueStats
from rebalancer_shared.store import EventStore
from rebalancer_shared.store.views import as_utc

log = structlog.get_logger(__name__)

NAMESPACE = "rebalancer"

_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("queue_length", "queue_length", "Events waiting to be claimed."),
    ("queue_processing", "processing_count", "Events being processed under a lease."),
    ("queue_retrying", "retrying_count", "Events waiting for their retry delay (transient failures)."),
    ("queue_scheduled", "scheduled_count", "Events waiting for the next trading window (market closed)."),
    ("queue_needs_attention", "needs_attention_count", "Events that need attention."),
    ("queue_active_events", "active_events_count", "Live events: queued, processing or retrying."),
    ("queue_events_with_retries", "events_with_retries", "Live events with times_queued > 1."),
)
_CLASS_FIELDS = {
    FailureClass.TRANSIENT: "retrying_count",
    FailureClass.MARKET_CLOSED: "scheduled_count",
    FailureClass.NEEDS_ATTENTION: "needs_attention_count",
}
_COUNTER_HELP: dict[Counter, str] = {
    Counter.EVENTS_QUEUED: "Events accepted into the queue.",
    Counter.EVENTS_DUPLICATE: "Triggers dropped because their event was already queued.",
    Counter.EVENTS_COALESCED: "Triggers that marked a processing event to run once more.",
    Counter.EVENTS_COMPLETED: "Events whose command finished.",
    Counter.EVENTS_FAILED: "Runs that failed (the event retries).",
    Counter.EVENTS_RETRIED: "Events sent back to the queue for another run (any failure class).",
    Counter.EVENTS_REMOVED: "Events removed by an operator.",
    Counter.EVENTS_SCHEDULED: "Events scheduled for the next trading window (failure class market_closed).",
    Counter.EVENTS_NEEDS_ATTENTION: "Runs that ended needing attention (failure class needs_attention).",
    Counter.ORDERS_PLACED: "Orders placed with the broker.",
}


class QueueSnapshotCollector(Collector):
    """Renders one snapshot of the queue counters and the per-command counters."""

    def __init__(
        self,
        stats: QueueStats,
        counters: Mapping[Counter, Mapping[str, int]],
        notifications: Mapping[str, int] | None = None,
        oldest_pending_notification: float | None = None,
    ) -> None:
        self._stats = stats
        self._counters = counters
        self._notifications = notifications or {}
        self._oldest_pending = oldest_pending_notification

    def collect(self) -> Iterator[Metric]:
        for name, field, help_text in _GAUGES:
            yield GaugeMetricFamily(f"{NAMESPACE}_{name}", help_text, value=getattr(self._stats, field))
        by_class = GaugeMetricFamily(
            f"{NAMESPACE}_queue_waiting_by_class",
            "Waiting events per failure class (transient, market_closed, needs_attention).",
            labels=["failure_class"],
        )
        for failure_class, field in _CLASS_FIELDS.items():
            by_class.add_metric([failure_class.value], getattr(self._stats, field))
        yield by_class
        oldest = self._stats.oldest_event_age_seconds
        yield GaugeMetricFamily(
            f"{NAMESPACE}_queue_oldest_event_age_seconds",
            "Age of the oldest live event (0 when the queue is empty).",
            value=oldest or 0.0,
        )
        for counter, help_text in _COUNTER_HELP.items():
            family = CounterMetricFamily(f"{NAMESPACE}_{counter.value}", help_text, labels=["command"])
            # Every command gets a series, so a rate() over a command that has not run yet is 0.
            values = {command.value: 0 for command in Command} | dict(self._counters.get(counter, {}))
            for command, value in sorted(values.items()):
                family.add_metric([command], value)
            yield family
        notifications = CounterMetricFamily(
            f"{NAMESPACE}_notifications",
            "Notifications by outcome: sent, retried (waits for another attempt), deferred (over its "
            "target's rate limit), failed (not delivered within the age limit), target_removed (its "
            "target is no longer configured), skipped_old (a transition too old when first seen), "
            "suppressed (a failure repeated within the hour), intake_error (a transition that could "
            "not be written as its message; a plain one was queued).",
            labels=["outcome"],
        )
        for outcome, value in sorted(self._notifications.items()):
            notifications.add_metric([outcome], value)
        yield notifications
        if self._oldest_pending is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_notifications_oldest_pending_age_seconds",
                "Age of the oldest pending notification (0 when none waits): grows while the notifier "
                "is stalled or a receiver is down.",
                value=self._oldest_pending,
            )


async def _oldest_pending_age(store: EventStore) -> float | None:
    try:
        async with AsyncSession(store.engine) as session:
            oldest = await oldest_pending(session)
    except Exception as exc:  # PostgreSQL down: the Redis metrics still answer
        log.warning("oldest pending notification not read", error=str(exc).splitlines()[0][:200])
        return None
    return 0.0 if oldest is None else max(0.0, time.time() - as_utc(oldest).timestamp())


async def render_metrics(queue: EventQueue, store: EventStore | None = None) -> bytes:
    """The Prometheus text of the queue's current state (three Redis reads, no scan), and with
    `store` the age of the oldest pending notification."""
    stats = await queue.stats()
    counters = await read_counters(queue.redis, queue.keys.prefix)
    notifications = await read_notification_counters(queue.redis, queue.keys.prefix)
    oldest = await _oldest_pending_age(store) if store is not None else None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueSnapshotCollector(stats, counters, notifications, oldest))
    return generate_latest(registry)
