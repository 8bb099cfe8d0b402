"""IB's client-id rules and market hours, through the real ib_async against the loopback TWS.

Only the placing client may cancel an order: every mutating run of an account trades as the account's
fixed trading client id, so a later attempt cancels what an earlier one left; orders of another
client (by hand in TWS, another program) stop the run with a message that says so; FA group orders
without an account are left alone; a client id in use gets error 326, handled. Outside regular hours
IB holds market orders: the fake does (warning 399), and the engine does not place them at all.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from ib_async import IB, MarketOrder, Stock

from event_processor.brokers import BrokerError, IbkrBroker, OrderRequest
from event_processor.brokers.ibkr import MarketClosedError
from event_processor.brokers.ibkr_trading import trading_client_ids
from event_processor.execution import rebalance
from rebalancer_shared.accounts import RebalancingSettings
from rebalancer_shared.config import OrderSettings
from tests.fakes.tws import FakeOrder, FakeTws, serve
from tests.fakes.tws.scenarios import ACCOUNT, TARGETS, TRADING_CLIENT_ID, drifted_state, ibkr_settings

NEW_YORK = ZoneInfo("America/New_York")
SATURDAY = datetime(2026, 12, 5, 11, 0, tzinfo=NEW_YORK)
MONDAY_OPEN = datetime(2026, 12, 7, 9, 45, tzinfo=NEW_YORK)
AFTER_EARLY_CLOSE = datetime(2026, 11, 27, 14, 0, tzinfo=NEW_YORK)  # the day after Thanksgiving
CHRISTMAS = datetime(2026, 12, 25, 11, 0, tzinfo=NEW_YORK)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTws]:
    state = drifted_state()
    state.fill_delay_seconds = 0.02
    async with serve(state) as server:
        yield server


@pytest.fixture
async def broker(fake: FakeTws) -> AsyncIterator[IbkrBroker]:
    made = IbkrBroker(
        ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02, account_ids=[ACCOUNT]
    )
    yield made
    await made.close()


async def _rebalance(broker: IbkrBroker) -> None:
    try:
        await rebalance(
            broker,
            ACCOUNT,
            TARGETS,
            RebalancingSettings(),
            "event-1",
            cancel_timeout_seconds=1,
            fill_timeout_seconds=2,
        )
    finally:
        await broker.release(ACCOUNT)


def test_each_account_trades_as_a_fixed_client_id_of_its_own() -> None:
    first = trading_client_ids(["DU1", "DU2", "U1234567"], 1_000_000)
    assert first == trading_client_ids(["U1234567", "DU2", "DU1"], 1_000_000), "the same on every machine"
    assert len(set(first.values())) == 3
    assert all(1_000_000 <= i < 2_000_000 for i in first.values())
    assert first["DU1"] == TRADING_CLIENT_ID


async def test_orders_left_by_an_earlier_attempt_are_cancelled_by_the_next_one(
    fake: FakeTws, broker: IbkrBroker
) -> None:
    fake.state.open_orders.append(FakeOrder(TRADING_CLIENT_ID, 3, 800_001, ACCOUNT, "BBB", "BUY", 5.0))
    await _rebalance(broker)
    assert [(c.client_id, c.order_id) for c in fake.state.cancels] == [(TRADING_CLIENT_ID, 3)]
    assert fake.state.received_orders, "then it traded"
    assert {o.client_id for o in fake.state.received_orders} == {TRADING_CLIENT_ID}
    reads_only = [ibkr_settings(fake.port).client_id]
    for _ in range(100):  # the gateway notices the closed socket a moment later
        if fake.connected_client_ids == reads_only:
            break
        await asyncio.sleep(0.02)
    assert fake.connected_client_ids == reads_only, "the trading connection is closed"


@pytest.mark.parametrize(
    ("client_id", "origin"), [(0, "entered by hand in TWS"), (555, "placed by API client 555")]
)
async def test_an_order_of_another_client_stops_the_run_and_says_why(
    fake: FakeTws, broker: IbkrBroker, client_id: int, origin: str
) -> None:
    fake.state.open_orders.append(FakeOrder(client_id, 9, 800_009, ACCOUNT, "BBB", "BUY", 5.0))
    with pytest.raises(BrokerError) as caught:
        await _rebalance(broker)
    message = str(caught.value)
    assert f"BUY 5 BBB (order 9, {origin})" in message
    assert f"this account trades as client {TRADING_CLIENT_ID}; cancel them in TWS" in message
    assert fake.state.received_orders == [], "nothing traded beside an order it cannot cancel"
    assert [o.order_id for o in fake.state.open_orders] == [9]


async def test_an_fa_group_order_without_an_account_is_not_touched(fake: FakeTws, broker: IbkrBroker) -> None:
    fake.state.open_orders.append(FakeOrder(TRADING_CLIENT_ID, 8, 800_008, "", "BBB", "BUY", 5.0))
    await _rebalance(broker)
    assert fake.state.cancels == []
    assert [o.order_id for o in fake.state.open_orders] == [8]
    assert fake.state.received_orders


async def test_a_client_id_in_use_is_refused_by_the_gateway_and_named(fake: FakeTws) -> None:
    blocker = IB()
    await blocker.connectAsync("127.0.0.1", fake.port, clientId=TRADING_CLIENT_ID, timeout=3)
    settings = ibkr_settings(fake.port, connect_attempts=2, connect_retry_delay_seconds=0.1)
    broker = IbkrBroker(settings, OrderSettings(), poll_interval_seconds=0.02, account_ids=[ACCOUNT])
    try:
        with pytest.raises(BrokerError, match=rf"client id {TRADING_CLIENT_ID} is already in use.*2 attempt"):
            await broker.cancel_open_orders(ACCOUNT, timeout_seconds=1)
        blocker.disconnect()
        assert await broker.cancel_open_orders(ACCOUNT, timeout_seconds=1) == []
    finally:
        blocker.disconnect()
        await broker.close()


@pytest.mark.parametrize(
    ("moment", "why"),
    [
        (SATURDAY, "the market is closed (gateway time 2026-12-05 11:00 EST"),
        (AFTER_EARLY_CLOSE, "only the extended session is open and EXTENDED_HOURS_ENABLED is off"),
        (CHRISTMAS, "the market is closed (gateway time 2026-12-25 11:00 EST"),
    ],
    ids=["saturday", "after-an-early-close", "holiday"],
)
async def test_no_market_order_is_placed_while_the_market_is_closed(
    fake: FakeTws, broker: IbkrBroker, moment: datetime, why: str
) -> None:
    fake.set_market_time(moment)
    with pytest.raises(MarketClosedError, match=re.escape(why)) as caught:
        await _rebalance(broker)
    assert "the next regular session opens" in str(caught.value)
    assert fake.state.received_orders == []


async def test_the_next_open_is_named(fake: FakeTws, broker: IbkrBroker) -> None:
    fake.set_market_time(SATURDAY)
    with pytest.raises(MarketClosedError) as caught:
        await broker.place_orders(ACCOUNT, [OrderRequest("BBB", "BUY", 1, 100.0)], order_ref="e")
    assert caught.value.opens == datetime(2026, 12, 7, 9, 30, tzinfo=NEW_YORK)
    assert "2026-12-07 09:30" in str(caught.value)


async def test_the_fake_holds_a_market_order_placed_outside_regular_hours_until_the_open(
    fake: FakeTws,
) -> None:
    fake.set_market_time(SATURDAY)
    ib = IB()
    await ib.connectAsync("127.0.0.1", fake.port, clientId=77, timeout=3)
    try:
        contract = Stock("BBB", "SMART", "USD")
        await ib.qualifyContractsAsync(contract)
        order = MarketOrder("BUY", 1)
        order.account = ACCOUNT
        trade = ib.placeOrder(contract, order)
        for _ in range(50):
            if trade.log and trade.log[-1].errorCode == 399:
                break
            await ib_sleep(ib)
        assert trade.orderStatus.status == "PreSubmitted"
        assert any(entry.errorCode == 399 and "2026-12-07 09:30:00" in entry.message for entry in trade.log)
        assert fake.state.fills == []
        fake.set_market_time(MONDAY_OPEN)
        for _ in range(100):
            if trade.isDone():
                break
            await ib_sleep(ib)
        assert trade.orderStatus.status == "Filled"
    finally:
        ib.disconnect()


async def ib_sleep(ib: IB) -> None:
    await asyncio.sleep(0.02)


async def test_two_accounts_trading_at_once_each_see_their_own_orders(fake: FakeTws) -> None:
    fake.state.add_account("DU2", 5_000.0, {"AAA": 10.0})
    broker = IbkrBroker(
        ibkr_settings(fake.port), OrderSettings(), poll_interval_seconds=0.02, account_ids=[ACCOUNT, "DU2"]
    )
    try:
        # Both trading connections open before either places: each is told the same next order id.
        await asyncio.gather(broker.cancel_open_orders(ACCOUNT, 1), broker.cancel_open_orders("DU2", 1))
        first = await broker.place_orders(
            ACCOUNT, [OrderRequest("BBB", "BUY", 1, 100.0)], order_ref="for-du1"
        )
        second = await broker.place_orders("DU2", [OrderRequest("CCC", "BUY", 2, 40.0)], order_ref="for-du2")
        assert first[0].order_id == second[0].order_id, "order ids are per client id: these two meet"
        [one] = await broker.wait_for_fills(ACCOUNT, [first[0].order_id], timeout_seconds=2)
        [two] = await broker.wait_for_fills("DU2", [second[0].order_id], timeout_seconds=2)
    finally:
        await broker.close()
    assert (one.order_ref, one.symbol, one.filled_quantity) == ("for-du1", "BBB", 1.0)
    assert (two.order_ref, two.symbol, two.filled_quantity) == ("for-du2", "CCC", 2.0)
