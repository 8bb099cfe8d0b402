"""A run stopped while its orders rested at the gateway leaves them open in the history; IB goes on
with them. The next attempt, once it has cancelled the account's open orders, settles them from the
day's executions, through the real ib_async against the loopback TWS (which, as IB, shows a
connection only its own client id's executions: the run's trading connection sees the earlier run's).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from event_processor.brokers import IbkrBroker
from rebalancer_shared.config import OrderSettings
from rebalancer_shared.events import Command
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore, OrderView
from rebalancer_shared.store.tables import OrderRow
from tests.fakes.allocations import AllocationServer
from tests.fakes.tws import FakeTws
from tests.fakes.tws.scenarios import ACCOUNT, ibkr_settings
from tests.integration.processor.harness import FAST, accounts_on, running_processor

STOP_AT_ONCE = FAST.model_copy(update={"shutdown_grace_seconds": 0.1})


async def until(condition: object, within_seconds: float = 15) -> None:
    async with asyncio.timeout(within_seconds):
        while not callable(condition) or not condition():
            await asyncio.sleep(0.02)


async def test_the_next_attempt_settles_the_orders_a_stopped_run_left_resting(
    queue: EventQueue, store: EventStore, api: AllocationServer, tws: FakeTws
) -> None:
    # The sells rest 1 s at the gateway; AAA's then fills only half and the rest stays open.
    tws.state.fill_delay_seconds = 1.0
    tws.state.partial_fills = {"AAA": 0.5}
    broker = IbkrBroker(ibkr_settings(tws.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        async with running_processor(
            queue, store, broker, api, accounts_on("chan", ACCOUNT), STOP_AT_ONCE
        ) as proc:
            event = await proc.submit(ACCOUNT, Command.REBALANCE)
            await until(lambda: len(tws.state.received_orders) >= 2)  # the sells were sent
        # The processor stopped (its run cancelled past the grace); the gateway goes on with the sells.
        await until(lambda: {f.symbol for f in tws.state.fills} >= {"AAA", "DDD"})
    finally:
        await broker.close()
    history = await store.history(event.event_id)
    assert history is not None
    [first] = history.runs
    assert first.status == "unknown"  # it stopped watching orders that had not ended
    sells = {o.symbol: o for o in history.orders}
    assert {sells["AAA"].status, sells["DDD"].status} <= {"Submitted", "PreSubmitted", "PendingSubmit"}
    # And a process that died between the intent write and the broker's answer leaves only the intent.
    async with store.engine.begin() as conn:
        await conn.execute(
            update(OrderRow)
            .where(OrderRow.event_id == event.event_id, OrderRow.symbol == "DDD")
            .values(status="intent", perm_id=None, broker_order_id=None, filled_quantity=0.0)
        )

    first_fills = {f.symbol: f for f in tws.state.fills}
    assert len(tws.state.fills) == 2  # one execution each: AAA half, DDD whole
    tws.state.fill_delay_seconds = 0.02
    tws.state.partial_fills = {}
    broker = IbkrBroker(ibkr_settings(tws.port), OrderSettings(), poll_interval_seconds=0.02)
    try:
        async with running_processor(queue, store, broker, api, accounts_on("chan", ACCOUNT)) as proc:
            await proc.wait_until_idle()
    finally:
        await broker.close()

    history = await store.history(event.event_id)
    assert history is not None
    assert history.event.status == "completed"
    first, second = history.runs
    assert (first.status, second.status) == ("interrupted", "success")
    assert first.message is not None
    assert "settled later from the day's executions" in first.message
    settled = {o.symbol: o for o in history.orders_of(first.run_id)}
    aaa, ddd = first_fills["AAA"], first_fills["DDD"]
    assert_settled(
        settled["AAA"], "Cancelled", aaa.shares, aaa.price, aaa.perm_id
    )  # half; the rest cancelled
    assert_settled(settled["DDD"], "Filled", ddd.shares, ddd.price, ddd.perm_id)  # its id recovered
    assert "IB had it as order" in (settled["DDD"].message or "")


def assert_settled(order: OrderView, status: str, filled: float, price: float, perm_id: int) -> None:
    assert (order.status, order.filled_quantity, order.avg_fill_price, order.perm_id) == (
        status,
        filled,
        price,
        perm_id,
    ), order
    assert "settled by a later run" in (order.message or "")
