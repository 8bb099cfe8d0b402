"""Why a re-run after a recovery is safe, on a real run: an event whose completion Redis lost before
PostgreSQL heard of it is restored, runs again through ib_async against the loopback TWS, and places
no order, because the account is already at its targets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text

from event_processor.brokers import IbkrBroker
from rebalancer_shared.config import OrderSettings
from rebalancer_shared.events import Command
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.fakes.tws import FakeTws, serve
from tests.fakes.tws.scenarios import ACCOUNT, TARGETS, drifted_state, ibkr_settings
from tests.integration.processor.harness import FAST, accounts_on, running_processor


@pytest.fixture
def api() -> Iterator[AllocationServer]:
    with AllocationServer() as server:
        server.set_weights("chan", TARGETS)
        yield server


@pytest.fixture
async def tws() -> AsyncIterator[FakeTws]:
    state = drifted_state()
    state.fill_delay_seconds = 0.02
    async with serve(state) as fake:
        yield fake


async def test_an_event_run_again_after_redis_lost_its_completion_trades_nothing(
    queue: EventQueue, fresh_store: EventStore, api: AllocationServer, tws: FakeTws
) -> None:
    settings = FAST.model_copy(
        update={"lease_seconds": 2.0, "heartbeat_seconds": 0.3, "reconcile_interval_seconds": 0.3}
    )
    broker = IbkrBroker(ibkr_settings(tws.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        async with running_processor(
            queue, fresh_store, broker, api, accounts_on("chan", ACCOUNT), settings
        ) as proc:
            event = await proc.submit(ACCOUNT, Command.REBALANCE)
            await proc.wait_until_idle()
            traded = len(tws.state.received_orders)
            assert traded, "the first run traded"
            for _ in range(200):  # the history of the completion follows the queue step
                done = await fresh_store.get_event(event.event_id)
                if done is not None and done.status == "completed":
                    break
                await asyncio.sleep(0.05)
            # Redis forgets everything, and PostgreSQL never heard that the run completed.
            async with fresh_store.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE events SET status = 'processing', history_seq = 0 WHERE event_id = :id"),
                    {"id": event.event_id},
                )
            async for key in queue.redis.scan_iter(match=queue.keys.all_patterns()[0]):
                await queue.redis.delete(key)

            seen: tuple[str, int] | None = None
            for _ in range(600):
                row = await fresh_store.get_event(event.event_id)
                assert row is not None
                seen = (row.status, row.times_queued)
                if seen == ("completed", 2):
                    break
                await asyncio.sleep(0.05)
            assert seen == ("completed", 2), f"the restored event did not run again: {seen}"
    finally:
        await broker.close()

    assert len(tws.state.received_orders) == traded, "the second run placed an order"
    history = await fresh_store.history(event.event_id)
    assert history is not None
    first, second = history.runs
    assert (first.status, second.status) == ("success", "success")
    assert second.message == "nothing to trade: the account is at its targets"
    assert "recovered" in [t.state for t in history.transitions]
