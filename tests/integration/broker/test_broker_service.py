"""The event broker in this event loop: the real `ably` SDK against the loopback Ably, real Redis
and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from event_broker.errors import AblyConnectionFailedError
from event_broker.intake import ReceivedMessage
from event_broker.service import EventBrokerService
from event_broker.subscriber import AblySubscriber
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.heartbeats import read_heartbeats
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.metrics import Counter
from rebalancer_shared.queue import CompleteOutcome, EnqueueResult, EventQueue
from rebalancer_shared.recovery import reconcile_queue
from rebalancer_shared.store import EventStore, HistoryRecord, Transition
from tests.fakes.ably import FakeAblyServer
from tests.integration.broker.harness import (
    accounts_on,
    counter,
    event_broker_settings,
    live_events,
    running_event_broker,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)


def commands_by_account(events: list[Event]) -> dict[str, Command]:
    return {event.account_id: event.exec_command for event in events}


async def test_rebalance_trigger_becomes_one_live_event_per_account_on_the_channel(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "strategy-a", "DU2": "strategy-a", "DU3": "strategy-b"})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store):
        message_id = fake_ably.publish("strategy-a", "trigger", {"exec": "rebalance"})

        await wait_until(lambda: _count(queue, 2), "two queued events")

    events = await live_events(queue)
    assert commands_by_account(events) == {"DU1": Command.REBALANCE, "DU2": Command.REBALANCE}
    assert {(e.source, e.ably_message_id, str(e.data)) for e in events} == {
        (EventSource.ABLY, message_id, "{'exec': 'rebalance'}")
    }
    for event in events:
        history = await fresh_store.history(event.event_id)
        assert history is not None
        assert [t.state for t in history.transitions] == ["queued"]
    assert await queue.redis.exists(queue.keys.ably_seen(message_id))


async def _count(queue: EventQueue, expected: int) -> bool:
    return len(await live_events(queue)) >= expected


DRY_RUN_PAYLOADS: dict[str, object] = {
    "empty-object": {},
    "dry-run": {"exec": "dry_run"},
    "unknown": {"exec": "sell-it-all"},
    "json-string": '"rebalance"',
    "not-json": "{exec: rebalance",
    "no-data": None,
}


async def test_payloads_other_than_exactly_rebalance_become_dry_runs(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({f"DU-{name}": f"ch-{name}" for name in DRY_RUN_PAYLOADS})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store):
        with capture_logs() as logs:
            for name, payload in DRY_RUN_PAYLOADS.items():
                fake_ably.publish(f"ch-{name}", "trigger", payload)

            await wait_until(lambda: _count(queue, len(DRY_RUN_PAYLOADS)), "one event per payload")

    events = await live_events(queue)
    assert commands_by_account(events) == {f"DU-{name}": Command.PRINT_REBALANCE for name in DRY_RUN_PAYLOADS}
    notes = [entry for entry in logs if entry["event"] == "trigger is a dry run"]
    assert {entry["channel"] for entry in notes} == {f"ch-{name}" for name in DRY_RUN_PAYLOADS}


async def test_message_on_a_channel_nobody_follows_makes_no_event(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "followed"})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store) as broker:
        fake_ably.publish("nobody-follows", "trigger", {"exec": "rebalance"})
        fake_ably.publish("followed", "marker", {"exec": "print-positions"})
        await wait_until(lambda: _count(queue, 1), "the marker's event")
        with capture_logs() as logs:
            # A message the SDK would never hand over, given to the relay directly: logged and dropped.
            stray = ReceivedMessage("nobody-follows", "trigger", {"exec": "rebalance"}, "stray:0")
            broker.deliver(stray)
            await wait_until(lambda: broker.health()["backlog"] == 0, "the stray message to be handled")

    assert commands_by_account(await live_events(queue)) == {"DU1": Command.PRINT_POSITIONS}
    assert fake_ably.history("nobody-follows")  # it was published, just not for us
    [dropped] = [e for e in logs if e["event"] == "ably message on a channel no account follows: dropped"]
    assert dropped["ably_message_id"] == "stray:0"


async def test_burst_of_one_trigger_queues_one_event_per_account(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "burst", "DU2": "burst"})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store):
        for _ in range(5):
            fake_ably.publish("burst", "trigger", {"exec": "rebalance"})

        await wait_until(
            lambda: _counters_reach(queue, queued=2, duplicate=8), "every copy to be queued or dropped"
        )

    events = await live_events(queue)
    assert sorted(e.account_id for e in events) == ["DU1", "DU2"]
    assert await counter(queue, Counter.EVENTS_QUEUED) == 2
    assert await counter(queue, Counter.EVENTS_DUPLICATE) == 8


async def _counters_reach(
    queue: EventQueue, *, queued: int = 0, duplicate: int = 0, coalesced: int = 0
) -> bool:
    return (
        await counter(queue, Counter.EVENTS_QUEUED) >= queued
        and await counter(queue, Counter.EVENTS_DUPLICATE) >= duplicate
        and await counter(queue, Counter.EVENTS_COALESCED) >= coalesced
    )


async def test_trigger_arriving_while_its_event_is_processing_is_coalesced_into_one_rerun(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "busy"})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store):
        fake_ably.publish("busy", "trigger", {"exec": "rebalance"})
        await wait_until(lambda: _count(queue, 1), "the first event")
        claim = await queue.claim("worker-1")
        assert claim is not None

        fake_ably.publish("busy", "trigger", {"exec": "rebalance"})
        await wait_until(lambda: _counters_reach(queue, coalesced=1), "the second trigger to coalesce")

    assert (await queue.complete(claim)).outcome is CompleteOutcome.RERUN
    [rerun] = await live_events(queue)
    assert rerun.event_id == claim.event.event_id
    assert await counter(queue, Counter.EVENTS_QUEUED) == 1


async def test_dropped_connection_is_resumed_and_each_message_becomes_events_once(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "flaky-network"})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store):
        fake_ably.publish("flaky-network", "before", {"exec": "print-positions"})
        await wait_until(lambda: _count(queue, 1), "the first event")

        fake_ably.drop_connections()
        fake_ably.publish("flaky-network", "while-down", {"exec": "print-equity"})
        await wait_until(lambda: _count(queue, 2), "the message published while disconnected")
        fake_ably.publish("flaky-network", "after", {"exec": "print-orders"})
        await wait_until(lambda: _count(queue, 3), "the message published after the resume")

    assert sorted(e.exec_command for e in await live_events(queue)) == sorted(
        [Command.PRINT_POSITIONS, Command.PRINT_EQUITY, Command.PRINT_ORDERS]
    )
    assert await counter(queue, Counter.EVENTS_QUEUED) == 3
    assert await counter(queue, Counter.EVENTS_DUPLICATE) == 0


async def test_restarted_ably_server_is_reconnected_and_each_message_becomes_events_once(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "restarting"})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store):
        fake_ably.publish("restarting", "before", {"exec": "print-positions"})
        await wait_until(lambda: _count(queue, 1), "the first event")

        await fake_ably.restart()
        fake_ably.publish("restarting", "while-reconnecting", {"exec": "print-equity"})
        await wait_until(lambda: _count(queue, 2), "the message published while reconnecting")
        fake_ably.publish("restarting", "after", {"exec": "print-orders"})
        await wait_until(lambda: _count(queue, 3), "the message published after the restart")

    assert await counter(queue, Counter.EVENTS_QUEUED) == 3
    assert await counter(queue, Counter.EVENTS_DUPLICATE) == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_catch_up_replays_only_messages_inside_the_window(
    queue: EventQueue, fresh_store: EventStore
) -> None:
    clock = FakeClock()
    async with FakeAblyServer(clock=clock) as server:
        server.publish("catch-up", "too-old", {"exec": "print-positions"})
        clock.now += 100
        recent = server.publish("catch-up", "recent", {"exec": "print-equity"})
        clock.now += 50
        accounts = accounts_on({"DU1": "catch-up"})
        async with running_event_broker(server, accounts, queue, fresh_store, catch_up_seconds=60):
            server.publish("catch-up", "live", {"exec": "print-orders"})
            await wait_until(lambda: _count(queue, 2), "the recent and the live message")

    events = await live_events(queue)
    assert sorted(e.exec_command for e in events) == sorted([Command.PRINT_EQUITY, Command.PRINT_ORDERS])
    assert recent in {e.ably_message_id for e in events}


async def test_message_already_turned_into_events_is_not_repeated_by_a_catch_up(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "replayed"})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store, instance="first"):
        fake_ably.publish("replayed", "handled", {"exec": "print-positions"})
        await wait_until(lambda: _count(queue, 1), "the first event")
    claim = await queue.claim("worker")
    assert claim is not None
    await queue.complete(claim)  # finished: a repeat would be queued as a new event

    with capture_logs() as logs:
        async with running_event_broker(fake_ably, accounts, queue, fresh_store, instance="second"):
            fake_ably.publish("replayed", "marker", {"exec": "print-equity"})
            await wait_until(lambda: _count(queue, 1), "the marker's event")

    assert [e.exec_command for e in await live_events(queue)] == [Command.PRINT_EQUITY]
    assert [e["event"] for e in logs].count("ably message already turned into events: skipped") == 1


class FlakyQueue(EventQueue):
    """The real queue, but the first `failures` enqueues raise as an unreachable Redis does."""

    def __init__(self, *args: Any, failures: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures

    async def enqueue(self, event: Event) -> EnqueueResult:
        if self.failures > 0:
            self.failures -= 1
            raise RedisConnectionError("Connection refused (injected)")
        return await super().enqueue(event)


async def test_redis_outage_while_submitting_is_retried_and_the_trigger_queued_once(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    flaky = FlakyQueue(queue.redis, queue.keys.prefix, failures=7)  # more than one round of attempts
    accounts = accounts_on({"DU1": "outage"})
    with capture_logs() as logs:
        async with running_event_broker(fake_ably, accounts, flaky, fresh_store):
            message_id = fake_ably.publish("outage", "trigger", {"exec": "rebalance"})
            await wait_until(lambda: _count(queue, 1), "the event once Redis answers again")
            await wait_until(lambda: _remembered(queue, message_id), "the message id to be remembered")

    assert flaky.failures == 0
    assert [e.account_id for e in await live_events(queue)] == ["DU1"]
    assert await counter(queue, Counter.EVENTS_QUEUED) == 1
    loud = [e for e in logs if e["log_level"] == "error" and "NOT queued" in e["event"]]
    assert loud, "a failing round must be logged as an error"


async def _remembered(queue: EventQueue, message_id: str) -> bool:
    return bool(await queue.redis.exists(queue.keys.ably_seen(message_id)))


class ExplodingQueue(EventQueue):
    """The real queue, except that an event whose payload says so raises a programming error."""

    async def enqueue(self, event: Event) -> EnqueueResult:
        if event.data.get("explode"):
            raise RuntimeError("boom (injected)")
        return await super().enqueue(event)


async def test_error_on_one_message_is_logged_with_its_id_and_the_next_is_still_handled(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    exploding = ExplodingQueue(queue.redis, queue.keys.prefix)
    accounts = accounts_on({"DU1": "mixed"})
    with capture_logs() as logs:
        async with running_event_broker(fake_ably, accounts, exploding, fresh_store):
            bad = fake_ably.publish("mixed", "bad", {"exec": "rebalance", "explode": True})
            fake_ably.publish("mixed", "good", {"exec": "print-positions"})
            await wait_until(lambda: _count(queue, 1), "the good message's event")

    assert [e.exec_command for e in await live_events(queue)] == [Command.PRINT_POSITIONS]
    [failure] = [e for e in logs if e["event"] == "ably message could not be turned into events"]
    assert failure["ably_message_id"] == bad
    assert failure["log_level"] == "error"
    assert not await queue.redis.exists(queue.keys.ably_seen(bad)), "a failed message must stay unmarked"


async def test_heartbeat_reports_the_connection_and_channels_and_is_removed_on_stop(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "alpha", "DU2": "beta"})
    instance = f"hb-{uuid.uuid4().hex[:6]}"
    async with running_event_broker(fake_ably, accounts, queue, fresh_store, instance=instance):
        fake_ably.publish("alpha", "trigger", {})
        await wait_until(lambda: _count(queue, 1), "the event")

        async def beat_shows_message_handled() -> bool:
            # A beat written while the message was still being handled shows it in the backlog;
            # the backlog must empty once it is handled (a beat every 0.5 s shows that).
            beats = await read_heartbeats(queue.redis, queue.keys.prefix)
            return (
                bool(beats)
                and beats[0].details.get("last_message_at") is not None
                and (beats[0].details.get("backlog") == 0)
            )

        await wait_until(beat_shows_message_handled, "a heartbeat with the last message time and no backlog")
        [heartbeat] = await read_heartbeats(queue.redis, queue.keys.prefix)

    assert (heartbeat.service, heartbeat.instance, heartbeat.state) == ("event-broker", instance, "connected")
    assert heartbeat.details["channels"] == {"alpha": "attached", "beta": "attached"}
    assert heartbeat.details["backlog"] == 0
    assert heartbeat.details["writes_failing"] is False
    assert await read_heartbeats(queue.redis, queue.keys.prefix) == []


async def test_stop_finishes_the_messages_already_received(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    accounts = accounts_on({"DU1": "stopping"})
    async with running_event_broker(fake_ably, accounts, queue, fresh_store) as broker:
        broker.deliver(ReceivedMessage("stopping", "trigger", {"exec": "rebalance"}, "in-flight:0"))
        broker.request_stop()

    [event] = await live_events(queue)
    assert (event.account_id, event.ably_message_id) == ("DU1", "in-flight:0")
    assert await queue.redis.exists(queue.keys.ably_seen("in-flight:0"))


async def test_start_rebuilds_the_queue_when_redis_lost_its_data(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    await reconcile_queue(EventLifecycle(queue, fresh_store), 30)  # a first start: the marker is written
    unfinished = Event(account_id="DU1", exec_command=Command.REBALANCE, source=EventSource.ABLY)
    known_to_postgresql_only = HistoryRecord(
        seq=1,
        event_id=unfinished.event_id,
        transition=Transition.QUEUED,
        times_queued=1,
        detail=None,
        event=unfinished,
        close_runs_below=0,
        at=unfinished.created_at,
    )
    await fresh_store.apply_history([known_to_postgresql_only])
    await queue.redis.delete(queue.keys.marker)  # Redis came back empty

    async with running_event_broker(fake_ably, accounts_on({"DU1": "any"}), queue, fresh_store):
        pass

    [rebuilt] = await live_events(queue)
    assert (rebuilt.event_id, rebuilt.source) == (unfinished.event_id, EventSource.RECOVERY)


async def test_key_rejected_while_running_stops_the_broker_with_the_reason(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    settings = event_broker_settings(fake_ably)
    subscriber = AblySubscriber(settings.api_key, settings.client_options, rewind=settings.rewind)
    service = EventBrokerService(
        settings, accounts_on({"DU1": "revoked"}), EventLifecycle(queue, fresh_store), subscriber
    )
    run = asyncio.create_task(service.run())
    await wait_until(service.ready.is_set, "the broker to subscribe")

    fake_ably.reject_key(True)
    fake_ably.drop_connections()  # the SDK reconnects and is refused

    with pytest.raises(AblyConnectionFailedError) as failure:
        await asyncio.wait_for(run, 10)
    assert failure.value.key_rejected
    assert failure.value.code == 40101
    assert await read_heartbeats(queue.redis, queue.keys.prefix) == []


async def test_stop_during_an_outage_gives_up_after_the_grace_period_naming_the_unqueued_message(
    fake_ably: FakeAblyServer, queue: EventQueue, fresh_store: EventStore
) -> None:
    down = FlakyQueue(queue.redis, queue.keys.prefix, failures=10**6)  # Redis never comes back
    settings = dataclasses.replace(event_broker_settings(fake_ably), shutdown_grace_seconds=0.5)
    subscriber = AblySubscriber(settings.api_key, settings.client_options, rewind=settings.rewind)
    service = EventBrokerService(
        settings, accounts_on({"DU1": "down"}), EventLifecycle(down, fresh_store), subscriber
    )
    with capture_logs() as logs:
        run = asyncio.create_task(service.run())
        await wait_until(service.ready.is_set, "the broker to subscribe")
        message_id = fake_ably.publish("down", "trigger", {"exec": "rebalance"})
        await wait_until(lambda: service.health()["writes_failing"], "the writes to fail")

        service.request_stop()
        await asyncio.wait_for(run, 10)

    [unqueued] = [e for e in logs if e["event"].startswith("stopping with ably messages not turned")]
    assert unqueued["ably_message_ids"] == [message_id]
    assert await live_events(queue) == []
    assert not await _remembered(queue, message_id), "an unqueued message must stay unmarked for the catch-up"
