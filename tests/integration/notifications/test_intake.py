"""The intake against real PostgreSQL (and SQLite, the demo's store): which run a transition
reports, a transition that cannot be written stopping nothing, old transitions and repeated failures
counted rather than sent, and only notifiable transitions ever flagged for the notifier."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from management_service.notifications import resolve_targets
from management_service.notifications.intake import fallback_drafts
from management_service.notifications.rules import NOTIFIED
from management_service.prometheus import render_metrics
from rebalancer_shared.config import Settings
from rebalancer_shared.events import Command
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.notification_targets import NotificationSettings, NotifyOn
from rebalancer_shared.queue import CompleteOutcome, EventQueue, EventState, Wait
from rebalancer_shared.store import EventStore, RunRecord, RunStatus, Transition
from rebalancer_shared.store.records import NOTIFIABLE
from rebalancer_shared.store.tables import TransitionRow
from tests.fakes.notify_receiver import NotifyReceiver
from tests.integration.notifications.helpers import Clock, complete, live_run, new_event, notifier, target


async def counter(lifecycle: EventLifecycle, outcome: str) -> str:
    metrics = (await render_metrics(lifecycle.queue)).decode()
    line = next(line for line in metrics.splitlines() if f'outcome="{outcome}"' in line)
    return line.rsplit(" ", 1)[1]


async def flagged(lifecycle: EventLifecycle) -> dict[str, bool]:
    async with lifecycle.store.engine.connect() as conn:
        rows = await conn.execute(select(TransitionRow.state, TransitionRow.notification_pending))
        return {state: bool(pending) for state, pending in rows.all()}


def test_the_rules_notify_exactly_the_transitions_the_history_flags() -> None:
    assert NOTIFIED == NOTIFIABLE


async def test_a_rebalance_that_met_a_trigger_reports_the_run_that_traded_not_the_rerun(
    own_lifecycle: EventLifecycle,
) -> None:
    with NotifyReceiver() as ops:
        service = notifier(own_lifecycle, [target(ops.url(), NotifyOn.TRADED)])
        event = new_event("DU1", Command.REBALANCE)
        await own_lifecycle.submit(event)
        claim = await own_lifecycle.claim("test-worker", wait_seconds=1.0)
        assert claim is not None
        await own_lifecycle.submit(new_event("DU1", Command.REBALANCE))  # arrives during the run
        run, orders = live_run(event)
        await own_lifecycle.store.save_run(dataclasses.replace(run, attempt=claim.event.times_queued))
        await own_lifecycle.store.save_orders(run.run_id, event.event_id, orders)
        assert (await own_lifecycle.complete(claim)).outcome is CompleteOutcome.RERUN
        again = await own_lifecycle.claim("test-worker", wait_seconds=1.0)  # the rerun starts
        assert again is not None
        assert again.event.times_queued == claim.event.times_queued  # the same attempt number
        rerun = RunRecord(
            event_id=event.event_id,
            attempt=again.event.times_queued,
            account_id="DU1",
            exec_command="rebalance",
            execution_mode="live",
            worker="test-worker",
            status=RunStatus.RUNNING,
            started_at=datetime.now(UTC) + timedelta(seconds=5),
        )
        await own_lifecycle.store.save_run(rerun)
        await service.run_once()
    assert ops.titles() == ["DU1: rebalance success, 2 orders"]
    assert "- BUY 20 BBB: filled 20 @ 97.50 (Filled)" in ops.messages[0]["message"]


async def test_the_run_is_found_whatever_the_processor_clock_says(own_lifecycle: EventLifecycle) -> None:
    with NotifyReceiver() as ops:
        service = notifier(own_lifecycle, [target(ops.url(), NotifyOn.TRADED)])
        event = new_event("DU1", Command.REBALANCE)
        run, orders = live_run(event)
        ahead = datetime.now(UTC) + timedelta(minutes=3)  # the processor's clock runs ahead of Redis's
        await complete(own_lifecycle, event, dataclasses.replace(run, started_at=ahead), orders)
        await service.run_once()
    assert ops.titles() == ["DU1: rebalance success, 2 orders"]


@pytest.fixture
async def sqlite_lifecycle(queue: EventQueue, tmp_path: Path) -> AsyncIterator[EventLifecycle]:
    store = EventStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'history.db'}")
    await store.create_schema()
    yield EventLifecycle(queue, store)
    await store.close()


async def test_intake_works_on_the_demos_sqlite_store(sqlite_lifecycle: EventLifecycle) -> None:
    with NotifyReceiver() as ops:
        service = notifier(sqlite_lifecycle, [target(ops.url(), NotifyOn.TRADED, NotifyOn.COMPLETED)])
        traded = new_event("DU1", Command.REBALANCE)
        run, orders = live_run(traded)
        await complete(sqlite_lifecycle, traded, run, orders)
        await complete(sqlite_lifecycle, new_event("DU2", Command.CANCEL_ORDERS))
        await service.run_once()
        await service.run_once()
    assert sorted(ops.titles()) == ["DU1: rebalance success, 2 orders", "DU2: cancel-orders completed"]
    assert not any((await flagged(sqlite_lifecycle)).values())


async def test_a_transition_that_cannot_be_written_stops_nothing_and_is_said_plainly(
    own_lifecycle: EventLifecycle,
) -> None:
    with NotifyReceiver() as ops:
        service = notifier(own_lifecycle, [target(ops.url(), NotifyOn.TRADED, NotifyOn.COMPLETED)])
        broken = new_event("DU1", Command.REBALANCE)
        run, orders = live_run(broken)
        unreadable: dict[str, Any] = {"total_equity": 10_000.0}  # no reserve: the message cannot be written
        await complete(own_lifecycle, broken, dataclasses.replace(run, equity_info=unreadable), orders)
        await complete(own_lifecycle, new_event("DU2", Command.CANCEL_ORDERS))
        with structlog.testing.capture_logs() as logs:
            await service.run_once()
            await service.run_once()
    assert sorted(ops.titles()) == ["DU1: rebalance completed", "DU2: cancel-orders completed"]
    plain = next(m["message"] for m in ops.messages if m["title"].startswith("DU1"))
    assert "KeyError" in plain
    assert str(broken.event_id) in plain
    errors = [e for e in logs if e["event"].startswith("notification intake: a transition could not")]
    assert len(errors) == 1
    assert errors[0]["event_id"] == str(broken.event_id)
    assert await counter(own_lifecycle, "intake_error") == "1.0"
    assert not any((await flagged(own_lifecycle)).values())


def test_the_plain_message_of_a_dry_run_goes_only_to_the_targets_that_want_dry_runs() -> None:
    settings = Settings(
        notifications=NotificationSettings(
            targets=(
                target("json://127.0.0.1/live-only", NotifyOn.COMPLETED),
                target("json://127.0.0.1/everything", NotifyOn.COMPLETED, dry_runs=True),
            )
        )
    )
    live_only, everything = resolve_targets(settings, {}, {})
    done = TransitionRow(id=1, seq=7, event_id=uuid.uuid4(), state=Transition.COMPLETED.value)
    for command, told in (
        ("print-positions", [everything]),
        ("cancel-orders", [live_only, everything]),
        ("a-command-of-a-newer-release", [live_only, everything]),
    ):
        drafts = fallback_drafts((done, "DU1", command), (live_only, everything), "KeyError")
        assert [d.target_id for d in drafts] == [t.target_id for t in told], command


async def test_transitions_too_old_when_first_seen_are_logged_and_counted_not_sent(
    own_lifecycle: EventLifecycle,
) -> None:
    with NotifyReceiver() as ops:
        clock = Clock(time.time() + 2 * 86400)  # the notifier looks two days later
        service = notifier(own_lifecycle, [target(ops.url(), NotifyOn.COMPLETED)], clock=clock)
        await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
        with structlog.testing.capture_logs() as logs:
            await service.run_once()
    assert ops.messages == []
    old = [e for e in logs if e["event"].startswith("notification intake: transitions older")]
    assert [e["count"] for e in old] == [1]
    assert await counter(own_lifecycle, "skipped_old") == "1.0"


async def fail_again(lifecycle: EventLifecycle, failure: FailureClass) -> None:
    claim = await lifecycle.claim("test-worker", wait_seconds=1.0)
    assert claim is not None
    wait = Wait(state=EventState.RETRYING, failure_class=failure, delay_seconds=0.0)
    await lifecycle.fail(claim, "ConnectionError: gateway refused", wait=wait)


async def test_an_event_failing_again_and_again_is_notified_once_then_on_a_new_failure_class(
    own_lifecycle: EventLifecycle,
) -> None:
    with NotifyReceiver() as ops:
        service = notifier(own_lifecycle, [target(ops.url(), NotifyOn.FAILED)])
        await own_lifecycle.submit(new_event("DU1", Command.REBALANCE))
        for _ in range(3):
            await fail_again(own_lifecycle, FailureClass.TRANSIENT)
            await service.run_once()
        await fail_again(own_lifecycle, FailureClass.MARKET_CLOSED)  # another kind of failure
        await service.run_once()
    assert ops.titles() == ["DU1: rebalance failed, retrying"] * 2
    assert "Failure class: market_closed" in ops.messages[1]["message"]
    assert await counter(own_lifecycle, "suppressed") == "2.0"


async def test_only_transitions_that_can_be_notified_wait_for_the_notifier(
    own_lifecycle: EventLifecycle,
) -> None:
    await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
    assert await flagged(own_lifecycle) == {
        Transition.QUEUED.value: False,
        Transition.PROCESSING.value: False,
        Transition.COMPLETED.value: True,
    }


async def test_with_no_target_the_flags_are_cleared_without_reading_a_transition(
    own_lifecycle: EventLifecycle,
) -> None:
    for n in range(3):
        await complete(own_lifecycle, new_event(f"DU{n}", Command.CANCEL_ORDERS))
    service = notifier(own_lifecycle, [])
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = own_lifecycle.store.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        await service.take_transitions()
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    touching = [s for s in statements if "event_transitions" in s]
    assert len(touching) == 1
    assert touching[0].lstrip().upper().startswith("UPDATE")
    async with own_lifecycle.store.engine.connect() as conn:
        left = await conn.scalar(select(func.count()).where(TransitionRow.notification_pending))
    assert left == 0
