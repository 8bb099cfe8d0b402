"""Running the event broker against the loopback Ably, real Redis and a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

from event_broker.retry import RetryPolicy
from event_broker.service import EventBrokerService
from event_broker.settings import EventBrokerSettings
from event_broker.subscriber import AblySubscriber
from rebalancer_shared.accounts import Account, RebalancingSettings
from rebalancer_shared.events import Event
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.metrics import Counter, read_counters
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.ably import FakeAblyServer

WAIT_S = 10.0
FAST_RETRY = RetryPolicy(
    attempts=3, first_delay_seconds=0.01, max_delay_seconds=0.05, round_pause_seconds=0.1
)


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool], what: str, seconds: float = WAIT_S
) -> None:
    """Poll `condition` (plain or async) until it holds; fail naming `what` after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def accounts_on(channels: Mapping[str, str]) -> dict[str, Account]:
    """Accounts from {account_id: channel}."""
    return {
        account_id: Account(account_id=account_id, channel=channel, settings=RebalancingSettings())
        for account_id, channel in channels.items()
    }


async def live_events(queue: EventQueue) -> list[Event]:
    return [view.event for view in await queue.list_events(1000)]


async def counter(queue: EventQueue, name: Counter) -> int:
    counters = await read_counters(queue.redis, queue.keys.prefix)
    return sum(counters.get(name, {}).values())


def event_broker_settings(fake: FakeAblyServer, catch_up_seconds: float = 120.0) -> EventBrokerSettings:
    options = fake.client_options(use_binary_protocol=True)
    key = options.pop("key")
    return EventBrokerSettings(
        api_key=key,
        client_options=options,
        catch_up_seconds=catch_up_seconds,
        heartbeat_seconds=0.5,
        attach_timeout_seconds=5.0,
        shutdown_grace_seconds=5.0,
        retry=FAST_RETRY,
    )


@asynccontextmanager
async def running_event_broker(
    fake: FakeAblyServer,
    accounts: Mapping[str, Account],
    queue: EventQueue,
    store: EventStore,
    *,
    catch_up_seconds: float = 120.0,
    instance: str = "test-broker",
) -> AsyncIterator[EventBrokerService]:
    """An event broker service running in this event loop until the block ends (then stopped cleanly)."""
    settings = event_broker_settings(fake, catch_up_seconds)
    subscriber = AblySubscriber(
        settings.api_key,
        settings.client_options,
        rewind=settings.rewind,
        attach_timeout_seconds=settings.attach_timeout_seconds,
    )
    service = EventBrokerService(
        settings, accounts, EventLifecycle(queue, store), subscriber, instance=instance
    )
    task = asyncio.create_task(service.run())
    try:
        await wait_until(lambda: service.ready.is_set() or task.done(), "the broker to subscribe")
        if task.done():
            task.result()  # raises what stopped it
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, WAIT_S)
