"""The demo's embedded world: the production queue, store, relay, worker and engine on local stand-ins.

Stand-ins, each behind the same interface production uses: an in-process Redis (fakeredis, running
the queue's Lua scripts), SQLite through the same `EventStore`, a `SimulatedBroker` holding drifted
demo accounts, and the allocations served from a local file by a real HTTP server on 127.0.0.1.
Triggers enter through the event broker's `TriggerRelay`, as Ably messages do.

The accounts are those of the repository's accounts.yaml and README (DU123456 and DU789012, both
following the story's channel), so the README's curl examples run against the demo as printed; a
third, DU000000, follows a strategy whose allocation API answers weights summing to 0.9, so that an
operator can watch an event fail, retry, and remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
from pydantic import SecretStr

from event_broker.intake import ReceivedMessage
from event_broker.relay import TriggerRelay
from event_broker.settings import SERVICE_NAME as EVENT_BROKER
from event_processor.allocations import AllocationClient
from event_processor.brokers import SimulatedBroker
from event_processor.brokers.simulated_file import simulated_broker_from_file
from event_processor.runner import EventRunner
from event_processor.worker import Worker
from rebalancer_cli.demo.allocation_server import FileAllocationServer
from rebalancer_shared.accounts import Account, RebalancingSettings, accounts_by_channel
from rebalancer_shared.config import AllocationSettings, ProcessingSettings
from rebalancer_shared.heartbeats import HeartbeatReport, HeartbeatWriter, instance_name
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.recovery import reconcile_queue
from rebalancer_shared.store import EventStore

DATA = Path(__file__).parent
CHANNEL = "demo-etf-blend"
ACCOUNT_IDS = ("DU123456", "DU789012")
BROKEN_CHANNEL = "demo-broken-weights"  # allocations.json: its weights sum to 0.9
BROKEN_ACCOUNT_ID = "DU000000"
PREFIX = "demo"
PROCESSING = ProcessingSettings(
    broker="simulated",
    max_concurrent_events=4,
    lease_seconds=30,
    heartbeat_seconds=5,
    retry_delay_seconds=30,  # time for an operator to list a failed event and remove it
    reap_interval_seconds=5,
    shutdown_grace_seconds=10,
)


@dataclass
class DemoWorld:
    """Everything the demo runs, wired as production wires it."""

    queue: EventQueue
    store: EventStore
    broker: SimulatedBroker
    accounts: dict[str, Account]
    relay: TriggerRelay
    worker: Worker
    allocations_url: str
    targets: dict[str, float]

    async def trigger(self, data: Any, message_id: str) -> list[str]:
        """Publish a trigger on the demo channel (through the broker's relay); return its event ids."""
        before = {str(v.event.event_id) for v in await self.queue.list_events(1000)}
        await self.relay.handle(ReceivedMessage(CHANNEL, "rebalance", data, message_id))
        views = await self.queue.list_events(1000)
        return [str(v.event.event_id) for v in views if str(v.event.event_id) not in before]

    async def wait_finished(self, event_ids: Sequence[str], within_seconds: float = 60) -> None:
        """Wait until none of the events is live in the queue any more."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_seconds
        while any([await self.queue.get(i) is not None for i in event_ids]):
            if loop.time() > deadline:
                raise TimeoutError("the demo events did not finish in time")
            await asyncio.sleep(0.05)


def demo_accounts() -> dict[str, Account]:
    """Two accounts following one strategy channel (one trigger fans out to both), and the broken one."""
    settings = RebalancingSettings(equity_reserve_percentage=1.0)
    accounts = {a: Account(a, CHANNEL, settings) for a in ACCOUNT_IDS}
    accounts[BROKEN_ACCOUNT_ID] = Account(BROKEN_ACCOUNT_ID, BROKEN_CHANNEL, settings)
    return accounts


def _targets(responses: dict[str, Any]) -> dict[str, float]:
    rows = responses[CHANNEL]["data"]["allocations"]
    return {row["symbol"]: float(row["allocation"]) for row in rows}


def _broker_heartbeat(queue: EventQueue) -> HeartbeatWriter:
    # The relay plays the event broker's part (triggers come from the CLI, not Ably).
    report = HeartbeatReport("demo: triggers from the CLI, no Ably")
    return HeartbeatWriter(
        queue.redis, PREFIX, EVENT_BROKER, instance_name(), lambda: report, interval_seconds=5
    )


@contextlib.asynccontextmanager
async def demo_world() -> AsyncIterator[DemoWorld]:
    """Build the world, run its worker, and take it all down on exit."""
    import json

    responses = json.loads((DATA / "allocations.json").read_text())
    server = FileAllocationServer(responses).start()
    redis = fakeredis.FakeAsyncRedis()
    with tempfile.TemporaryDirectory(prefix="rebalancer-demo-") as folder:
        store = EventStore.from_url(f"sqlite:///{folder}/history.db")
        await store.create_schema()
        queue = EventQueue(redis, PREFIX, lease_seconds=PROCESSING.lease_seconds)
        lifecycle = EventLifecycle(queue, store)
        await reconcile_queue(lifecycle, PROCESSING.lease_seconds)
        accounts = demo_accounts()
        broker = simulated_broker_from_file(DATA / "simulated_accounts.json", accounts)
        allocations = AllocationClient(
            AllocationSettings(base_url=server.base_url, api_key=SecretStr("demo-allocations-key"))
        )
        runner = EventRunner(accounts, broker, allocations, store, queue, PROCESSING)
        # Named, not `instance_name()`: the README's example history shows this worker as printed.
        worker = Worker(lifecycle, runner, PROCESSING, name="demo-processor")
        relay = TriggerRelay(lifecycle, accounts_by_channel(accounts), seen_ttl_seconds=3600)
        broker_heartbeat = _broker_heartbeat(queue)
        tasks = [asyncio.create_task(worker.run()), asyncio.create_task(broker_heartbeat.run())]
        try:
            yield DemoWorld(
                queue, store, broker, accounts, relay, worker, server.base_url, _targets(responses)
            )
        finally:
            worker.stop()
            broker_heartbeat.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            await allocations.aclose()
            await store.close()
            await redis.aclose()
            server.stop()
