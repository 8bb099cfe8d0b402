"""Events per hour from the history (rebalancer_shared.store.activity), on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from management_service.ui.chart import activity_chart, nice_ceiling
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.store import EventStore
from rebalancer_shared.store.activity import hourly_activity, start_of_hour

pytestmark = pytest.mark.integration


async def test_accepted_completed_and_failed_are_counted_in_their_hour(
    lifecycle: EventLifecycle, fresh_store: EventStore
) -> None:
    lifecycle = EventLifecycle(lifecycle.queue, fresh_store)
    for command in (Command.PRINT_EQUITY, Command.PRINT_POSITIONS, Command.PRINT_ORDERS):
        await lifecycle.submit(Event(account_id="DU1", exec_command=command, source=EventSource.API))
    done = await lifecycle.queue.claim("w")
    assert done is not None
    await lifecycle.complete(done)
    failing = await lifecycle.queue.claim("w")
    assert failing is not None
    await lifecycle.fail(failing, "AllocationError: boom", retry_delay_seconds=300)
    now = datetime.now(UTC)
    hours = await hourly_activity(fresh_store.engine, now)
    assert len(hours) == 24
    assert hours[-1].hour == start_of_hour(now)
    assert hours[0].hour == start_of_hour(now) - timedelta(hours=23)
    assert (hours[-1].accepted, hours[-1].completed, hours[-1].failed) == (3, 1, 1)
    assert all((h.accepted, h.completed, h.failed) == (0, 0, 0) for h in hours[:-1])
    earlier = await hourly_activity(fresh_store.engine, now - timedelta(hours=2), hours=2)
    assert all((h.accepted, h.completed, h.failed) == (0, 0, 0) for h in earlier)


def test_the_chart_scales_to_the_busiest_hour() -> None:
    from rebalancer_shared.store.activity import HourActivity

    start = datetime(2026, 11, 21, tzinfo=UTC)
    hours = [HourActivity(start + timedelta(hours=i), accepted=i, completed=i // 2) for i in range(24)]
    chart = activity_chart(hours)
    assert nice_ceiling(23) == 50
    assert nice_ceiling(0) == 1
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.series == "accepted"
    assert tallest.title == "23:00 UTC: 23 accepted"
    assert chart.totals == {
        "accepted": sum(range(24)),
        "completed": sum(i // 2 for i in range(24)),
        "failed": 0,
    }
    assert all(b.y + b.height == pytest.approx(chart.baseline) for b in chart.bars)
