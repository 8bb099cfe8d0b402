"""The `daily` summary against real PostgreSQL and Redis, delivered through apprise's json:// to a
local receiver: once a day per target, after a restart too; what the day did and what waits now, as
each target may see it (its account only, dry runs only when asked); a target that wants only the
summary is sent no transition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rebalancer_shared.events import Command
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.queue import EventState
from tests.fakes.notify_receiver import NotifyReceiver
from tests.integration.notifications.helpers import (
    Clock,
    account,
    complete,
    fail,
    live_run,
    new_event,
    notifier,
    statuses,
    target,
)

DAY = timedelta(days=1)


def a_day_ending_after_now() -> tuple[Clock, str, str]:
    """A clock two hours ahead, a summary time (UTC) one hour ahead, and the date of that day's end:
    the day that has ended by the clock holds everything the test does now."""
    now = datetime.now(UTC)
    end = now + timedelta(hours=1)
    return Clock((now + timedelta(hours=2)).timestamp()), end.strftime("%H:%M"), end.strftime("%Y-%m-%d")


async def a_day_of_events(lifecycle: EventLifecycle) -> None:
    """DU1 trades (2 orders filled) and runs a dry run; DU2 fails twice (one retries, one waits)."""
    traded = new_event("DU1", Command.REBALANCE)
    run, orders = live_run(traded)
    await complete(lifecycle, traded, run, orders)
    await complete(lifecycle, new_event("DU1", Command.PRINT_REBALANCE))
    await fail(lifecycle, new_event("DU2", Command.REBALANCE), EventState.RETRYING, FailureClass.TRANSIENT)
    await fail(
        lifecycle,
        new_event("DU2", Command.CANCEL_ORDERS),
        EventState.NEEDS_ATTENTION,
        FailureClass.NEEDS_ATTENTION,
    )


async def test_the_daily_summary_tells_each_target_its_day_once(own_lifecycle: EventLifecycle) -> None:
    clock, summary_at, day = a_day_ending_after_now()
    await a_day_of_events(own_lifecycle)
    with NotifyReceiver() as ops, NotifyReceiver() as desk:
        accounts = {"DU2": account("DU2", target(desk.url(), NotifyOn.DAILY, dry_runs=True))}
        options: dict[str, Any] = {"daily_summary_at": summary_at, "daily_summary_timezone": "UTC"}
        service = notifier(own_lifecycle, [target(ops.url(), NotifyOn.DAILY)], accounts, clock, **options)
        for _ in range(3):
            await service.run_once()
        restarted = notifier(own_lifecycle, [target(ops.url(), NotifyOn.DAILY)], accounts, clock, **options)
        await restarted.run_once()  # a new process, or a second replica: the same day, not queued twice

    assert ops.titles() == [
        f"rebalancer daily summary {day}: 2 orders filled, 2 failed runs, 1 needs attention"
    ]
    body = ops.messages[0]["message"]
    assert body.startswith(f"24 hours to {day} {summary_at} UTC")
    # The dry run (DU1's print-rebalance) is left out: the target did not ask for dry runs.
    assert "Events: 3 accepted, 1 completed, 2 failed runs." in body
    assert "Live 2 orders, 2 filled (2,950.00 in value)." in body  # 10 x 100 + 20 x 97.5
    assert "Waiting now: 1 needs attention, 1 retrying." in body
    assert "- DU1: 1 accepted, 1 completed; 2 orders, 2 filled (2,950.00 in value)" in body
    assert "- DU2: 2 accepted, 0 completed, 2 failed runs; now 1 needs attention, 1 retrying" in body

    # DU2's own target: DU2 only, and it asked for dry runs (DU2 had none).
    assert desk.titles() == [
        f"rebalancer daily summary {day}: 0 orders filled, 2 failed runs, 1 needs attention"
    ]
    assert "DU1" not in desk.messages[0]["message"]
    assert "Events: 2 accepted, 0 completed, 2 failed runs." in desk.messages[0]["message"]
    assert await statuses(own_lifecycle) == {"sent": 2}


async def test_the_next_day_is_summarised_once_more_and_a_quiet_day_says_so(
    own_lifecycle: EventLifecycle,
) -> None:
    clock, summary_at, _ = a_day_ending_after_now()
    await complete(own_lifecycle, new_event("DU1", Command.PRINT_POSITIONS))
    with NotifyReceiver() as ops:
        service = notifier(
            own_lifecycle,
            [target(ops.url(), NotifyOn.DAILY, dry_runs=True)],
            clock=clock,
            daily_summary_at=summary_at,
            daily_summary_timezone="UTC",
        )
        await service.run_once()
        clock.now += (DAY / 2).total_seconds()  # the same day still
        await service.run_once()
        clock.now += DAY.total_seconds()  # the next day's time has passed
        await service.run_once()
        await service.run_once()

    assert len(ops.messages) == 2
    first, second = (m["message"] for m in ops.messages)
    assert "Events: 1 accepted, 1 completed, 0 failed runs." in first
    assert "- DU1: 1 accepted, 1 completed" in first
    assert "No event was accepted or run." in second
    assert "Nothing is waiting now." in second
    assert ops.titles()[0] != ops.titles()[1]  # each names its own day


async def test_a_target_wanting_only_the_summary_hears_no_transition(own_lifecycle: EventLifecycle) -> None:
    clock, summary_at, _ = a_day_ending_after_now()
    with NotifyReceiver() as ops:
        service = notifier(
            own_lifecycle,
            [target(ops.url(), NotifyOn.DAILY)],
            clock=clock,
            daily_summary_at=summary_at,
            daily_summary_timezone="UTC",
        )
        await service.run_once()  # the day before anything happened
        await a_day_of_events(own_lifecycle)
        await service.run_once()
    assert len(ops.messages) == 1
    assert "No event was accepted or run." in ops.messages[0]["message"]
