"""Sending against real PostgreSQL and apprise's json:// to local receivers: a receiver that hangs
holds up nothing else, a claim whose lease ran out changes nothing, targets keep their messages when
the lists are reordered and fail them (counted) when removed, sent rows are deleted after the
retention, and a health change whose message could not be queued is queued next round."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select, text, update

from management_service.notifications import rows
from management_service.prometheus import render_metrics
from rebalancer_shared.events import Command
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.queue.keys import QueueKeys
from rebalancer_shared.store.tables import NotificationRow
from tests.fakes.notify_receiver import NotifyReceiver
from tests.integration.notifications.helpers import (
    Clock,
    account,
    complete,
    new_event,
    notifier,
    statuses,
    target,
)


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Wait for `condition` (checked every 20 ms); fail after `seconds`."""
    async with asyncio.timeout(seconds):
        while not await condition():
            await asyncio.sleep(0.02)


async def test_a_receiver_that_hangs_holds_up_neither_events_nor_other_targets(
    own_lifecycle: EventLifecycle,
) -> None:
    with NotifyReceiver(hang=True) as stuck, NotifyReceiver() as ops:
        service = notifier(
            own_lifecycle,
            [
                target(stuck.url() + "?rto=300", NotifyOn.COMPLETED),  # apprise would wait 5 minutes
                target(ops.url(), NotifyOn.COMPLETED),
            ],
            delivery_timeout_seconds=300,
        )
        notifying = asyncio.create_task(service.run())
        try:
            await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
            assert await asyncio.to_thread(stuck.arrived.wait, 30)

            async def ops_got(count: int) -> bool:
                return len(ops.titles()) >= count

            await until(lambda: ops_got(1))
            for n in (2, 3):  # the intake goes on, and so does the other target
                await complete(own_lifecycle, new_event(f"DU{n}", Command.CANCEL_ORDERS))
                await until(lambda n=n: ops_got(n))  # type: ignore[misc]
            assert stuck.messages == []  # still holding the first message
            stuck.release.set()

            async def stuck_got_all() -> bool:
                return len(stuck.titles()) == 3

            await until(stuck_got_all)
            await until(lambda: _all_sent(own_lifecycle, 6))
        finally:
            service.stop()
            await notifying
    assert sorted(ops.titles()) == sorted(f"DU{n}: cancel-orders completed" for n in (1, 2, 3))
    assert stuck.titles() == [f"DU{n}: cancel-orders completed" for n in (1, 2, 3)]


async def _all_sent(lifecycle: EventLifecycle, count: int) -> bool:
    return await statuses(lifecycle) == {"sent": count}


async def test_a_claim_whose_lease_ran_out_and_was_claimed_again_changes_nothing(
    own_lifecycle: EventLifecycle,
) -> None:
    service = notifier(own_lifecycle, [target("json://127.0.0.1:9/hook", NotifyOn.COMPLETED)])
    await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
    await service.take_transitions()
    (only,) = service.targets
    sessions = service._sessions
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        (first,) = await rows.claim_due(session, only.target_id, now, timedelta(seconds=1))
    later = now + timedelta(seconds=2)  # the first claimer hung past its lease
    async with sessions.begin() as session:
        (second,) = await rows.claim_due(session, only.target_id, later, timedelta(seconds=60))
    async with sessions.begin() as session:  # the first claimer comes back and gives up on it
        await rows.mark_retry(session, first, later + timedelta(hours=1), "too late")
        await rows.mark_failed(session, first, "too late")
    assert await row_state(own_lifecycle) == ("pending", None, later + timedelta(seconds=60))
    async with sessions.begin() as session:
        await rows.mark_sent(session, second, later)
    assert await row_state(own_lifecycle) == ("sent", None, later + timedelta(seconds=60))


async def row_state(lifecycle: EventLifecycle) -> tuple[str, str | None, datetime]:
    async with lifecycle.store.engine.connect() as conn:
        row = (
            await conn.execute(
                select(NotificationRow.status, NotificationRow.last_error, NotificationRow.next_attempt_at)
            )
        ).one()
    return row[0], row[1], row[2]


async def test_reordered_targets_keep_their_pending_messages(own_lifecycle: EventLifecycle) -> None:
    with NotifyReceiver() as ops, NotifyReceiver() as desk:
        first, second = target(ops.url(), NotifyOn.COMPLETED), target(desk.url(), NotifyOn.COMPLETED)
        mine = target(desk.url("mine"), NotifyOn.COMPLETED)
        before = notifier(own_lifecycle, [first, second], {"DU1": account("DU1", mine)})
        await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
        await before.queue_round()  # queued, not sent yet; then the lists are reordered
        after = notifier(own_lifecycle, [second, first], {"DU0": account("DU0"), "DU1": account("DU1", mine)})
        await after.run_once()
    assert ops.titles() == ["DU1: cancel-orders completed"]
    assert sorted(desk.paths) == ["/hook", "/mine"]
    assert await statuses(own_lifecycle) == {"sent": 3}


async def test_messages_of_a_removed_target_are_failed_logged_and_counted(
    own_lifecycle: EventLifecycle,
) -> None:
    with NotifyReceiver() as ops, NotifyReceiver() as gone:
        before = notifier(
            own_lifecycle, [target(ops.url(), NotifyOn.COMPLETED), target(gone.url(), NotifyOn.COMPLETED)]
        )
        await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
        await before.queue_round()
        after = notifier(own_lifecycle, [target(ops.url(), NotifyOn.COMPLETED)])
        with structlog.testing.capture_logs() as logs:
            await after.run_once()
    assert gone.messages == []
    assert await statuses(own_lifecycle) == {"sent": 1, "failed": 1}
    removed = [e for e in logs if e["event"] == "notifications failed: their target is no longer configured"]
    assert [e["count"] for e in removed] == [1]
    metrics = (await render_metrics(own_lifecycle.queue)).decode()
    assert 'rebalancer_notifications_total{outcome="target_removed"} 1.0' in metrics


async def test_sent_messages_are_deleted_after_the_retention(own_lifecycle: EventLifecycle) -> None:
    clock = Clock(time.time())
    with NotifyReceiver() as ops:
        service = notifier(
            own_lifecycle, [target(ops.url(), NotifyOn.COMPLETED)], clock=clock, keep_sent_days=30
        )
        await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
        await service.run_once()
        clock.now += 29 * 86400
        await service.run_once()
        assert await statuses(own_lifecycle) == {"sent": 1}
        clock.now += 2 * 86400
        await service.run_once()
    assert await statuses(own_lifecycle) == {}


async def test_the_age_of_the_oldest_pending_message_is_in_the_metrics(own_lifecycle: EventLifecycle) -> None:
    service = notifier(own_lifecycle, [target("json://127.0.0.1:9/hook", NotifyOn.COMPLETED)])
    await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
    metrics = (await render_metrics(own_lifecycle.queue, own_lifecycle.store)).decode()
    assert "rebalancer_notifications_oldest_pending_age_seconds 0.0" in metrics
    await service.queue_round()
    async with own_lifecycle.store.engine.begin() as conn:
        await conn.execute(update(NotificationRow).values(created_at=datetime.now(UTC) - timedelta(hours=2)))
    metrics = (await render_metrics(own_lifecycle.queue, own_lifecycle.store)).decode()
    line = next(x for x in metrics.splitlines() if x.startswith("rebalancer_notifications_oldest_pending"))
    assert float(line.split()[1]) >= 7200


async def test_a_down_message_that_could_not_be_queued_is_queued_next_round(
    own_lifecycle: EventLifecycle,
) -> None:
    clock = Clock(time.time())
    beats = QueueKeys(own_lifecycle.queue.keys.prefix).heartbeats
    redis = own_lifecycle.queue.redis
    await redis.hset(beats, "event-broker:host:1:abc", json.dumps({"state": "running", "at": clock.now}))
    await redis.hset(
        beats, "event-processor:host:1:abc", json.dumps({"state": "running", "at": clock.now - 100})
    )
    with NotifyReceiver() as ops:
        service = notifier(
            own_lifecycle, [target(ops.url(), NotifyOn.HEALTH)], clock=clock, unhealthy_after_seconds=60
        )
        async with own_lifecycle.store.engine.begin() as conn:  # the table is away: the insert fails
            await conn.execute(text("ALTER TABLE notifications RENAME TO notifications_away"))
        try:
            await service.run_once()
        finally:
            async with own_lifecycle.store.engine.begin() as conn:
                await conn.execute(text("ALTER TABLE notifications_away RENAME TO notifications"))
        assert ops.messages == []
        await service.run_once()
        await service.run_once()
    assert ops.titles() == ["rebalancer: event-processor unhealthy"]
