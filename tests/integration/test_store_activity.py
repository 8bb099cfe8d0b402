"""Events per hour from the history (rebalancer_shared.store.activity), on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.store import EventStore
from rebalancer_shared.store.activity import hourly_activity, start_of_hour

pytestmark = pytest.mark.integration


async def test_accepted_completed_and_failed_are_counted_in_their_hour(
    lifecycle: EventLifecycle, fresh_store: EventStore
) -> None:
    lifecycle = EventLifecycle(lifecycle.queue, fresh_store)
    now = datetime.now(UTC)  # before the events: the window ends at the hour after `now`
    for command in (Command.PRINT_EQUITY, Command.PRINT_POSITIONS, Command.PRINT_ORDERS):
        await lifecycle.submit(Event(account_id="DU1", exec_command=command, source=EventSource.API))
    done = await lifecycle.queue.claim("w")
    assert done is not None
    await lifecycle.complete(done)
    failing = await lifecycle.queue.claim("w")
    assert failing is not None
    await lifecycle.fail(failing, "AllocationError: boom", retry_delay_seconds=300)
    # The events fall in `now`'s hour or, when the test straddles the top of the hour, the next one:
    # read the window ending at that next hour and count the last two.
    hours = await hourly_activity(fresh_store.engine, now + timedelta(hours=1))
    assert len(hours) == 24
    assert hours[-1].hour == start_of_hour(now) + timedelta(hours=1)
    assert hours[0].hour == start_of_hour(now) - timedelta(hours=22)
    recent = [(h.accepted, h.completed, h.failed) for h in hours[-2:]]
    assert tuple(map(sum, zip(*recent, strict=True))) == (3, 1, 1)
    assert all((h.accepted, h.completed, h.failed) == (0, 0, 0) for h in hours[:-2])
    earlier = await hourly_activity(fresh_store.engine, now - timedelta(hours=2), hours=2)
    assert all((h.accepted, h.completed, h.failed) == (0, 0, 0) for h in earlier)
