"""The loopback TWS is as strict as a real gateway (tests/fakes/tws/README.md), seen by the bare ib_async."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from ib_async import IB, Order, Stock, Trade

from tests.fakes.tws import FakeQuote, FakeTws, TwsState, serve
from tests.fakes.tws.scenarios import ACCOUNT, drifted_state, ib_async_errors

Errors = list[tuple[int, int, str]]


@pytest.fixture(autouse=True)
def _ib_async_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ib_async")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTws]:
    async with serve(drifted_state()) as server:
        yield server


@pytest.fixture
async def ib(fake: FakeTws) -> AsyncIterator[IB]:
    client = IB()
    await client.connectAsync("127.0.0.1", fake.port, clientId=3, timeout=3)
    yield client
    client.disconnect()


def collect_errors(ib: IB) -> Errors:
    errors: Errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    return errors


async def stock(ib: IB, symbol: str) -> Stock:
    contract = Stock(symbol, "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    return contract


async def until(condition: object, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_the_defaults_are_a_real_gateways() -> None:
    state = TwsState()
    assert (state.market_data_lines, state.snapshot_seconds, state.max_messages_per_second) == (100, 11.0, 50)
    assert state.fractional_orders is False


async def test_a_request_beyond_the_lines_in_use_gets_error_101_and_a_cancel_gives_the_line_back(
    fake: FakeTws, ib: IB, caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.market_data_lines = 3
    errors = collect_errors(ib)
    contracts = {s: await stock(ib, s) for s in ("AAA", "BBB", "CCC", "DDD")}
    for contract in contracts.values():
        ib.reqMktData(contract)  # streaming: holds its line until cancelled
    await until(lambda: len(errors) == 1)

    assert [(code, text) for _, code, text in errors] == [(101, "Max number of tickers has been reached")]
    assert fake.state.market_data_refusals == ["DDD"]
    assert fake.lines.in_use == 3

    ib.cancelMktData(contracts["AAA"])
    await until(lambda: fake.lines.in_use == 2)
    ticker = ib.reqMktData(contracts["DDD"])
    await until(lambda: ticker.last == 25.0)
    assert fake.lines.in_use == 3
    assert ib_async_errors(caplog.records) == []


async def test_a_snapshot_sends_its_data_at_once_and_ends_holding_its_line_until_then(
    fake: FakeTws, ib: IB
) -> None:
    fake.state.snapshot_seconds = 0.5
    contract = await stock(ib, "AAA")
    started = time.monotonic()
    [ticker] = await ib.reqTickersAsync(contract)
    assert time.monotonic() - started >= 0.5
    assert (ticker.last, ticker.bid, ticker.ask, ticker.close) == (50.0, 50.0, 50.0, 50.0)
    assert fake.lines.in_use == 0


async def test_delayed_data_comes_with_its_own_ticks_and_a_last_trade_time_behind_by_the_delay(
    fake: FakeTws, ib: IB, caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.snapshot_seconds = 0.1
    fake.state.quotes["DLY"] = FakeQuote(last=60.0, bid=59.0, ask=61.0, close=58.0, data_type=3)
    contract = await stock(ib, "DLY")
    ib.reqMarketDataType(1)
    errors = collect_errors(ib)
    await ib.reqTickersAsync(contract)
    ib.reqMarketDataType(3)
    tick_types: set[int] = set()
    ib.pendingTickersEvent += lambda tickers: tick_types.update(t.tickType for k in tickers for t in k.ticks)
    [delayed] = await ib.reqTickersAsync(contract)

    assert [code for _, code, _ in errors] == [354]  # not subscribed to live data for it
    assert delayed.marketDataType == 3
    assert tick_types == {66, 67, 68, 75}
    assert (delayed.last, delayed.bid, delayed.ask, delayed.close) == (60.0, 59.0, 61.0, 58.0)
    assert delayed.delayedLastTimestamp is not None
    assert delayed.lastTimestamp is None
    age = time.time() - delayed.delayedLastTimestamp.timestamp()
    assert 15 * 60 <= age <= 20 * 60
    assert ib_async_errors(caplog.records) == []


async def _place(ib: IB, symbol: str, quantity: float) -> Trade:
    order = Order(action="BUY", totalQuantity=quantity, orderType="MKT", account=ACCOUNT)
    trade = ib.placeOrder(Stock(symbol, "SMART", "USD"), order)
    await until(trade.isDone)
    return trade


async def test_a_rejected_order_gets_error_201_with_the_reason_and_ends_inactive(
    fake: FakeTws, ib: IB, caplog: pytest.LogCaptureFixture
) -> None:
    fake.state.rejections["BBB"] = "YOUR ORDER IS NOT ACCEPTED. PATTERN DAY TRADER RULE"
    trade = await _place(ib, "BBB", 5)
    await until(lambda: trade.orderStatus.status == "Inactive")

    [error] = [entry for entry in trade.log if entry.errorCode]
    assert error.errorCode == 201
    assert "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED" in error.message
    assert trade.orderStatus.filled == 0
    assert fake.state.open_orders == []
    assert fake.state.fills == []
    assert ib_async_errors(caplog.records) == []


async def test_a_fractional_quantity_is_refused_with_error_10243_and_ends_cancelled(
    fake: FakeTws, ib: IB
) -> None:
    trade = await _place(ib, "BBB", 1.5)

    [error] = [entry for entry in trade.log if entry.errorCode]
    assert error.errorCode == 10243
    assert "Fractional-sized order cannot be placed via API" in error.message
    assert trade.orderStatus.status == "Cancelled"
    assert fake.state.fills == []
    whole = await _place(ib, "BBB", 2)
    assert whole.orderStatus.status == "Filled"


async def test_more_than_50_messages_in_a_second_get_error_100_and_are_not_processed(
    fake: FakeTws, ib: IB
) -> None:
    errors = collect_errors(ib)
    ib.client.MaxRequests = 0  # ib_async's own throttle off: send as fast as the socket takes them
    for _ in range(80):
        ib.client.reqCurrentTime()  # type: ignore[no-untyped-call]
    await until(lambda: len(errors) >= len(fake.state.paced_out) > 0)
    await asyncio.sleep(0.2)

    assert len(fake.state.paced_out) >= 80 - 50
    assert set(fake.state.paced_out) == {49}
    assert {(req_id, code) for req_id, code, _ in errors} == {(-1, 100)}
    assert len(errors) == len(fake.state.paced_out)
    assert errors[0][2] == "Max rate of messages per second has been exceeded."


def test_ib_async_paces_its_requests_by_default_below_the_gateways_limit() -> None:
    client = IB().client
    assert 0 < client.MaxRequests / client.RequestsInterval <= 45
