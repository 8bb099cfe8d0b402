"""An in-process processor for tests: real Redis, PostgreSQL and HTTP allocation API, a chosen broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import SecretStr

from event_processor.allocations import AllocationClient
from event_processor.brokers import Broker
from event_processor.retry_policy import RetryPolicy
from event_processor.runner import EventRunner
from event_processor.worker import Worker
from rebalancer_shared.accounts import Account, RebalancingSettings
from rebalancer_shared.config import AllocationSettings, ProcessingSettings
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer

FAST = ProcessingSettings(
    max_concurrent_events=4,
    lease_seconds=5,
    heartbeat_seconds=0.5,
    retry_delay_seconds=0.2,
    reap_interval_seconds=0.5,
    shutdown_grace_seconds=5,
    claim_poll_seconds=5.0,  # idle slots wake on nudges and due times; this is only the fallback
    cancel_timeout_seconds=2,
    fill_timeout_seconds=5,
)


def accounts_on(channel: str, *ids: str, **settings: object) -> dict[str, Account]:
    rebalancing = RebalancingSettings.model_validate(settings)
    return {i: Account(i, channel, rebalancing) for i in ids}


@dataclass
class Processor:
    lifecycle: EventLifecycle
    worker: Worker

    @property
    def queue(self) -> EventQueue:
        return self.lifecycle.queue

    @property
    def store(self) -> EventStore:
        return self.lifecycle.store

    async def submit(self, account: str, command: Command, data: dict[str, object] | None = None) -> Event:
        event = Event(account_id=account, exec_command=command, data=data or {}, source=EventSource.API)
        await self.lifecycle.submit(event)
        return event

    async def wait_until_idle(self, within_seconds: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_seconds
        while (await self.queue.stats()).active_events_count:
            assert loop.time() < deadline, "the queue did not drain in time"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_processor(
    queue: EventQueue,
    store: EventStore,
    broker: Broker,
    api: AllocationServer,
    accounts: dict[str, Account],
    settings: ProcessingSettings = FAST,
    policy: RetryPolicy | None = None,
) -> AsyncIterator[Processor]:
    allocations = AllocationClient(
        AllocationSettings(base_url=api.base_url, api_key=SecretStr("k"), attempts=1, timeout_seconds=2)
    )
    lifecycle = EventLifecycle(queue, store)
    runner = EventRunner(accounts, broker, allocations, store, queue, settings, policy=policy)
    worker = Worker(lifecycle, runner, settings, policy=policy)
    task = asyncio.create_task(worker.run())
    try:
        yield Processor(lifecycle, worker)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await allocations.aclose()
