"""The notifier against real PostgreSQL and Redis, delivering through apprise's json:// to a local
HTTP receiver: one message per transition and target, filtered by outcome, account and dry run;
a receiver that is down delays nothing and loses nothing (one that hangs: test_sending.py), nor does
an outage of hours; the rate limit defers (counted) and never drops;
two notifiers racing send each message once; unhealthy services are notified once, then healthy."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid

import structlog
from sqlalchemy import func, select

from management_service.prometheus import render_metrics
from rebalancer_shared.events import Command
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.queue import EventState
from rebalancer_shared.queue.keys import QueueKeys
from rebalancer_shared.store.tables import NotificationRow
from rebalancer_shared.store.views import as_utc
from tests.fakes.notify_receiver import NotifyReceiver, free_port
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
from tests.support.servers import REDIS_URL, ROOT


async def test_each_transition_is_notified_once_to_each_target_that_wants_it(
    own_lifecycle: EventLifecycle,
) -> None:
    with NotifyReceiver() as ops, NotifyReceiver() as desk:
        accounts = {
            "DU1": account("DU1", target(desk.url(), NotifyOn.COMPLETED, dry_runs=True)),
            "DU2": account("DU2"),
        }
        service = notifier(
            own_lifecycle,
            [
                target(
                    ops.url(), NotifyOn.TRADED, NotifyOn.FAILED, NotifyOn.NEEDS_ATTENTION, NotifyOn.SCHEDULED
                )
            ],
            accounts,
        )
        traded = new_event("DU1", Command.REBALANCE)
        run, orders = live_run(traded)
        await complete(own_lifecycle, traded, run, orders)
        await complete(own_lifecycle, new_event("DU1", Command.PRINT_REBALANCE))  # a dry run
        await complete(own_lifecycle, new_event("DU2", Command.PRINT_POSITIONS))  # nobody asked
        await fail(
            own_lifecycle, new_event("DU2", Command.REBALANCE), EventState.RETRYING, FailureClass.TRANSIENT
        )
        await fail(
            own_lifecycle,
            new_event("DU2", Command.CANCEL_ORDERS),
            EventState.NEEDS_ATTENTION,
            FailureClass.NEEDS_ATTENTION,
        )
        closed = new_event("DU3", Command.REBALANCE)
        await fail(own_lifecycle, closed, EventState.SCHEDULED, FailureClass.MARKET_CLOSED)

        for _ in range(3):  # looking again finds nothing new
            await service.run_once()

    assert sorted(ops.titles()) == [
        "DU1: rebalance success, 2 orders",
        "DU2: cancel-orders needs attention",
        "DU2: rebalance failed, retrying",
        "DU3: rebalance scheduled for the open",
    ]
    scheduled = next(m["message"] for m in ops.messages if m["title"].startswith("DU3"))
    summary = await own_lifecycle.store.get_event(closed.event_id)
    assert summary is not None
    assert summary.next_attempt_at is not None
    due = as_utc(summary.next_attempt_at).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"rebalance of DU3 is scheduled for {due} (the market is closed)." in scheduled
    assert str(closed.event_id) in scheduled
    assert sorted(desk.titles()) == ["DU1: print-rebalance completed", "DU1: rebalance completed"]
    message = next(m["message"] for m in ops.messages if m["title"].startswith("DU1"))
    assert "- SELL 10 AAA: filled 10 @ 100.00 (Filled)" in message
    assert "- BUY 20 BBB: filled 20 @ 97.50 (Filled)" in message
    # AAA: 60 % before, minus 10 x 100 of 10,000 = 50 %; BBB: 30 % + 20 x 97.5 / 10,000 = 49.5 %.
    assert "- AAA 49.5% | 60.0% -> 50.0%" in message
    assert "- BBB 49.5% | 30.0% -> 49.5%" in message
    assert "Equity 10,000.00; reserve 1 % (100.00)" in message
    failed = next(m["message"] for m in ops.messages if "failed" in m["title"])
    assert "ConnectionError: gateway refused for DU2" in failed
    assert "transient" in failed
    assert await statuses(own_lifecycle) == {"sent": 6}


async def test_a_receiver_that_is_down_delays_nothing_and_loses_nothing(
    own_lifecycle: EventLifecycle,
) -> None:
    port = free_port()
    clock = Clock(time.time())
    service = notifier(
        own_lifecycle, [target(f"json://127.0.0.1:{port}/hook", NotifyOn.COMPLETED)], clock=clock
    )
    notifying = asyncio.create_task(service.run())  # as in the management service, beside the events
    try:
        events = [new_event(f"DU{n}", Command.CANCEL_ORDERS) for n in range(5)]
        for event in events:
            await complete(own_lifecycle, event)  # returns without waiting for any notification
        for event in events:
            summary = await own_lifecycle.store.get_event(event.event_id)
            assert summary is not None
            assert summary.status == "completed"
        async with asyncio.timeout(30):
            while (await statuses(own_lifecycle)).get("pending", 0) < 5 or not await attempted(
                own_lifecycle, 5
            ):
                await asyncio.sleep(0.05)
    finally:
        service.stop()
        await notifying
    assert await statuses(own_lifecycle) == {"pending": 5}

    with NotifyReceiver(port=port) as receiver:
        clock.now += 3600  # past every backoff
        await service.run_once()
    assert sorted(receiver.titles()) == sorted(f"DU{n}: cancel-orders completed" for n in range(5))
    assert await statuses(own_lifecycle) == {"sent": 5}


async def attempted(lifecycle: EventLifecycle, count: int) -> bool:
    async with lifecycle.store.engine.connect() as conn:
        tried = await conn.scalar(select(func.count()).where(NotificationRow.attempts >= 1))
    return int(tried or 0) >= count


async def test_a_message_not_delivered_within_the_age_limit_is_failed_logged_and_counted(
    own_lifecycle: EventLifecycle,
) -> None:
    clock = Clock(time.time())
    with NotifyReceiver(status=500) as receiver:
        service = notifier(
            own_lifecycle, [target(receiver.url(), NotifyOn.COMPLETED)], clock=clock, give_up_after_hours=1
        )
        await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
        with structlog.testing.capture_logs() as logs:
            await service.run_once()
            assert await statuses(own_lifecycle) == {"pending": 1}
            clock.now += 3600
            await service.run_once()
            clock.now += 3600
            await service.run_once()  # nothing left to try
    assert await statuses(own_lifecycle) == {"failed": 1}
    assert len(receiver.refused) == 2 * 3  # two attempts of three quick tries each
    failures = [
        e for e in logs if e["event"] == "notification failed: not delivered within the age limit; given up"
    ]
    assert len(failures) == 1
    assert failures[0]["service"] == f"json://127.0.0.1:{receiver.port}/hook"
    metrics = (await render_metrics(own_lifecycle.queue)).decode()
    assert 'rebalancer_notifications_total{outcome="failed"} 1.0' in metrics
    assert 'rebalancer_notifications_total{outcome="retried"} 1.0' in metrics


async def test_a_receiver_refusing_for_hours_loses_nothing_and_is_tried_every_five_minutes_at_most(
    own_lifecycle: EventLifecycle,
) -> None:
    clock = Clock(time.time())
    with NotifyReceiver(status=500) as receiver:
        service = notifier(own_lifecycle, [target(receiver.url(), NotifyOn.COMPLETED)], clock=clock)
        await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
        for _ in range(24):  # two hours of an outage, a round every five minutes
            await service.run_once()
            async with own_lifecycle.store.engine.connect() as conn:
                due = await conn.scalar(select(NotificationRow.next_attempt_at))
            assert due is not None
            assert as_utc(due).timestamp() - clock.now < 300.001  # the backoff is capped at 5 minutes
            clock.now += 300
        assert await statuses(own_lifecycle) == {"pending": 1}
        receiver.status = 200
        await service.run_once()
    assert receiver.titles() == ["DU1: cancel-orders completed"]
    assert len(receiver.refused) == 24 * 3
    assert await statuses(own_lifecycle) == {"sent": 1}


async def test_the_rate_limit_defers_and_never_drops(own_lifecycle: EventLifecycle) -> None:
    clock = Clock(time.time())
    with NotifyReceiver() as receiver:
        service = notifier(
            own_lifecycle, [target(receiver.url(), NotifyOn.COMPLETED)], clock=clock, per_target_per_minute=2
        )
        for n in range(5):
            await complete(own_lifecycle, new_event(f"DU{n}", Command.CANCEL_ORDERS))
        await service.run_once()
        assert len(receiver.messages) == 2
        assert await statuses(own_lifecycle) == {"sent": 2, "pending": 3}
        for _ in range(3):
            clock.now += 30  # one token every 30 s
            await service.run_once()
    assert sorted(receiver.titles()) == sorted(f"DU{n}: cancel-orders completed" for n in range(5))
    metrics = (await render_metrics(own_lifecycle.queue)).decode()
    assert 'rebalancer_notifications_total{outcome="sent"} 5.0' in metrics
    # Three wait for the first token, then two, then one: each wait is counted.
    assert 'rebalancer_notifications_total{outcome="deferred"} 6.0' in metrics


async def test_two_notifiers_racing_send_each_message_once(own_lifecycle: EventLifecycle) -> None:
    with NotifyReceiver() as receiver:
        targets = [target(receiver.url(), NotifyOn.COMPLETED)]
        first, second = notifier(own_lifecycle, targets), notifier(own_lifecycle, targets)
        for n in range(30):
            await complete(own_lifecycle, new_event(f"DU{n}", Command.CANCEL_ORDERS))
        for _ in range(3):
            await asyncio.gather(first.run_once(), second.run_once(), first.run_once(), second.run_once())
    assert sorted(receiver.titles()) == sorted(f"DU{n}: cancel-orders completed" for n in range(30))


async def test_a_stale_service_is_notified_once_and_again_when_it_beats(
    own_lifecycle: EventLifecycle,
) -> None:
    clock = Clock(time.time())
    beats = QueueKeys(own_lifecycle.queue.keys.prefix).heartbeats
    redis = own_lifecycle.queue.redis

    async def beat(service: str, at: float) -> None:
        await redis.hset(beats, f"{service}:host:1:abc", json.dumps({"state": "running", "at": at}))

    await beat("event-broker", clock.now)
    await beat("event-processor", clock.now - 100)  # died 100 s ago
    with NotifyReceiver() as receiver:
        service = notifier(
            own_lifecycle, [target(receiver.url(), NotifyOn.HEALTH)], clock=clock, unhealthy_after_seconds=60
        )
        for _ in range(3):
            await service.run_once()
        assert receiver.titles() == ["rebalancer: event-processor unhealthy"]
        await beat("event-processor", clock.now)
        for _ in range(3):
            await service.run_once()
    assert receiver.titles() == [
        "rebalancer: event-processor unhealthy",
        "rebalancer: event-processor healthy again",
    ]


async def test_a_processor_killed_at_completion_is_notified_once_after_the_outbox_drains(
    own_lifecycle: EventLifecycle, fresh_database_url: str
) -> None:
    prefix = own_lifecycle.queue.keys.prefix
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.notifications.killed_at_completion",
        REDIS_URL,
        fresh_database_url,
        prefix,
        "DU1",
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, _ = await process.communicate()
    assert process.returncode == -signal.SIGKILL
    event_id = uuid.UUID(out.decode().split()[0])
    with NotifyReceiver() as receiver:
        service = notifier(own_lifecycle, [target(receiver.url(), NotifyOn.TRADED, NotifyOn.FAILED)])
        await service.run_once()
        summary = await own_lifecycle.store.get_event(event_id)
        assert summary is not None
        assert summary.status == "processing"  # the completion is still in the outbox only
        assert receiver.messages == []

        assert await own_lifecycle.outbox.drain() == 1  # what any long-running process does
        for _ in range(3):
            await service.run_once()
        await own_lifecycle.outbox.drain()
        await service.run_once()
    assert receiver.titles() == ["DU1: rebalance success, 2 orders"]


async def test_ib_gateway_unreachable_from_a_processor_is_notified_with_why_and_again_when_reached(
    own_lifecycle: EventLifecycle,
) -> None:
    clock = Clock(time.time())
    beats = QueueKeys(own_lifecycle.queue.keys.prefix).heartbeats
    redis = own_lifecycle.queue.redis
    reason = "cannot connect to IB Gateway at 127.0.0.1:4002 (paper mode) after 3 attempt(s)"

    async def processor_beat(gateway: dict[str, object]) -> None:
        beat = {"state": "running", "at": clock.now, "gateway": gateway}
        await redis.hset(beats, "event-processor:host:1:abc", json.dumps(beat))

    await redis.hset(beats, "event-broker:host:1:b", json.dumps({"state": "connected", "at": clock.now}))
    await processor_beat({"state": "unreachable", "since": clock.now - 30, "reason": reason})
    with NotifyReceiver() as receiver:
        service = notifier(
            own_lifecycle, [target(receiver.url(), NotifyOn.HEALTH)], clock=clock, unhealthy_after_seconds=60
        )
        await service.run_once()
        assert receiver.titles() == []  # 30 s is under the threshold
        await processor_beat({"state": "unreachable", "since": clock.now - 90, "reason": reason})
        for _ in range(3):
            await service.run_once()
        assert receiver.titles() == ["rebalancer: ib-gateway unhealthy"]
        assert reason in str(receiver.messages[0].get("message"))
        await processor_beat({"state": "connected", "since": clock.now, "reason": None})
        for _ in range(3):
            await service.run_once()
    assert receiver.titles() == ["rebalancer: ib-gateway unhealthy", "rebalancer: ib-gateway healthy again"]
